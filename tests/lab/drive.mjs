// Drive real JupyterLab in Debian's headless Chromium through a list of steps, and print
// (JSON, one line) what happened at each: its time (epoch ms), whether it succeeded, and
// what the page showed. tests/lab/test_lab.py writes the steps and judges the report.
//
//   node drive.mjs '{"url": ..., "steps": [...], "screenshot": path}'
// Steps: {"panel": true}: open the Cloud panel; {"run": i}: run code cell i, wait until it
// ran; {"row": NAME, "state": S}: wait until the panel lists NAME (in state S);
// {"press": "stop"|"start"|"terminal"|"console", "name": NAME}: press its button;
// {"size": true, "cell": i}: the size the terminal widget of cell i has now ("ROWS COLS");
// {"keys": [KEY...], "cell": i}: press those keys (Playwright's names, e.g. Control+C) there;
// {"show": NAME}: click its name; {"type": TEXT, "cell": i}: type into the terminal widget
// of cell i; {"line": TEXT, "cell": i}: wait until that terminal shows a line TEXT;
// {"tab": TEXT}: wait until the JupyterLab terminal tab on show has a line TEXT (with
// "type": type it there first, with "after": once it shows that).
// report.seen: when the panel first listed each instance (epoch ms, polled every 50 ms).
import { launch } from '../browser/chromium.mjs';   // and its playwright-core

const job = JSON.parse(process.argv[2]);
const PANEL = '.jp-NotebookPanel:not(.lm-mod-hidden)';
const report = { steps: [], console: [] };
const browser = await launch(job);
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('console', (m) => { if (m.type() === 'error') report.console.push(m.text().slice(0, 300)); });
  page.on('pageerror', (e) => report.console.push(`pageerror: ${String(e).slice(0, 300)}`));
  await page.goto(job.url);
  await page.locator(`${PANEL} .jp-Cell`).first().waitFor({ timeout: 120000 });
  const accept = page.locator('.jp-Dialog .jp-Dialog-button.jp-mod-accept');
  try { await accept.waitFor({ timeout: 10000 }); await accept.click(); } catch { /* none */ }
  await page.waitForFunction(() => {
    const s = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
    return s && s.getAttribute('data-status') === 'idle';
  }, null, { timeout: 120000, polling: 250 });
  for (const step of job.steps) {
    const entry = { step, ok: false };
    report.steps.push(entry);
    try {
      entry.detail = await perform(page, step);
      entry.ok = true;
    } catch (err) {
      entry.error = String(err).slice(0, 800);
    }
    entry.t = Date.now();
    if (!entry.ok) break;
  }
  report.seen = await page.evaluate(() => window.nbcloudSeen || {});
  if (job.screenshot) await page.screenshot({ path: job.screenshot });
} catch (err) {
  report.error = String(err).slice(0, 2000);
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(report)}\n`);

function row(page, name) {
  return page.locator(`.nbcloud-row[data-kind="instance"][data-name="${name}"]`);
}

function cell(page, i) {
  return page.locator(`${PANEL} .jp-CodeCell`).nth(i);
}

async function perform(page, step) {
  const wait = (step.timeout || 60) * 1000;
  if (step.panel) {
    await page.locator('.lm-TabBar-tab[data-id="nbcloud-panel"]').click();
    await page.evaluate(() => {
      window.nbcloudSeen = {};
      setInterval(() => {
        for (const r of document.querySelectorAll('.nbcloud-row[data-kind="instance"]')) {
          if (!(r.dataset.name in window.nbcloudSeen)) window.nbcloudSeen[r.dataset.name] = Date.now();
        }
      }, 50);
    });
    await page.waitForFunction(() => /:\/\//.test(
      document.querySelector('.nbcloud-status')?.textContent || ''), null, { timeout: wait });
    return page.locator('.nbcloud-panel').innerText();
  }
  if (step.run !== undefined) {
    const c = cell(page, step.run);
    await c.locator('.jp-InputArea-editor').click();
    await page.keyboard.press('Escape');     // command mode: the cell is selected
    await page.keyboard.press('Control+Enter');
    await page.waitForFunction((i) => {
      const cells = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell');
      const p = cells[i]?.querySelector('.jp-InputPrompt')?.textContent || '';
      return /\[\d+\]/.test(p);
    }, step.run, { timeout: wait, polling: 100 });
    return c.locator('.jp-OutputArea').innerText();
  }
  if (step.row) {
    await page.waitForFunction(([name, state]) => {
      const r = document.querySelector(`.nbcloud-row[data-kind="instance"][data-name="${name}"]`);
      return r && (!state || r.querySelector('.nbcloud-state').textContent === state);
    }, [step.row, step.state || ''], { timeout: wait, polling: 50 });
    return row(page, step.row).innerText();
  }
  if (step.press) {
    const button = row(page, step.name).locator(`.nbcloud-${step.press}`);
    await button.click({ timeout: wait });
    return step.press;
  }
  if (step.show) {
    await row(page, step.show).locator('.nbcloud-name').click();
    await page.waitForFunction((name) => [...document.querySelectorAll(
      '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .jp-InputArea-editor')]
      .some((e) => e.textContent.includes(`%cloud instance show ${name}`)),
    step.show, { timeout: wait });
    return 'inserted';
  }
  if (step.tab) {
    // JupyterLab draws its terminals on a canvas: the text is in xterm.js's accessibility
    // tree (the terminal setting screenReaderMode, which the test turns on)
    const tab = '.jp-Terminal:not(.lm-mod-hidden) .xterm-accessibility-tree';
    const shows = (text, whole) => page.waitForFunction(([sel, t, w]) => {
      const rows = document.querySelector(sel)?.innerText || '';
      return w ? rows.split('\n').some((l) => l.trim() === t) : rows.includes(t);
    }, [tab, text, whole], { timeout: wait, polling: 100 });
    if (step.after) await shows(step.after, false);
    if (step.type) {
      await page.locator('.jp-Terminal:not(.lm-mod-hidden) .xterm').click();
      await page.keyboard.type(step.type, { delay: 20 });
    }
    await shows(step.tab, true);
    return page.locator(tab).innerText();
  }
  if (step.size) {
    return cell(page, step.cell).locator('.nbcloud-terminal').getAttribute('data-size');
  }
  if (step.keys) {
    await cell(page, step.cell).locator('.nbcloud-terminal .xterm').click();
    for (const key of step.keys) await page.keyboard.press(key);
    return 'pressed';
  }
  if (step.type !== undefined) {
    const screen = cell(page, step.cell).locator('.nbcloud-terminal .xterm');
    await screen.waitFor({ timeout: wait });
    await screen.click();
    await page.keyboard.type(step.type, { delay: 20 });
    return 'typed';
  }
  if (step.line) {
    await page.waitForFunction(([i, text]) => {
      const cells = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell');
      const t = cells[i]?.querySelector('.nbcloud-terminal .xterm-rows')?.innerText || '';
      return t.split('\n').some((l) => l.trim() === text);
    }, [step.cell, step.line], { timeout: wait, polling: 100 });
    return cell(page, step.cell).locator('.nbcloud-terminal .xterm-rows').innerText();
  }
  throw new Error(`unknown step ${JSON.stringify(step)}`);
}
