// The executions list (/ui/): filters kept in the URL, pages walked back
// with a cursor, and live updates from /api/v1/stream. Rows are keyed by
// execution id, so a row is never shown twice whichever way it arrives.

import { api, follow, isQuiet, query } from './api.js';
import {
  FINISHED, announce, dataTable, formatBytes, formatDuration, h, replace, setLiveState, showError,
  statusChip, timeEl, whileBusy,
} from './dom.js';

const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled'];
const TRIGGERS = ['webhook', 'api', 'replay', 'test', 'cron'];
const PAGE_SIZE = 50;
const COLUMNS = ['Execution', 'Workflow', 'Status', 'Trigger', 'Started', 'Duration', 'Attempts', 'Peak memory'];

export function renderList(ctx) {
  ctx.title('Executions');
  const view = buildView();
  const state = {
    filters: readFilters(new URLSearchParams(location.search)),
    rows: new Map(), // id → {summary, tr}
    cursor: null,
    paused: false,
    stream: null,
    generation: 0, // bumped on new filters: answers for the old ones are dropped
    counts: { added: 0, changed: 0, unsearched: 0 },
  };

  replace(ctx.root,
    h('h1', { tabindex: '-1', text: 'Executions' }),
    view.form, view.bar, view.error, view.searchNote, view.tableWrap, view.empty, view.more);
  writeForm(view, state.filters);

  // ---- loading pages ----

  async function fetchPage(cursor) {
    const params = { ...urlParams(state.filters), limit: PAGE_SIZE, cursor };
    return api(`/api/v1/executions${query(params)}`, { signal: ctx.signal });
  }

  /** The first page: shown afresh (`reset`) or merged into the rows shown. */
  async function loadFirst(reset) {
    const generation = state.generation;
    try {
      const page = await fetchPage(null);
      if (generation !== state.generation || (state.paused && !reset)) return;
      showError(view.error, '');
      const items = page.executions || [];
      // Merging a page whose oldest row is newer than every row shown
      // would leave a hole in between: start again from this page then.
      const newest = summaryAt(0);
      const gap = page.next_cursor && items.length && newest && isNewer(items.at(-1), newest);
      if (reset || gap || state.rows.size === 0) {
        clearRows();
        state.cursor = page.next_cursor || null;
        items.forEach((s) => upsert(s));
      } else {
        const results = items.map((s) => upsert(s));
        const added = results.filter((r) => r === 'added').length;
        const changed = results.filter((r) => r === 'changed').length;
        if (added || changed) countChanges(added, changed);
      }
      updateFooter();
    } catch (err) {
      if (isQuiet(err)) return;
      showError(view.error, `Could not load the executions: ${err.message}`);
      view.summary.textContent = '';
    }
  }

  async function loadMore() {
    if (!state.cursor) return;
    const generation = state.generation;
    const lastBefore = view.tbody.rows[view.tbody.rows.length - 1];
    view.more.textContent = 'Loading…';
    await whileBusy(view.more, async () => {
      try {
        const page = await fetchPage(state.cursor);
        if (generation !== state.generation) return;
        showError(view.error, '');
        const before = state.rows.size;
        (page.executions || []).forEach((s) => upsert(s));
        state.cursor = page.next_cursor || null;
        announce(`${state.rows.size - before} more executions loaded`);
      } catch (err) {
        if (!isQuiet(err)) showError(view.error, `Could not load more executions: ${err.message}`);
      } finally {
        view.more.textContent = 'Load more';
        updateFooter();
      }
    });
    // The button went away with the last page: focus the first row it brought.
    if (view.more.hidden && document.activeElement === document.body) {
      (lastBefore?.nextElementSibling || lastBefore)?.querySelector('a')?.focus();
    }
  }

  // ---- rows ----

  /** The summary shown in row `index` (negative: from the end), or null. */
  function summaryAt(index) {
    const rows = view.tbody.rows;
    const tr = rows[index < 0 ? rows.length + index : index];
    return tr ? state.rows.get(tr.dataset.id).summary : null;
  }

  function clearRows() {
    state.rows.clear();
    view.tbody.replaceChildren();
  }

  /** Adds or updates a row: 'added', 'changed' or null (nothing new). */
  function upsert(s) {
    const known = state.rows.get(s.id);
    if (known) {
      // An answer fetched before a live event must not take a row back.
      if (FINISHED.has(known.summary.status) && !FINISHED.has(s.status)) return null;
      const next = { ...known.summary, ...s };
      if (sameRow(known.summary, next)) return null;
      known.summary = next;
      fillRow(known.tr, next);
      return 'changed';
    }
    const tr = buildRow(s);
    state.rows.set(s.id, { summary: s, tr });
    insertInOrder(tr, s);
    return 'added';
  }

  /** Rows stay newest first: by creation time, then id. */
  function insertInOrder(tr, s) {
    const last = summaryAt(-1);
    if (!last || isNewer(last, s)) {
      view.tbody.append(tr);
      return;
    }
    for (const other of view.tbody.rows) {
      if (isNewer(s, state.rows.get(other.dataset.id).summary)) {
        view.tbody.insertBefore(tr, other);
        return;
      }
    }
    view.tbody.append(tr);
  }

  // ---- live updates ----

  function onExecution(s) {
    if (state.paused || !s || typeof s !== 'object' || !s.id) return;
    if (state.rows.has(s.id)) {
      if (upsert(s) === 'changed') countChanges(0, 1);
      return;
    }
    if (!matches(s, state.filters)) return;
    if (state.filters.q) {
      // The server searches payloads; we cannot tell whether it matches.
      view.searchNote.hidden = false;
      state.counts.unsearched += 1;
      countChanges(0, 0);
      return;
    }
    // Older than the oldest row while more pages remain: "Load more" brings it.
    const oldest = summaryAt(-1);
    if (state.cursor && oldest && isNewer(oldest, s)) return;
    upsert(s);
    countChanges(1, 0);
    updateFooter();
  }

  function countChanges(added, changed) {
    state.counts.added += added;
    state.counts.changed += changed;
    announce(() => {
      const { added: a, changed: c, unsearched: u } = state.counts;
      state.counts = { added: 0, changed: 0, unsearched: 0 };
      const parts = [];
      if (a) parts.push(`${a} new ${a === 1 ? 'execution' : 'executions'}`);
      if (c) parts.push(`${c} changed`);
      if (u) parts.push('new executions: reload to search them');
      return parts.join(', ');
    });
  }

  function startStream() {
    state.stream = follow('/api/v1/stream', {
      handlers: { execution: onExecution, workflows: () => loadWorkflowNames(view, ctx.signal) },
      onOpen: () => loadFirst(false), // catch up on what happened while away
      onState: showState,
    });
  }

  const showState = (text) => setLiveState(view.liveState, text);

  function setPaused(paused) {
    state.paused = paused;
    view.toggle.setAttribute('aria-pressed', String(paused));
    view.toggle.textContent = paused ? 'Resume live updates' : 'Pause live updates';
    if (paused) {
      state.stream?.close();
      state.stream = null;
      showState('Paused');
    } else {
      showState('Reconnecting…');
      startStream(); // on open, the first page is fetched again and merged
    }
    announce(paused ? 'Live updates paused' : 'Live updates resumed');
  }

  // ---- filters ----

  function apply(filters) {
    state.filters = filters;
    state.generation += 1;
    const url = `/ui/${query(urlParams(filters))}`;
    history[url === location.pathname + location.search ? 'replaceState' : 'pushState'](null, '', url);
    view.searchNote.hidden = true;
    clearRows();
    state.cursor = null;
    view.summary.textContent = 'Loading…';
    loadFirst(true).then(() => {
      if (!ctx.signal.aborted) announce(`${state.rows.size} executions shown`);
    });
  }

  function updateFooter() {
    const n = state.rows.size;
    view.more.hidden = !state.cursor;
    view.empty.hidden = n > 0 || Boolean(state.cursor);
    view.summary.textContent = `Showing ${n} ${n === 1 ? 'execution' : 'executions'}${state.cursor ? '; more are older' : ''}`;
  }

  /** Running rows show their time so far; not while paused. */
  function tick() {
    if (state.paused) return;
    for (const { summary, tr } of state.rows.values()) {
      if (summary.status === 'running') tr.cells[5].textContent = durationText(summary);
    }
  }

  view.form.addEventListener('submit', (event) => {
    event.preventDefault();
    apply(readForm(view));
  });
  view.clear.addEventListener('click', () => {
    const empty = readFilters(new URLSearchParams());
    writeForm(view, empty);
    apply(empty);
  });
  view.toggle.addEventListener('click', () => setPaused(!state.paused));
  view.more.addEventListener('click', loadMore);

  const timer = setInterval(tick, 1000);
  ctx.signal.addEventListener('abort', () => {
    clearInterval(timer);
    state.stream?.close();
  });

  loadWorkflowNames(view, ctx.signal, state.filters.workflow);
  view.summary.textContent = 'Loading…';
  loadFirst(true);
  showState('Connecting…');
  startStream();
}

