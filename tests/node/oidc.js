// A real OpenID provider for the workload identity tests: panva's oidc-provider, issuing
// JWT access tokens (client credentials, with resource indicators) signed with a fresh
// P-256 key. Once listening it prints one JSON line: the issuer, the key's id and the
// private key (PKCS#8 PEM), so a test can also sign tokens of its own making (expired,
// and the like) with the issuer's real key. SIGTERM stops it.
//
//   PORT=<port> node oidc.js        (run again on the same port for a new key: a rotation)
//
// Clients (secret = id + "-secret"), each with the claims its tokens carry:
//   etl-main   repository=acme/etl, ref=refs/heads/main
//   etl-dev    repository=acme/etl, ref=refs/heads/dev
//   other-repo repository=acme/other, ref=refs/heads/main
// Resources: https://strongroom.test/ (audience "strongroom"), https://elsewhere.test/
// (audience "elsewhere").
'use strict';

const crypto = require('crypto');
const path = require('path');
const { pathToFileURL } = require('url');

const CLAIMS = {
  'etl-main': { repository: 'acme/etl', ref: 'refs/heads/main' },
  'etl-dev': { repository: 'acme/etl', ref: 'refs/heads/dev' },
  'other-repo': { repository: 'acme/other', ref: 'refs/heads/main' },
};

async function main() {
  const port = Number(process.env.PORT);
  if (!port) throw new Error('PORT is required');
  // ESM only, and ESM ignores NODE_PATH: import it from the harness's install.
  const modules = process.env.NODE_PATH;
  const entry = path.join(modules, 'oidc-provider', 'lib', 'index.js');
  const { default: Provider } = await import(pathToFileURL(entry).href);

  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = crypto.randomUUID();
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' });

  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: Object.keys(CLAIMS).map((id) => ({
      client_id: id,
      client_secret: `${id}-secret`,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      id_token_signed_response_alg: 'ES256',
    })),
    jwks: { keys: [jwk] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'https://strongroom.test/',
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => ({
          scope: '',
          audience: resource === 'https://elsewhere.test/' ? 'elsewhere' : 'strongroom',
          accessTokenFormat: 'jwt',
          accessTokenTTL: 300,
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
    extraTokenClaims: (ctx, token) => CLAIMS[token.clientId] || {},
  });
  const server = provider.listen(port, '127.0.0.1');
  server.on('listening', () => {
    process.stdout.write(JSON.stringify({ issuer, kid, pem }) + '\n');
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

main().catch((error) => {
  process.stderr.write(`${(error && error.stack) || error}\n`);
  process.exit(1);
});
