// Drives strongroom's GraphiQL playground in the system's headless Chromium, as a user would,
// and prints one JSON object on stdout with what the page showed and did: the Headers tab's
// text before the token was pasted, the rendered result, every request the page made, every
// Content-Security-Policy violation, script errors, what the settings dialog offers, what
// the page left in every browser storage (localStorage, sessionStorage, IndexedDB, Cache
// Storage, cookies), and which of the browser profile's files on disk hold the token or
// the value once the browser has closed. The Rust test (tests/api/browser.rs) decides what
// is right.
//
//   node browser.js query <base-url>         paste the token, run PLAYGROUND_QUERY (a named
//                                            operation)
//   node browser.js mutation <base-url>      the same, with PLAYGROUND_VARIABLES pasted into
//                                            the Variables tab
//   node browser.js subscription <base-url>  subscribe with PLAYGROUND_QUERY, then update
//                                            PLAYGROUND_SECRET over HTTP until an event shows
//
// The token comes in PLAYGROUND_TOKEN, and the value the variables carry in
// PLAYGROUND_VALUE (not on the command line, where `ps` would show them).
'use strict';

const fs = require('fs');
const { WAIT_MS, launch, watch, settledStorage, filesHolding } = require('./pages');

const SUBSCRIPTION_UPDATES = 10;

const QUERY_EDITOR = '.graphiql-query-editor .CodeMirror';
// The Headers or Variables editor, whichever tab is open.
const TOOL_EDITOR = '.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror';
const RESULT = '.result-window';
const RUN_BUTTON = '.graphiql-execute-button';
const TAB = '.graphiql-tab-button';

