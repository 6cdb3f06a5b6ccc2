// A real OpenID provider for people's single sign-on to the console: panva's
// oidc-provider with one confidential client for the authorization code flow (PKCE
// required), and interaction pages a browser fills in as a person would: a login page
// (any username, no password) and a consent page. ID tokens carry `preferred_username`,
// `email` and `groups`; a person's groups are set by the test (`POST /test/groups`
// `{"login", "groups"}`) and read at every sign-in. Once listening it prints one JSON line
// with the issuer. SIGTERM stops it.
//
//   PORT=<port> REDIRECT_URI=<strongroom>/auth/callback node people_oidc.js
//
// Client: id `strongroom-console`, secret `strongroom-console-secret` (HTTP Basic).
'use strict';

const http = require('http');
const path = require('path');
const { pathToFileURL } = require('url');

const GROUPS = new Map();

// Only the first line goes to stdout (the harness stops reading it after that): the
// provider's own notices (console.log) go to stderr.
console.log = console.info = (...args) => process.stderr.write(`${args.join(' ')}\n`);

async function main() {
  const port = Number(process.env.PORT);
  const redirectUri = process.env.REDIRECT_URI;
  if (!port || !redirectUri) throw new Error('PORT and REDIRECT_URI are required');
  const modules = process.env.NODE_PATH;
  const entry = path.join(modules, 'oidc-provider', 'lib', 'index.js');
  const { default: Provider } = await import(pathToFileURL(entry).href);

  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'strongroom-console',
        client_secret: 'strongroom-console-secret',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: [redirectUri],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'ES256',
      },
    ],
    jwks: { keys: [await signingKey()] },
    pkce: { required: () => true },
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'groups'],
      email: ['email'],
    },
    // The ID token carries the scopes' claims (not only the userinfo endpoint).
    conformIdTokenClaims: false,
    findAccount: (ctx, id) => ({
      accountId: id,
      claims: () => ({
        sub: id,
        preferred_username: id,
        email: `${id}@example.test`,
        groups: GROUPS.get(id) || [],
      }),
    }),
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    features: { devInteractions: { enabled: false } },
    cookies: { keys: ['people-oidc-test-cookie-key'] },
  });
  const callback = provider.callback();

  const server = http.createServer((req, res) => {
    route(provider, req, res).then((handled) => {
      if (!handled) callback(req, res);
    }).catch((error) => {
      res.statusCode = 500;
      res.end(String(error && error.message));
    });
  });
  server.listen(port, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ issuer }) + '\n');
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

async function signingKey() {
  const crypto = require('crypto');
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: 'ES256', use: 'sig' };
}

function body(req) {
  return new Promise((resolve, reject) => {
    let text = '';
    req.on('data', (chunk) => { text += chunk; });
    req.on('end', () => resolve(text));
    req.on('error', reject);
  });
}

function page(res, title, form) {
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.end(`<!doctype html><html lang="en"><head><title>${title}</title></head>
<body><main><h1>${title}</h1>${form}</main></body></html>`);
}

// The test's own routes and the interaction pages; false for the provider's routes.
async function route(provider, req, res) {
  const url = new URL(req.url, 'http://x');
  if (req.method === 'POST' && url.pathname === '/test/groups') {
    const { login, groups } = JSON.parse(await body(req));
    GROUPS.set(login, groups);
    res.end('{}');
    return true;
  }
  const match = url.pathname.match(/^\/interaction\/([^/]+)(\/login|\/consent)?$/);
  if (!match) return false;
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  if (req.method === 'GET') {
    if (prompt.name === 'login') {
      page(res, 'Sign in to the test provider', `<form method="post" action="/interaction/${uid}/login">
<label for="login">Username</label> <input id="login" name="login" autofocus required>
<button type="submit">Log in</button></form>`);
    } else {
      page(res, 'Allow strongroom', `<p>strongroom asks for: ${params.scope}</p>
<form method="post" action="/interaction/${uid}/consent"><button type="submit">Allow</button></form>`);
    }
    return true;
  }
  if (match[2] === '/login') {
    const login = new URLSearchParams(await body(req)).get('login');
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return true;
  }
  const grant = new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  grant.addOIDCScope(params.scope);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  return true;
}

main().catch((error) => {
  process.stderr.write(`${(error && error.stack) || error}\n`);
  process.exit(1);
});
