// Open one notebook in real JupyterLab in Debian's headless Chromium, run it with the
// menu's Run > Run All Cells, wait until the kernel is done, and print (JSON, one line)
// what the page shows: each code cell's prompt and output areas, and each Plotly figure's
// drawn traces and axis labels. tests/browser/test_jupyterlab.py judges the report.
//
//   node run_all_cells.mjs '{"url": ..., "timeout": seconds, "screenshot": path}'
import { launch } from './chromium.mjs';

const job = JSON.parse(process.argv[2]);
// the notebook on show (a restored workspace may hold others, hidden)
const PANEL = '.jp-NotebookPanel:not(.lm-mod-hidden)';

const browser = await launch(job);
const report = { cells: [], figures: [], console: [], finished: false };
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('console', (msg) => {
    if (msg.type() === 'error') report.console.push(msg.text().slice(0, 300));
  });
  page.on('pageerror', (err) => report.console.push(`pageerror: ${String(err).slice(0, 300)}`));
  await page.goto(job.url);
  await page.locator(`${PANEL} .jp-Cell`).first().waitFor({ timeout: 120000 });
  // a fresh JupyterLab asks which kernel to start: take the one it proposes (the
  // notebook's python3), as a person would
  const accept = page.locator('.jp-Dialog .jp-Dialog-button.jp-mod-accept');
  try {
    await accept.waitFor({ timeout: 15000 });
    await accept.click();
  } catch { /* no dialog: the kernel started by itself */ }
  await page.waitForFunction(() => /\| Idle/.test(
    document.querySelector('.jp-StatusBar-Widget')?.parentElement?.textContent || ''),
  null, { timeout: 120000, polling: 500 });
  await kernelIdle(page, 120);

  // Run > Run All Cells, as a person would
  await page.locator('.lm-MenuBar-itemLabel', { hasText: /^Run$/ }).click();
  await page.locator('.lm-Menu-itemLabel', { hasText: /^Run All Cells$/ }).click();
  report.finished = await runFinished(page, job.timeout);

  // every output area, scrolled into view first (the notebook renders lazily)
  const cells = page.locator(`${PANEL} .jp-CodeCell`);
  const n = await cells.count();
  for (let i = 0; i < n; i++) {
    const cell = cells.nth(i);
    await cell.evaluate((el) => el.scrollIntoView({ block: 'start' }));
    const plots = cell.locator('.js-plotly-plot');
    for (let k = 0; k < await plots.count(); k++) {
      await plots.nth(k).evaluate((el) => el.scrollIntoView({ block: 'center' }));
      await page.waitForTimeout(500);   // a plot drawn on becoming visible
    }
    report.cells.push(await cell.evaluate(describeCell));
  }
  report.figures = await page.evaluate(describeFigures);
  if (job.screenshot) await page.screenshot({ path: job.screenshot, fullPage: false });
} catch (err) {
  report.error = String(err).slice(0, 2000);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report) + '\n');

async function kernelIdle(page, seconds) {
  // the notebook toolbar's kernel status: a filled circle while busy
  await page.waitForFunction(() => {
    const s = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
    return s && s.getAttribute('data-status') === 'idle';
  }, null, { timeout: seconds * 1000, polling: 500 });
}

async function runFinished(page, seconds) {
  // done when no cell waits ([*]) and the kernel is idle twice in a row, 1 s apart
  const deadline = Date.now() + seconds * 1000;
  let quiet = 0;
  while (Date.now() < deadline) {
    const busy = await page.evaluate(() => {
      const prompts = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')];
      const waiting = prompts.some((p) => p.textContent.includes('*'));
      const s = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
      return waiting || !s || s.getAttribute('data-status') !== 'idle';
    });
    quiet = busy ? 0 : quiet + 1;
    if (quiet >= 2) return true;
    await page.waitForTimeout(1000);
  }
  return false;
}

function describeCell(cell) {
  const source = cell.querySelector('.jp-InputArea-editor')?.textContent || '';
  const prompt = cell.querySelector('.jp-InputPrompt')?.textContent.trim() || '';
  const outputs = [...cell.querySelectorAll('.jp-OutputArea-output')].map((o) => ({
    mime: o.getAttribute('data-mime-type') || '',
    classes: o.className,
    text: (o.innerText || '').slice(0, 2000),
  }));
  return { source: source.slice(0, 300), prompt, outputs };
}

function describeFigures() {
  const cellOf = (el) => {
    const cells = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')];
    return cells.findIndex((c) => c.contains(el));
  };
  return [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .js-plotly-plot')].map((plot) => {
    const traces = [...plot.querySelectorAll('g.trace')].map((t) => {
      const line = [...t.querySelectorAll('path.js-line')].map((p) => p.getAttribute('d') || '');
      return {
        segments: line.reduce((a, d) => a + (d.match(/L/g) || []).length, 0),
        points: t.querySelectorAll('path.point').length,
      };
    });
    const ticks = (axis) => [...plot.querySelectorAll(`g.${axis}axislayer-above text`)]
      .map((t) => t.textContent);
    const legend = [...plot.querySelectorAll('g.legend g.traces text.legendtext')]
      .map((t) => t.textContent);
    const box = plot.getBoundingClientRect();
    return {
      cell: cellOf(plot),
      title: plot.querySelector('text.gtitle')?.textContent || '',
      svg: plot.querySelectorAll('svg.main-svg').length,
      width: box.width, height: box.height,
      traces, legend, xticks: ticks('x'), yticks: ticks('y'),
      annotations: [...plot.querySelectorAll('g.annotation-text-g text')].map((t) => t.textContent),
    };
  });
}