async function main() {
  const [scenario, baseUrl] = process.argv.slice(2);
  const token = process.env.PLAYGROUND_TOKEN;
  const query = process.env.PLAYGROUND_QUERY;
  if (!['query', 'mutation', 'subscription'].includes(scenario) || !baseUrl || !token || !query) {
    throw new Error('usage: PLAYGROUND_TOKEN=… PLAYGROUND_QUERY=… node browser.js query|mutation|subscription <base-url>');
  }
  // What must never be kept: the token, and the value the variables carry.
  const kept = [['token', token]];
  if (process.env.PLAYGROUND_VALUE) kept.push(['value', process.env.PLAYGROUND_VALUE]);
  const report = {
    scenario,
    placeholder: null,
    result: null,
    headersAfterReload: null,
    queryAfterReload: null,
    settings: null,
    storage: null,
    storedKeys: null,
    keptInStorage: null,
    keptInProfile: null,
    requests: [],
    websockets: [],
    violations: [],
    pageErrors: [],
    consoleErrors: [],
    updates: 0,
    error: null,
  };

  const { browser, profile } = await launch();
  try {
    const page = await browser.newPage();
    await watch(page, report);
    await run(page, scenario, baseUrl, token, query, report);
    report.keptInStorage = kept.filter(([, text]) => report.storage.includes(text)).map(([what]) => what);
  } catch (error) {
    report.error = String((error && error.stack) || error);
  } finally {
    await browser.close();
  }
  try {
    report.keptInProfile = filesHolding(profile, kept);
  } finally {
    fs.rmSync(profile, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exitCode = report.error ? 1 : 0;
}

async function run(page, scenario, baseUrl, token, query, report) {
  await page.goto(new URL('/', baseUrl).href);
  await page.waitForSelector(RUN_BUTTON, { timeout: WAIT_MS });
  await page.getByRole('button', { name: 'Headers', exact: true }).click();
  report.placeholder = await editorText(page, TOOL_EDITOR);

  // What a user does: paste the token over the placeholder and a query over the default.
  await replaceText(page, TOOL_EDITOR, JSON.stringify({ Authorization: `Bearer ${token}` }));
  await replaceText(page, QUERY_EDITOR, query);
  if (scenario === 'mutation') {
    const variables = process.env.PLAYGROUND_VARIABLES;
    if (!variables) throw new Error('PLAYGROUND_VARIABLES holds the mutation\'s variables');
    await page.getByRole('button', { name: 'Variables', exact: true }).click();
    await replaceText(page, TOOL_EDITOR, variables);
  }
  // GraphiQL parses the editor's text a moment after it changes, and picks HTTP or the
  // WebSocket from that parse; the tab takes the operation's name once it is done.
  const name = operationName(query);
  await page.locator(TAB).filter({ hasText: new RegExp(`^${name}$`) }).waitFor({ timeout: WAIT_MS });
  const subscribe = scenario === 'subscription' ? watchSubscribe(page) : null;
  await page.click(RUN_BUTTON);

  if (scenario === 'query') {
    report.result = await waitForResult(page, (text) => text.includes('"data"') || text.includes('"errors"'));
    await tour(page, report);
    await probeWebSocket(page, baseUrl);
  } else if (scenario === 'mutation') {
    report.result = await waitForResult(page, (text) => text.includes('"data"') || text.includes('"errors"'));
  } else {
    await waitForSubscribe(page, subscribe);
    report.result = await subscriptionResult(page, baseUrl, token, report);
  }

  // GraphiQL writes some of its state a moment after it changes (debounced): read what
  // the page stored once it has stopped changing, and again after a reload (which also
  // writes what an unloading page saves).
  const before = await settledStorage(page);
  // A new visit starts from the placeholder and the default query again: neither the
  // token nor what was typed was kept anywhere.
  await page.reload();
  await page.waitForSelector(RUN_BUTTON, { timeout: WAIT_MS });
  report.queryAfterReload = await editorText(page, QUERY_EDITOR);
  await page.getByRole('button', { name: 'Headers', exact: true }).click();
  report.headersAfterReload = await editorText(page, TOOL_EDITOR);
  const after = await settledStorage(page);
  report.storage = before.storage + '\n' + after.storage;
  report.storedKeys = [...new Set([...before.storedKeys, ...after.storedKeys])];
}

function operationName(query) {
  const match = /^\s*(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)/.exec(query);
  if (!match) throw new Error(`PLAYGROUND_QUERY must name its operation: ${query}`);
  return match[1];
}

// The lines an editor shows, as rendered (no line numbers).
async function editorText(page, selector) {
  const editor = page.locator(selector);
  await editor.locator('.CodeMirror-line').first().waitFor({ timeout: WAIT_MS });
  const lines = await editor.locator('.CodeMirror-line').allTextContents();
  return lines.join('\n');
}

// Selects all in an editor and pastes `text` over it (inserted as a paste is, so the
// editor's bracket closing does not add to it).
async function replaceText(page, selector, text) {
  await page.locator(selector).locator('.CodeMirror-line').first().click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.insertText(text);
}

// Waits until the result pane renders text that `done` accepts; returns that text.
async function waitForResult(page, done, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const text = await resultText(page);
    if (done(text)) return text;
    if (Date.now() > deadline) throw new Error(`the result pane never showed the answer; it shows: ${text}`);
    await page.waitForTimeout(100);
  }
}

async function resultText(page) {
  const lines = await page.locator(RESULT).locator('.CodeMirror-line').allTextContents();
  // An empty line renders as a zero-width space.
  return lines.join('\n').replace(/\u200b/g, '');
}

// Opens what GraphiQL adds style for at run time: its dialogs (a nonce'd <style> element)
// and CodeMirror's jump-to-line box (fixed `style` attributes), so the policy is checked
// against them too.
async function tour(page, report) {
  for (const name of ['Open settings dialog', 'Open short keys dialog']) {
    await page.getByRole('button', { name }).click();
    await page.getByRole('dialog').waitFor({ timeout: WAIT_MS });
    if (name === 'Open settings dialog') report.settings = await page.getByRole('dialog').innerText();
    await page.keyboard.press('Escape');
    await page.getByRole('dialog').waitFor({ state: 'detached', timeout: WAIT_MS });
  }
  await page.locator(QUERY_EDITOR).locator('.CodeMirror-line').first().click();
  await page.keyboard.press('Alt+G');
  await page.locator('.CodeMirror-dialog').waitFor({ timeout: WAIT_MS });
  await page.keyboard.press('Escape');
}

// Opens a WebSocket to this host's /graphql/ws from the page: the policy must allow it
// (whether the server speaks WebSocket there is another matter).
async function probeWebSocket(page, baseUrl) {
  const url = new URL('/graphql/ws', baseUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  await page.evaluate(
    (url) =>
      new Promise((resolve) => {
        const socket = new WebSocket(url, 'graphql-transport-ws');
        socket.onopen = () => {
          socket.close();
          resolve('open');
        };
        socket.onerror = () => resolve('error');
      }),
    url.href,
  );
}

// Once the page has sent its `subscribe` (the caller waits for it), updates the secret
// over HTTP (from Node, not from the page) until the result pane shows an UPDATED event
// for it. An update made while the server is still setting up the subscription may come
// too early to be seen, so it updates again, a bounded number of times.
async function subscriptionResult(page, baseUrl, token, report) {
  const secret = process.env.PLAYGROUND_SECRET;
  if (!secret) throw new Error('PLAYGROUND_SECRET names the secret to update');
  const shown = (text) => text.includes('UPDATED') && text.includes(secret);
  for (let i = 0; i < SUBSCRIPTION_UPDATES; i++) {
    await updateSecret(baseUrl, token, secret, `playground value ${i}`);
    report.updates += 1;
    try {
      return await waitForResult(page, shown, WAIT_MS / SUBSCRIPTION_UPDATES);
    } catch (_) {
      // not shown yet: update again
    }
  }
  throw new Error(`no UPDATED event for ${secret} after ${report.updates} updates; the result pane shows: ${await resultText(page)}`);
}

// Watches the page's WebSockets for a graphql-transport-ws `subscribe` message.
function watchSubscribe(page) {
  const watched = { sent: false };
  page.on('websocket', (socket) => {
    socket.on('framesent', ({ payload }) => {
      try {
        if (JSON.parse(payload).type === 'subscribe') watched.sent = true;
      } catch (_) {
        // not a graphql-transport-ws message
      }
    });
  });
  return watched;
}

// Waits until the page has sent its `subscribe`; fails at once if the result pane shows
// something first (a connection error, say).
async function waitForSubscribe(page, watched) {
  const deadline = Date.now() + WAIT_MS;
  while (!watched.sent) {
    const text = await resultText(page);
    if (text.trim()) throw new Error(`the page showed a result before subscribing: ${text}`);
    if (Date.now() > deadline) throw new Error('the page never sent a subscribe message');
    await page.waitForTimeout(100);
  }
}

async function updateSecret(baseUrl, token, name, value) {
  const response = await fetch(new URL('/graphql', baseUrl), {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({
      query: 'mutation($input: UpdateSecretInput!) { updateSecret(input: $input) { secret { currentVersion } } }',
      variables: { input: { name, value } },
    }),
  });
  const body = await response.json();
  if (!response.ok || body.errors) throw new Error(`updateSecret failed: ${response.status} ${JSON.stringify(body)}`);
}

main().catch((error) => {
  process.stderr.write(`${(error && error.stack) || error}\n`);
  process.exitCode = 1;
});