// ---- the page's elements ----

function buildView() {
  const field = (id, label, control) => h('div', { class: 'field' }, h('label', { for: id, text: label }), control);
  const select = (id, name, values) => h('select', { id, name },
    h('option', { value: '', text: 'Any' }),
    values.map((v) => h('option', { value: v, text: v.replace(/_/g, ' ') })));

  const workflow = h('select', { id: 'f-workflow', name: 'workflow' }, h('option', { value: '', text: 'Any' }));
  const trigger = select('f-trigger', 'trigger', TRIGGERS);
  const since = h('input', { id: 'f-since', name: 'since', type: 'datetime-local', step: '1' });
  const until = h('input', { id: 'f-until', name: 'until', type: 'datetime-local', step: '1' });
  const q = h('input', { id: 'f-q', name: 'q', type: 'search', autocomplete: 'off', spellcheck: 'false' });
  const boxes = STATUSES.map((s) => h('input', { type: 'checkbox', name: 'status', value: s, id: `f-status-${s}` }));
  const clear = h('button', { type: 'button', id: 'f-clear', text: 'Clear' });

  const form = h('form', { id: 'filters', class: 'filters', 'aria-label': 'Filter executions', novalidate: true },
    h('fieldset', { class: 'status-filter' },
      h('legend', { text: 'Status' }),
      boxes.map((box) => h('label', { class: 'check', for: box.id }, box, ` ${box.value.replace(/_/g, ' ')}`))),
    h('div', { class: 'filter-fields' },
      field('f-workflow', 'Workflow', workflow),
      field('f-trigger', 'Trigger', trigger),
      field('f-since', 'Since', since),
      field('f-until', 'Until', until),
      field('f-q', 'Search id or payload', q),
      h('div', { class: 'filter-actions' },
        h('button', { type: 'submit', class: 'button-primary', text: 'Apply' }),
        clear)));

  const liveState = h('span', { id: 'live-state', class: 'live-state' });
  const toggle = h('button', { type: 'button', id: 'live-toggle', 'aria-pressed': 'false', text: 'Pause live updates' });
  const summary = h('p', { id: 'list-summary', class: 'muted' });
  const bar = h('div', { class: 'list-bar' },
    h('p', { class: 'live-indicator' }, 'Updates: ', liveState),
    toggle,
    summary);

  const { wrap, tbody } = dataTable({ id: 'executions' }, COLUMNS, 'Executions, newest first');
  return {
    form, boxes, workflow, trigger, since, until, q, clear, liveState, toggle, summary, bar, tbody,
    tableWrap: wrap,
    error: h('p', { id: 'list-error', class: 'error', role: 'alert', hidden: true }),
    searchNote: h('p', { id: 'search-note', class: 'note', hidden: true,
      text: 'New executions arrived. Apply the search again to include them.' }),
    empty: h('p', { id: 'list-empty', class: 'muted', hidden: true, text: 'No executions match these filters.' }),
    more: h('button', { type: 'button', id: 'load-more', hidden: true, text: 'Load more' }),
  };
}

