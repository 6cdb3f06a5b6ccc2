// Drives strongroom's console (/console) in the system's headless Chromium, one step at a
// time, for tests/api/console.rs: the Rust test sends one JSON object per line on stdin,
// `{"step": …, …}`, and reads one answer per line on stdout, `{"ok": true, "result": …}` or
// `{"ok": false, "error": …}`, so it can check the server over the API between steps.
// Controls are found as a person finds them: by role and accessible name, or by label.
//
//   node console.js <base-url>
//
// Steps (`scope`, where taken: {"dialog": title} | {"row": secret name} | {"region": name}
// | {"table": name}; the whole page without it):
//   goto {path}            reload {}               click {name, role?, exact?, scope?}
//   fill {label, value, scope?}                    select {label, option}
//   press {key}            text {scope?}           html {}
//   waitText {text, scope?, timeoutMs?, gone?}     → {found, text}
//   enabled {name, scope?} → bool                  rows {} → first cells of table Secrets, loaded
//   focus {}               → the focused control's accessible name and tag
//   screenshot {path}      → a PNG of the whole page at `path`
//   cookies {}             → the browser's cookies (name, flags, expiry; the value too,
//                            for a test to replay: it never prints them)
//   url {}                 → the page's address now
//   axe {}                 → axe-core's serious and critical violations on the page now
//   observed {}            → requests, websockets, violations, page and console errors
//   storage {}             → everything the origin keeps in the browser, once settled
//   finish {kept: [[what, text]…]} → closes the browser; which profile files hold a text
//
// Secrets and tokens come on stdin, never on the command line.
'use strict';

const fs = require('fs');
const readline = require('readline');
const { WAIT_MS, launch, watch, settledStorage, filesHolding } = require('./pages');

// Each action waits this long for its control at most (Playwright auto-waits).
const ACTION_MS = 30000;
// axe-core, run in the page through the DevTools protocol (the page's own policy allows
// no script of ours, rightly).
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

async function main() {
  const baseUrl = process.argv[2];
  if (!baseUrl) throw new Error('usage: node console.js <base-url>');
  const observed = { requests: [], websockets: [], violations: [], pageErrors: [], consoleErrors: [] };
  const { browser, profile } = await launch();
  browser.setDefaultTimeout(ACTION_MS);
  const page = await browser.newPage();
  await watch(page, observed);
  const lines = readline.createInterface({ input: process.stdin });
  let finished = false;
  try {
    for await (const line of lines) {
      if (!line.trim()) continue;
      let command;
      let answer;
      try {
        command = JSON.parse(line);
        if (command.step === 'finish') {
          await browser.close();
          finished = true;
          answer = { ok: true, result: { keptInProfile: filesHolding(profile, command.kept || []) } };
        } else {
          answer = { ok: true, result: (await run(page, baseUrl, observed, command)) ?? null };
        }
      } catch (error) {
        answer = { ok: false, error: String((error && error.stack) || error) };
      }
      process.stdout.write(JSON.stringify(answer) + '\n');
      if (finished) break;
    }
  } finally {
    // Stop reading, or the open stdin keeps node running.
    lines.close();
    process.stdin.destroy();
    if (!finished) await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

function scoped(page, scope) {
  if (!scope) return page.locator('body');
  if (scope.dialog) return page.getByRole('dialog', { name: scope.dialog });
  if (scope.row) {
    return page
      .getByRole('table', { name: 'Secrets' })
      .getByRole('row')
      .filter({ has: page.getByRole('rowheader', { name: scope.row, exact: true }) });
  }
  if (scope.region) return page.getByRole('region', { name: scope.region });
  if (scope.table) return page.getByRole('table', { name: scope.table });
  throw new Error(`unknown scope ${JSON.stringify(scope)}`);
}

async function run(page, baseUrl, observed, command) {
  const within = () => scoped(page, command.scope);
  const button = () =>
    within().getByRole(command.role || 'button', { name: command.name, exact: Boolean(command.exact) });
  switch (command.step) {
    case 'goto':
      await page.goto(new URL(command.path, baseUrl).href);
      return page.url();
    case 'reload':
      await page.reload();
      return page.url();
    case 'click':
      await button().click();
      return null;
    case 'fill':
      await within().getByLabel(command.label, { exact: true }).fill(command.value);
      return null;
    case 'select':
      await page.getByLabel(command.label, { exact: true }).selectOption({ label: command.option });
      return null;
    case 'press':
      await page.keyboard.press(command.key);
      return null;
    case 'text':
      return within().first().innerText();
    case 'html':
      return page.content();
    case 'waitText':
      return waitText(within, command);
    case 'enabled':
      return button().isEnabled();
    case 'rows': {
      // Once the page's request has answered (the table is aria-busy while it runs).
      const table = page.getByRole('table', { name: 'Secrets' }).and(page.locator('[aria-busy="false"]'));
      await table.waitFor();
      return table.locator('tbody tr').evaluateAll((rows) =>
        rows.map((row) => row.querySelector('th, td')?.textContent ?? ''),
      );
    }
    case 'focus':
      return page.evaluate(() => {
        const element = document.activeElement;
        if (!element) return null;
        const label = element.labels && element.labels[0] ? element.labels[0].textContent : null;
        return { tag: element.tagName.toLowerCase(), label, text: element.textContent };
      });
    case 'screenshot':
      await page.screenshot({ path: command.path, fullPage: true });
      return command.path;
    case 'cookies':
      return page.context().cookies();
    case 'url':
      return page.url();
    case 'axe': {
      if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(`${AXE}\n;true`);
      const results = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
      return results.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.html) }));
    }
    case 'observed':
      return observed;
    case 'storage':
      return settledStorage(page);
    default:
      throw new Error(`unknown step ${command.step}`);
  }
}

// Waits until the scope's text shows `text` (or, with `gone`, no longer does, or the scope
// is gone); answers whether it did within the time, and the text last seen.
async function waitText(within, { text, gone = false, timeoutMs = WAIT_MS }) {
  const deadline = Date.now() + timeoutMs;
  let seen = '';
  for (;;) {
    const scope = within().first();
    const present = (await scope.count()) > 0;
    seen = present ? await scope.innerText().catch(() => '') : '';
    const shows = present && seen.includes(text);
    if (gone ? !shows : shows) return { found: true, text: seen };
    if (Date.now() > deadline) return { found: false, text: seen };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

main().catch((error) => {
  process.stderr.write(`${(error && error.stack) || error}\n`);
  process.exitCode = 1;
});
