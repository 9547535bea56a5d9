// Load a page holding one Plotly topology figure in Debian's headless Chromium and measure
// what a reader sees: every label's box, every marker's box, and every edge (the first trace,
// polylines split at nulls) in screen pixels. Prints JSON: the collisions found, and a PNG.
//
//   node figure_geometry.mjs '{"url": "file:///...html", "screenshot": "/...png"}'
import { launch } from './chromium.mjs';

const job = JSON.parse(process.argv[2]);
const browser = await launch(job);
let report;
try {
  const page = await browser.newPage({ viewport: { width: job.width || 1000, height: 1400 } });
  await page.goto(job.url);
  await page.waitForSelector('.js-plotly-plot g.textpoint text');
  report = await page.evaluate(measure);
  if (job.screenshot) {
    await page.locator('.js-plotly-plot').screenshot({ path: job.screenshot });
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report) + '\n');

function measure() {
  const plot = document.querySelector('.js-plotly-plot');
  const svg = plot.querySelector('svg.main-svg').getBoundingClientRect();
  const box = (el, pad = 0) => {
    const r = el.getBoundingClientRect();
    return { l: r.left + pad, t: r.top + pad, r: r.right - pad, b: r.bottom - pad };
  };
  const labels = [...plot.querySelectorAll('g.textpoint text')].map((t) => ({
    text: t.textContent, ...box(t, 0.5) }));
  const markers = [...plot.querySelectorAll('g.points path.point')].map((p) => box(p, 1));
  const xa = plot._fullLayout.xaxis;
  const ya = plot._fullLayout.yaxis;
  const px = (x, y) => [svg.left + xa._offset + xa.l2p(x), svg.top + ya._offset + ya.l2p(y)];
  const edges = [];
  let cur = [];
  const data = plot.data[0];
  for (let i = 0; i <= data.x.length; i++) {
    if (i === data.x.length || data.x[i] === null) {
      if (cur.length) edges.push(cur);
      cur = [];
    } else cur.push(px(data.x[i], data.y[i]));
  }
  const inside = (p, r) => p[0] > r.l && p[0] < r.r && p[1] > r.t && p[1] < r.b;
  const overlap = (a, b) => a.l < b.r && b.l < a.r && a.t < b.b && b.t < a.b;
  const crossings = [];
  edges.forEach((poly, e) => {
    const [first, last] = [poly[0], poly[poly.length - 1]];
    for (let k = 1; k < poly.length; k++) {
      const [a, b] = [poly[k - 1], poly[k]];
      const n = Math.ceil(Math.hypot(b[0] - a[0], b[1] - a[1]));
      for (let s = 0; s <= n; s++) {
        const p = [a[0] + (b[0] - a[0]) * s / Math.max(n, 1),
          a[1] + (b[1] - a[1]) * s / Math.max(n, 1)];
        for (const l of labels) {
          if (inside(p, l)) crossings.push(`edge ${e} crosses label ${l.text}`);
        }
        markers.forEach((m, j) => {
          if (inside(p, m) && !inside(first, m) && !inside(last, m)) {
            crossings.push(`edge ${e} runs through marker ${j}`);
          }
        });
      }
    }
  });
  const overlaps = [];
  labels.forEach((a, i) => labels.slice(i + 1).forEach((b) => {
    if (overlap(a, b)) overlaps.push(`label ${a.text} overlaps label ${b.text}`);
  }));
  labels.forEach((a) => markers.forEach((m, j) => {
    if (overlap(a, m)) overlaps.push(`label ${a.text} overlaps marker ${j}`);
  }));
  markers.forEach((a, i) => markers.slice(i + 1).forEach((b, j) => {
    if (overlap(a, b)) overlaps.push(`marker ${i} overlaps marker ${i + j + 1}`);
  }));
  const clipped = labels.filter((l) => l.l < svg.left || l.r > svg.right || l.t < svg.top
    || l.b > svg.bottom).map((l) => l.text);
  return {
    labels: labels.map((l) => l.text), markers: markers.length, edges: edges.length,
    crossings: [...new Set(crossings)], overlaps, clipped,
    size: [svg.width, svg.height],
  };
}
