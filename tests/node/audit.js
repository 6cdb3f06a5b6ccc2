// The GraphQL-over-HTTP conformance audit of the `graphql-http` package, run against a
// server: `node audit.js <url of /graphql>`. Prints one JSON array on stdout, an entry per
// audit: { id, name, status ("ok" | "notice" for a MAY | "warn" for a SHOULD | "error" for
// a MUST), reason, response: { status, contentType, body } }. The verdict is the caller's.
'use strict';

const { auditServer } = require('graphql-http');

/** What a failed audit saw, for the report (the body only if the audit left it unread). */
async function seen(response) {
  if (!response) return undefined;
  let body;
  try {
    body = (await response.text()).slice(0, 500);
  } catch {
    body = undefined;
  }
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    body,
  };
}

async function main() {
  const url = process.argv[2];
  if (!url) {
    throw new Error('usage: node audit.js <url of the GraphQL endpoint>');
  }
  const results = await auditServer({ url });
  const report = [];
  for (const result of results) {
    report.push({
      id: result.id,
      name: result.name,
      status: result.status,
      reason: result.reason,
      response: await seen(result.response),
    });
  }
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : error);
  process.exit(1);
});
