// DOM building and formatting helpers shared by every page.
//
// Everything that comes from the server (payloads, outputs, logs, errors)
// is untrusted: it only ever reaches the page as text nodes or
// `textContent`, never as markup. `h` is the one way pages build elements.

/**
 * Creates an element. `props`: `class`, `text` (textContent), `dataset`,
 * functions under `on…` names (event listeners, not attributes), anything
 * else as an attribute (`true` gives an empty attribute, null/false none).
 * Children: nodes, strings (as text), arrays of those, null (skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

/** Appends children (nodes, strings as text, nested arrays; null skipped). */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces all the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// Status icons: the status is always given as text too, the icon is
// decoration (aria-hidden) so that nothing depends on colour alone.
const ICONS = {
  queued: '…',
  running: '▶',
  pending: '…',
  succeeded: '✓',
  failed: '✗',
  timed_out: '⏱',
  cancelled: '⊘',
  skipped: '↷',
  loaded: '✓',
  stale: '⚠',
};

export const FINISHED = new Set(['succeeded', 'failed', 'timed_out', 'cancelled']);

/** A status chip: icon + text, e.g. "✗ failed" ("timed_out" reads "timed out"). */
export function statusChip(status) {
  const name = String(status || 'unknown');
  return h('span', { class: `status status-${name.replace(/[^a-z_]/g, '')}` },
    h('span', { class: 'status-icon', 'aria-hidden': 'true', text: ICONS[name] || '•' }),
    ' ', name.replace(/_/g, ' '));
}

const dateFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: '2-digit', day: '2-digit',
  hour: '2-digit', minute: '2-digit', second: '2-digit',
});

/** A `<time>` element in local time, or "—" when `ms` is absent. */
export function timeEl(ms) {
  if (ms == null) return h('span', { class: 'muted', text: '—' });
  const date = new Date(ms);
  return h('time', { datetime: date.toISOString(), text: dateFormat.format(date) });
}

/** "850 ms", "3.2 s", "4 min 05 s", "2 h 03 min". */
export function formatDuration(ms) {
  if (ms == null || !Number.isFinite(ms)) return '—';
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min ${String(Math.floor(s % 60)).padStart(2, '0')} s`;
  return `${Math.floor(min / 60)} h ${String(min % 60).padStart(2, '0')} min`;
}

/** "512 B", "12.3 KiB", "4.0 MiB". */
export function formatBytes(n) {
  if (n == null || !Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return i === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

/** A filename made of safe characters only. */
export function safeName(text) {
  return String(text).replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 120);
}

// The single polite live region (#live). Messages are throttled to at most
// one every two seconds; a function is evaluated when the message goes out,
// so a page can keep counting changes until then.
const GAP_MS = 2000;
let pending = null;
let lastAt = -Infinity;
let timer = 0;

export function announce(message) {
  pending = message;
  if (timer) return;
  const wait = Math.max(250, lastAt + GAP_MS - Date.now());
  timer = setTimeout(flushAnnouncement, wait);
}

function flushAnnouncement() {
  timer = 0;
  const text = typeof pending === 'function' ? pending() : pending;
  pending = null;
  if (!text) return;
  lastAt = Date.now();
  const live = document.getElementById('live');
  if (live) live.textContent = text;
}

/**
 * A `<table class="data">` with a header row (`<th scope="col">`) and an
 * optional visually hidden caption. Returns `{wrap, table, tbody}`.
 */
export function dataTable(props, columns, caption) {
  const tbody = h('tbody');
  const table = h('table', { ...props, class: `data ${props.class || ''}`.trim() },
    caption && h('caption', { class: 'visually-hidden', text: caption }),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', text: c })))),
    tbody);
  return { wrap: h('div', { class: 'table-wrap' }, table), table, tbody };
}

/** Shows a stream's state ("Live", "Paused", "Reconnecting…") in `el`. */
export function setLiveState(el, text) {
  el.textContent = text;
  el.dataset.state = text === 'Live' ? 'live' : text === 'Paused' ? 'paused' : 'waiting';
}

/** Shows an error message in an element (a `role="alert"` paragraph). */
export function showError(el, message) {
  el.textContent = message || '';
  el.hidden = !message;
}

/**
 * Runs `task` with `button` disabled. A disabled button loses the keyboard
 * focus, so the focus is given back to it afterwards when nothing else
 * took it.
 */
export async function whileBusy(button, task) {
  button.disabled = true;
  try {
    return await task();
  } finally {
    button.disabled = false;
    if ((document.activeElement === document.body || !document.activeElement) && button.isConnected && !button.hidden) {
      button.focus();
    }
  }
}
