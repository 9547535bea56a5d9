// The front end of nbcloud's terminal widget (nbcloud/ui/terminal.py), an anywidget ESM:
// xterm.js in the cell, bytes both ways through the widget's custom messages. Bundled
// with @xterm/xterm and its CSS by esbuild at build time (no CDN at run time).
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import xtermCss from '@xterm/xterm/css/xterm.css';

const STYLE_ID = 'nbcloud-xterm-css';

function ensureStyle() {
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement('style');
  style.id = STYLE_ID;
  style.textContent = xtermCss;
  document.head.appendChild(style);
}

function button(label, title, onClick) {
  const b = document.createElement('button');
  b.textContent = label;
  b.title = title;
  b.className = 'nbcloud-terminal-button';
  b.addEventListener('click', onClick);
  return b;
}

function render({ model, el }) {
  ensureStyle();
  el.classList.add('nbcloud-terminal');
  const bar = document.createElement('div');
  bar.className = 'nbcloud-terminal-bar';
  const title = document.createElement('span');
  title.className = 'nbcloud-terminal-title';
  const status = document.createElement('span');
  status.className = 'nbcloud-terminal-status';
  const tab = button('Open in a terminal tab', 'the same session kind in a JupyterLab terminal',
    () => window.dispatchEvent(new CustomEvent('nbcloud:terminal', {
      detail: { name: model.get('name'), serial: model.get('serial') },
    })));
  // only where nbcloud's JupyterLab extension is there to open the tab
  if (!window.nbcloudTerminalTabs) tab.style.display = 'none';
  const close = button('Close', 'end this session', () => model.send({ type: 'close' }));
  bar.append(title, status, tab, close);
  const box = document.createElement('div');
  box.className = 'nbcloud-terminal-screen';
  el.append(bar, box);

  const term = new Terminal({ cursorBlink: true, fontSize: 13, scrollback: 5000,
    fontFamily: 'monospace' });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(box);
  const refit = () => { try { fit.fit(); } catch { /* not laid out yet */ } };
  const observer = new ResizeObserver(refit);
  observer.observe(box);

  const showStatus = () => {
    const s = model.get('status');
    title.textContent = model.get('title');
    status.textContent = s;
    el.classList.toggle('nbcloud-terminal-closed', s.startsWith('closed'));
    if (s.startsWith('closed')) term.options.disableStdin = true;
  };
  showStatus();
  model.on('change:status', showStatus);

  const onMessage = (msg, buffers) => {
    if (msg.type !== 'output') return;
    for (const b of buffers || []) {
      term.write(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
    }
  };
  model.on('msg:custom', onMessage);
  const input = term.onData((data) => {
    if (!model.get('status').startsWith('closed')) model.send({ type: 'input', data });
  });
  const resize = term.onResize(({ cols, rows }) => {
    el.dataset.size = `${rows} ${cols}`;   // as `stty size` says it in the guest
    model.send({ type: 'resize', cols, rows });
  });
  requestAnimationFrame(() => {
    refit();
    el.dataset.size = `${term.rows} ${term.cols}`;
    model.send({ type: 'ready', cols: term.cols, rows: term.rows });
    term.focus();
  });
  return () => {
    observer.disconnect();
    model.off('msg:custom', onMessage);
    model.off('change:status', showStatus);
    input.dispose();
    resize.dispose();
    term.dispose();
    model.send({ type: 'detach' });
  };
}

export default { render };
