// The topology as a mini graph: the server's stable positions (columns by kind, a slot
// each), nodes coloured by kind and state, edges as straight lines. Plain SVG.
const NS = 'http://www.w3.org/2000/svg';
const KIND_COLOURS = {
  instance: '#2ca02c', network: '#1f77b4', volume: '#9467bd', cdrom: '#17becf',
  pool: '#8c564b', secgroup: '#e377c2', loadbalancer: '#bcbd22', floating: '#393b79',
  ipool: '#637939',
};
const STATE_COLOURS = {
  missing: '#d62728', crashed: '#d62728', failed: '#d62728', error: '#d62728',
  stopped: '#aaaaaa', inactive: '#aaaaaa', suspended: '#aaaaaa', shutoff: '#aaaaaa',
  starting: '#ff7f0e', stopping: '#ff7f0e', paused: '#ff7f0e',
};
const WIDTH = 250;
const ROW = 22;

function svg(tag, attrs) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

export function drawGraph(box, nodes, edges) {
  box.replaceChildren();
  if (!nodes.length) return;
  const xs = nodes.map((n) => n.x);
  const ys = nodes.map((n) => n.y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const height = Math.min(320, (y1 - y0 + 1) * ROW + 10);
  const sx = (x) => 10 + (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5) * (WIDTH - 90);  // labels right
  const sy = (y) => 10 + (y1 > y0 ? (y1 - y) / (y1 - y0) : 0) * (height - 20);
  const root = svg('svg', { width: WIDTH, height, viewBox: `0 0 ${WIDTH} ${height}`,
    class: 'nbcloud-topology' });
  const at = Object.fromEntries(nodes.map((n) => [n.id, n]));
  for (const [a, b] of edges) {
    if (!at[a] || !at[b]) continue;
    root.append(svg('line', { x1: sx(at[a].x), y1: sy(at[a].y), x2: sx(at[b].x),
      y2: sy(at[b].y), stroke: '#bbb', 'stroke-width': 1 }));
  }
  for (const n of nodes) {
    const g = svg('g', { class: 'nbcloud-node', 'data-id': n.id });
    g.append(svg('circle', { cx: sx(n.x), cy: sy(n.y), r: 5,
      fill: STATE_COLOURS[n.state] || KIND_COLOURS[n.kind] || '#444' }));
    const label = svg('text', { x: sx(n.x) + 7, y: sy(n.y) + 3, 'font-size': 9 });
    label.textContent = n.name.length > 12 ? `${n.name.slice(0, 11)}…` : n.name;
    const title = svg('title', {});
    title.textContent = `${n.kind} ${n.name}: ${n.state}`;
    g.append(label, title);
    root.append(g);
  }
  box.append(root);
}