/** Fills the workflow filter with the names served; keeps the selection. */
async function loadWorkflowNames(view, signal, wanted) {
  const selected = wanted ?? view.workflow.value;
  let names = [];
  try {
    const data = await api('/api/v1/workflows', { signal });
    names = (data.workflows || []).map((w) => w.name).filter(Boolean);
  } catch {
    // Without the list, the filter still offers "Any" and the current name.
  }
  if (signal.aborted) return;
  names = [...new Set(selected ? [...names, selected] : names)].sort();
  replace(view.workflow, h('option', { value: '', text: 'Any' }), names.map((n) => h('option', { value: n, text: n })));
  view.workflow.value = selected || '';
}

function buildRow(s) {
  const link = h('a', { href: `/ui/executions/${encodeURIComponent(s.id)}`, 'aria-label': s.id, title: s.id },
    // Ids are UUIDv7: the first digits are a timestamp, shared by rows close
    // in time; the last group is random and tells rows apart.
    h('code', { text: String(s.id).split('-').pop() }));
  const tr = h('tr', { dataset: { id: s.id } },
    h('td', { class: 'c-id' }, link),
    ['c-workflow', 'c-status', 'c-trigger', 'c-started', 'c-duration', 'c-attempts', 'c-memory']
      .map((c) => h('td', { class: c })));
  fillRow(tr, s);
  return tr;
}

