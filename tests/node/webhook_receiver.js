// A webhook receiver for the webhook tests. Every request it receives (but to /_control)
// is checked with the Standard Webhooks specification's own library (npm
// `standardwebhooks`, pinned in package.json) against each signing secret it was told,
// and with one byte of the body changed, then recorded. Once listening on 127.0.0.1 it
// prints one JSON line, {"port": n}. SIGTERM stops it.
//
//   PORT=0 node webhook_receiver.js
//
// Control, over HTTP on the same port:
//   POST /_control/secrets   ["whsec_…", …]               the secrets to verify with, in order
//   POST /_control/respond   {"path", "statuses", "then"}  answer requests to `path` with
//                            `statuses` in turn, then always `then` (default 204). A 3xx
//                            answer carries `Location: /landed`.
//   GET  /_control/received                                every request so far:
//        {path, id, timestamp, signature, body, verifiedWith: [indexes of the secrets
//         that verify], tamperedVerifies: bool, status}
'use strict';

const http = require('http');
const { Webhook } = require('standardwebhooks');

let secrets = [];
const answers = new Map(); // path -> { statuses: [...], then }
const received = [];

function verifies(secret, body, headers) {
  try {
    new Webhook(secret).verify(body, headers);
    return true;
  } catch (_) {
    return false;
  }
}

function readBody(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

function reply(response, status, body) {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(body === undefined ? '' : JSON.stringify(body));
}

async function control(request, response, path) {
  if (path === '/_control/received') return reply(response, 200, received);
  const body = JSON.parse(await readBody(request));
  if (path === '/_control/secrets') {
    secrets = body;
  } else if (path === '/_control/respond') {
    answers.set(body.path, { statuses: body.statuses || [], then: body.then || 204 });
  } else {
    return reply(response, 404, { error: 'unknown control path' });
  }
  return reply(response, 200, { ok: true });
}

async function hook(request, response, path) {
  const body = await readBody(request);
  const headers = {
    'webhook-id': request.headers['webhook-id'],
    'webhook-timestamp': request.headers['webhook-timestamp'],
    'webhook-signature': request.headers['webhook-signature'],
  };
  const tampered = body.length > 0
    ? body.slice(0, -1) + String.fromCharCode(body.charCodeAt(body.length - 1) ^ 1)
    : 'x';
  const answer = answers.get(path) || { statuses: [], then: 204 };
  const status = answer.statuses.length > 0 ? answer.statuses.shift() : answer.then;
  received.push({
    path,
    id: headers['webhook-id'] || null,
    timestamp: headers['webhook-timestamp'] || null,
    signature: headers['webhook-signature'] || null,
    contentType: request.headers['content-type'] || null,
    body,
    verifiedWith: secrets
      .map((secret, index) => (verifies(secret, body, headers) ? index : -1))
      .filter((index) => index >= 0),
    tamperedVerifies: secrets.some((secret) => verifies(secret, tampered, headers)),
    status,
  });
  if (status >= 300 && status < 400) {
    response.writeHead(status, { location: '/landed' });
    return response.end();
  }
  return reply(response, status);
}

const server = http.createServer((request, response) => {
  const path = new URL(request.url, 'http://receiver').pathname;
  const handle = path.startsWith('/_control/') ? control : hook;
  handle(request, response, path).catch((error) => reply(response, 500, { error: String(error) }));
});

server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
