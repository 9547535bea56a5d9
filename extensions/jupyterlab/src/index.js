// nbcloud in JupyterLab: the "Cloud" side panel. It reads the server extension
// (nbcloud/ui/server) without a kernel: the inventory with live state, refreshed every
// second while the panel is visible; start / stop / terminal / console actions; a filter;
// the topology as a mini graph; clicking an instance inserts `%cloud instance show NAME`
// into the active notebook. Terminals open as JupyterLab terminal tabs running
// `nbcloud terminal NAME [--serial]`, also when the terminal widget in a cell asks.
import { ILabShell } from '@jupyterlab/application';
import { URLExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { drawGraph } from './graph';

const cloudIcon = new LabIcon({
  name: 'nbcloud:cloud',
  svgstr: '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">'
    + '<path class="jp-icon3" fill="#616161" d="M19.4 10.04A7.49 7.49 0 0 0 12 4a7.5 7.5 0 '
    + '0 0-6.65 4.04A6 6 0 0 0 6 20h13a5 5 0 0 0 .4-9.96z"/></svg>',
});

const KINDS = [['instance', 'Instances'], ['volume', 'Volumes'], ['network', 'Networks']];
const POLL_MS = 1000;

async function request(path, init = {}) {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'nbcloud', path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || body.message || response.statusText);
  return body;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const c of children) node.append(c);
  return node;
}

class CloudPanel extends Widget {
  constructor(app, tracker) {
    super();
    this.app = app;
    this.tracker = tracker;
    this.id = 'nbcloud-panel';
    this.title.icon = cloudIcon;
    this.title.caption = 'Cloud (nbcloud)';
    this.addClass('nbcloud-panel');
    this.state = null;
    this.errors = {};
    this.filter = el('input', { type: 'search', placeholder: 'Filter: name, kind, state, stack',
      className: 'nbcloud-filter' });
    this.filter.addEventListener('input', () => this.draw());
    this.status = el('div', { className: 'nbcloud-status' });
    this.graph = el('div', { className: 'nbcloud-graph' });
    this.lists = el('div', { className: 'nbcloud-lists' });
    this.node.append(el('h2', { textContent: 'Cloud' }), this.status, this.filter,
      this.graph, this.lists);
    this.timer = null;
  }

  onAfterShow() { this.refresh(); this.timer = setInterval(() => this.refresh(), POLL_MS); }

  onAfterAttach() { if (this.isVisible && !this.timer) this.onAfterShow(); }

  onBeforeHide() { clearInterval(this.timer); this.timer = null; }

  onBeforeDetach() { this.onBeforeHide(); }

  async refresh() {
    if (this.busy) return;
    this.busy = true;
    try {
      this.state = await request('state');
      this.status.textContent = this.state.uri;
      this.status.classList.remove('nbcloud-error');
    } catch (err) {
      this.status.textContent = `the cloud does not answer: ${err.message}`;
      this.status.classList.add('nbcloud-error');
    } finally {
      this.busy = false;
    }
    this.draw();
  }

  matches(node) {
    const words = this.filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const text = `${node.name} ${node.kind} ${node.state} ${node.stack}`.toLowerCase();
    return words.every((w) => text.includes(w));
  }

  draw() {
    if (!this.state) return;
    const shown = this.state.nodes.filter((n) => this.matches(n));
    drawGraph(this.graph, shown, this.state.edges);
    this.lists.replaceChildren();
    const known = new Set(KINDS.map(([k]) => k));
    for (const [kind, label] of KINDS) {
      this.lists.append(this.section(label, shown.filter((n) => n.kind === kind)));
    }
    const stacks = this.state.stacks.filter((s) => this.matches(
      { name: s.name, kind: 'stack', state: '', stack: s.name }));
    this.lists.append(this.section('Stacks', stacks.map((s) => ({
      kind: 'stack', name: s.name, state: `${s.resources} resources`, stack: '' }))));
    const other = shown.filter((n) => !known.has(n.kind));
    if (other.length) this.lists.append(this.section('Other', other));
  }