function fillRow(tr, s) {
  tr.dataset.status = s.status;
  const cells = tr.cells;
  cells[1].textContent = s.workflow ?? '';
  replace(cells[2], statusChip(s.status));
  cells[3].textContent = s.trigger ?? '';
  replace(cells[4], timeEl(s.created_at_ms));
  cells[5].textContent = durationText(s);
  cells[6].textContent = s.attempts ?? '—';
  cells[7].textContent = s.attempts === 0 ? '—' : formatBytes(s.peak_memory_bytes);
}

const ROW_FIELDS = ['workflow', 'status', 'trigger', 'created_at_ms', 'started_at_ms', 'finished_at_ms',
  'attempts', 'steps', 'peak_memory_bytes', 'error'];

function sameRow(a, b) {
  return ROW_FIELDS.every((k) => a[k] === b[k]);
}

function durationText(s) {
  if (s.finished_at_ms != null) return formatDuration(s.finished_at_ms - s.created_at_ms);
  if (s.status === 'running') return `running ${formatDuration(Date.now() - s.created_at_ms)}`;
  if (s.status === 'queued') return 'queued';
  return '—';
}

function isNewer(a, b) {
  return a.created_at_ms > b.created_at_ms || (a.created_at_ms === b.created_at_ms && a.id > b.id);
}

// ---- filters: URL ⇄ form ⇄ matching ----

/** Filters from a query string (the same names as the API's). */
function readFilters(params) {
  const get = (name) => params.get(name) || '';
  return {
    status: new Set(get('status').split(',').filter((s) => STATUSES.includes(s))),
    workflow: get('workflow'), trigger: get('trigger'), since: get('since'), until: get('until'), q: get('q'),
    sinceMs: parseTime(get('since')),
    untilMs: parseTime(get('until')),
  };
}

function urlParams(f) {
  return { status: [...f.status].join(','), workflow: f.workflow, trigger: f.trigger, since: f.since, until: f.until, q: f.q };
}

function readForm(view) {
  return readFilters(new URLSearchParams({
    status: view.boxes.filter((b) => b.checked).map((b) => b.value).join(','),
    workflow: view.workflow.value,
    trigger: view.trigger.value,
    since: localToRfc3339(view.since.value),
    until: localToRfc3339(view.until.value),
    q: view.q.value.trim(),
  }));
}

function writeForm(view, f) {
  for (const box of view.boxes) box.checked = f.status.has(box.value);
  if (f.workflow && ![...view.workflow.options].some((o) => o.value === f.workflow)) {
    view.workflow.append(h('option', { value: f.workflow, text: f.workflow }));
  }
  view.workflow.value = f.workflow;
  view.trigger.value = f.trigger;
  view.since.value = msToLocal(f.sinceMs);
  view.until.value = msToLocal(f.untilMs);
  view.q.value = f.q;
}

/** Whether a summary arriving live belongs in the list as filtered. */
function matches(s, f) {
  if (f.status.size && !f.status.has(s.status)) return false;
  if (f.workflow && s.workflow !== f.workflow) return false;
  if (f.trigger && s.trigger !== f.trigger) return false;
  if (f.sinceMs != null && s.created_at_ms < f.sinceMs) return false;
  if (f.untilMs != null && s.created_at_ms > f.untilMs) return false;
  return true;
}

/** ms since the epoch from "1767225600000" or an RFC 3339 time; null if neither. */
function parseTime(text) {
  if (!text) return null;
  const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  return Number.isFinite(ms) ? ms : null;
}

/** A datetime-local value (local time) as RFC 3339 UTC, e.g. 2026-05-01T08:30:00Z. */
function localToRfc3339(value) {
  if (!value) return '';
  const date = new Date(value); // no zone: read as local time
  return Number.isNaN(date.getTime()) ? '' : date.toISOString().replace(/\.000Z$/, 'Z');
}

/** ms since the epoch as a datetime-local value (local time). */
function msToLocal(ms) {
  if (ms == null) return '';
  const d = new Date(ms);
  const two = (n) => String(n).padStart(2, '0');
  const seconds = d.getSeconds() ? `:${two(d.getSeconds())}` : '';
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T${two(d.getHours())}:${two(d.getMinutes())}${seconds}`;
}
