// What the browser tests share (tests/node/browser.js, the playground; tests/node/console.js,
// the console): Chromium launched on a profile of its own, a page watched for requests,
// policy violations and script errors, and what the page's origin left in the browser's
// storage and on disk.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// Bounds on waiting for the page, generous for a busy 2-core machine; never asserted on.
const WAIT_MS = 60000;
// How long the page's storage must stay unchanged to count as settled (GraphiQL debounces
// its writes by 500 ms).
const STORAGE_QUIET_MS = 1500;

// Headless Chromium on a fresh profile of its own (read after the browser closes: what
// the page stored reached disk); returns the context and the profile's directory.
async function launch() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'strongroom-browser-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--headless=new',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-default-apps',
      '--disable-extensions',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  return { browser, profile };
}

// Records what the page asks for and what the browser refuses or reports.
async function watch(page, report) {
  page.on('request', (request) => {
    let operation = null;
    try {
      operation = request.postDataJSON()?.operationName ?? null;
    } catch (_) {
      // no JSON body
    }
    report.requests.push({ method: request.method(), url: request.url(), type: request.resourceType(), operation });
  });
  page.on('websocket', (socket) => report.websockets.push(socket.url()));
  page.on('pageerror', (error) => report.pageErrors.push(String(error)));
  page.on('console', (message) => {
    const text = message.text();
    if (message.type() === 'error') report.consoleErrors.push(text);
    // Chromium's own words for a refused load or inline code.
    if (/Refused to|violates the following Content Security Policy/.test(text)) {
      report.violations.push({ source: 'console', text });
    }
  });
  // Injected by the driver, not by the page, so the policy does not apply to it.
  await page.exposeFunction('__reportViolation', (violation) => report.violations.push(violation));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      window.__reportViolation({
        source: 'event',
        directive: event.effectiveDirective,
        blocked: event.blockedURI,
        at: `${event.sourceFile}:${event.lineNumber}:${event.columnNumber}`,
      });
    });
  });
}

// What the page has stored, once it has stayed the same for STORAGE_QUIET_MS.
async function settledStorage(page) {
  const deadline = Date.now() + WAIT_MS;
  let last = await storageOf(page);
  let quietSince = Date.now();
  while (Date.now() - quietSince < STORAGE_QUIET_MS && Date.now() < deadline) {
    await page.waitForTimeout(100);
    const now = await storageOf(page);
    if (now.storage !== last.storage) {
      last = now;
      quietSince = Date.now();
    }
  }
  return last;
}

// Everything the page's origin keeps in the browser, as one text (`storage`), and the
// names it keeps it under (`storedKeys`).
async function storageOf(page) {
  return page.evaluate(async () => {
    const dump = {
      localStorage: Object.entries(window.localStorage),
      sessionStorage: Object.entries(window.sessionStorage),
      cookies: document.cookie,
      indexedDB: {},
      caches: {},
    };
    for (const { name } of await indexedDB.databases()) {
      const db = await new Promise((resolve, reject) => {
        const request = indexedDB.open(name);
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
      const stores = {};
      for (const store of db.objectStoreNames) {
        stores[store] = await new Promise((resolve, reject) => {
          const request = db.transaction(store).objectStore(store).getAll();
          request.onsuccess = () => resolve(request.result);
          request.onerror = () => reject(request.error);
        });
      }
      db.close();
      dump.indexedDB[name] = stores;
    }
    for (const name of await caches.keys()) {
      const cache = await caches.open(name);
      const entries = [];
      for (const request of await cache.keys()) {
        const response = await cache.match(request);
        entries.push([request.url, response ? await response.text() : null]);
      }
      dump.caches[name] = entries;
    }
    const storedKeys = [
      ...dump.localStorage.map(([key]) => `localStorage:${key}`),
      ...dump.sessionStorage.map(([key]) => `sessionStorage:${key}`),
      ...Object.keys(dump.indexedDB).map((name) => `indexedDB:${name}`),
      ...Object.keys(dump.caches).map((name) => `caches:${name}`),
      ...(dump.cookies ? ['cookies'] : []),
    ];
    return { storage: JSON.stringify(dump), storedKeys };
  });
}

// The files under `dir` that hold any of `kept`'s texts, as "<what>: <relative path>".
function filesHolding(dir, kept) {
  const hits = [];
  const walk = (current) => {
    for (const entry of fs.readdirSync(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) {
        walk(full);
      } else if (entry.isFile()) {
        const bytes = fs.readFileSync(full);
        for (const [what, text] of kept) {
          // Chromium keeps some strings as UTF-16 (LevelDB values, session state).
          if (bytes.includes(Buffer.from(text, 'utf8')) || bytes.includes(Buffer.from(text, 'utf16le'))) {
            hits.push(`${what}: ${path.relative(dir, full)}`);
          }
        }
      }
    }
  };
  walk(dir);
  return hits;
}

module.exports = { WAIT_MS, launch, watch, settledStorage, storageOf, filesHolding };