  section(label, nodes) {
    const list = el('ul', { className: 'nbcloud-list' });
    for (const n of nodes) list.append(this.row(n));
    return el('section', { className: `nbcloud-section nbcloud-${label.toLowerCase()}` },
      el('h3', { textContent: `${label} (${nodes.length})` }), list);
  }

  row(n) {
    const li = el('li', { className: `nbcloud-row nbcloud-state-${n.state.split(' ')[0]}` });
    li.dataset.kind = n.kind;
    li.dataset.name = n.name;
    const details = Object.entries(n.details || {}).map(([k, v]) => `${k}: ${v}`).join('\n');
    const name = el('span', { className: 'nbcloud-name', textContent: n.name,
      title: `${n.kind} ${n.name}\nstate: ${n.state}${n.stack ? `\nstack: ${n.stack}` : ''}`
        + (details ? `\n${details}` : '') });
    li.append(name, el('span', { className: 'nbcloud-state', textContent: n.state }));
    if (n.kind === 'instance') {
      name.classList.add('nbcloud-link');
      name.addEventListener('click', () => this.insertShow(n.name));
      const running = n.state === 'running';
      li.append(
        this.action(n, 'start', '▶', 'start', !running),
        this.action(n, 'stop', '■', 'stop (graceful)', running),
        this.button('terminal', '>_', 'a shell over SSH in a terminal tab', running,
          () => this.openTerminal(n.name, false)),
        this.button('console', '⌨', 'the serial console in a terminal tab', running,
          () => this.openTerminal(n.name, true)));
      if (this.errors[n.name]) {
        li.append(el('div', { className: 'nbcloud-error', textContent: this.errors[n.name] }));
      }
    }
    return li;
  }

  button(cls, text, title, enabled, onClick) {
    const b = el('button', { className: `nbcloud-action nbcloud-${cls}`, textContent: text,
      title, disabled: !enabled });
    b.addEventListener('click', onClick);
    return b;
  }

  action(n, verb, text, title, enabled) {
    return this.button(verb, text, title, enabled, async (event) => {
      event.target.disabled = true;
      delete this.errors[n.name];
      try {
        await request(`instances/${encodeURIComponent(n.name)}/${verb}`, { method: 'POST' });
      } catch (err) {
        this.errors[n.name] = `${verb}: ${err.message}`;
      }
      this.refresh();
    });
  }

  insertShow(name) {
    const panel = this.tracker && this.tracker.currentWidget;
    if (!panel) return;
    const notebook = panel.content;
    NotebookActions.insertBelow(notebook);
    notebook.activeCell.model.sharedModel.setSource(`%cloud instance show ${name}`);
    this.app.shell.activateById(panel.id);
  }

  async openTerminal(name, serial) {
    return openTerminal(this.app, name, serial);
  }
}

async function openTerminal(app, name, serial) {
  const { command } = await request(
    `terminal?name=${encodeURIComponent(name)}${serial ? '&serial=1' : ''}`);
  const widget = await app.commands.execute('terminal:create-new');
  const session = widget && widget.content && widget.content.session;
  if (!session) return;
  for (let i = 0; i < 50 && session.connectionStatus !== 'connected'; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  session.send({ type: 'stdin', content: [`${command}\r`] });
  widget.title.label = `${name} ${serial ? 'serial' : 'ssh'}`;
}

const plugin = {
  id: 'nbcloud-jupyterlab:panel',
  description: 'The Cloud side panel of nbcloud',
  autoStart: true,
  requires: [ILabShell],
  optional: [INotebookTracker],
  activate: (app, labShell, tracker) => {
    const panel = new CloudPanel(app, tracker);
    labShell.add(panel, 'left', { rank: 650 });
    window.nbcloudTerminalTabs = true;   // the terminal widget shows its tab button
    window.addEventListener('nbcloud:terminal', (event) => {
      const { name, serial } = event.detail || {};
      if (typeof name === 'string') openTerminal(app, name, Boolean(serial));
    });
  },
};

export default plugin;
