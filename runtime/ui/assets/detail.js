// One execution (/ui/executions/{id}): summary, step timeline, attempts
// with their outputs, logs and host calls, the payload, and the Replay and
// Cancel actions. While it runs, its event stream triggers re-fetches.

import { api, follow, isQuiet } from './api.js';
import {
  FINISHED, announce, append, dataTable, formatBytes, formatDuration, h, replace, safeName, showError,
  statusChip, timeEl, whileBusy,
} from './dom.js';
import { decodeBytes, jsonViewer } from './json.js';

const STREAM_EVENTS = ['step_started', 'step_finished', 'step_skipped', 'log', 'message'];

export function renderDetail(ctx) {
  const id = ctx.params[0];
  const base = `/api/v1/executions/${encodeURIComponent(id)}`;
  ctx.title(`Execution ${id.split('-').pop()}`);
  const view = buildView(id);
  replace(ctx.root, view.head, view.replayResult, view.actionError, view.loadError, view.loading, view.body);

  let record = null;
  let stream = null;
  let refreshTimer = 0;
  const inflight = new Map(); // step index → its `step_started` data, until recorded
  const steps = []; // step index → {head, attempts, shown}

  async function load() {
    try {
      const next = await api(base, { signal: ctx.signal });
      view.loading.hidden = true;
      showError(view.loadError, '');
      show(next);
    } catch (err) {
      if (isQuiet(err)) return;
      view.loading.hidden = true;
      showError(view.loadError, `Could not load execution ${id}: ${err.message}`);
    }
  }

  function show(next) {
    const first = record === null;
    if (!first && record.status !== next.status) announce(`Execution ${next.status.replace(/_/g, ' ')}`);
    record = next;
    for (const [index, started] of inflight) {
      if ((record.steps[index]?.attempts.length ?? 0) >= started.attempt) inflight.delete(index);
    }
    const finished = FINISHED.has(record.status);
    if (finished) inflight.clear(); // an attempt cut short is never recorded
    view.body.hidden = false;
    if (finished && document.activeElement === view.cancel) view.replay.focus(); // before it goes
    view.cancel.hidden = finished;
    replace(view.summary, summaryRows(record));
    replace(view.waterfall, waterfallRows(record, inflight));
    renderSteps();
    if (first) {
      renderPayload();
      replace(view.request, requestSection(record));
    }
    if (finished && !view.output.dataset.done) {
      view.output.dataset.done = 'true';
      replace(view.output, record.output === undefined
        ? h('p', { class: 'muted', text: 'No output.' })
        : jsonViewer({ value: record.output, label: 'Output', filename: `${id}-output.json` }));
    }
    if (finished) stopFollowing();
    else if (!stream) startFollowing();
  }

  /** New attempts are appended; attempts already shown are left as they are. */
  function renderSteps() {
    record.steps.forEach((step, index) => {
      if (!steps[index]) {
        steps[index] = { head: h('div', { class: 'step-head' }), attempts: h('div', { class: 'attempts' }), shown: 0 };
        view.steps.append(h('div', { class: 'step', id: `step-${index}` },
          h('h3', {}, 'Step ', h('code', { text: step.id })), steps[index].head, steps[index].attempts));
      }
      const sv = steps[index];
      replace(sv.head, stepMeta(step, inflight.has(index)));
      for (; sv.shown < step.attempts.length; sv.shown += 1) {
        if (sv.shown === 0) sv.attempts.replaceChildren();
        sv.attempts.append(attemptView(id, step, step.attempts[sv.shown]));
      }
      if (sv.shown === 0) replace(sv.attempts, h('p', { class: 'muted', text: notRunText(step.status) }));
    });
    if (!record.steps.length) replace(view.steps, h('p', { class: 'muted', text: 'This execution has no steps.' }));
  }

  async function renderPayload() {
    const parts = [];
    if (record.payload != null) {
      parts.push(jsonViewer({ value: record.payload, label: 'Payload', filename: `${id}-payload.json` }));
    } else if (record.body_len > 0) {
      parts.push(await bodyViewer());
    } else {
      parts.push(h('p', { class: 'muted', text: 'The event had an empty body.' }));
    }
    if (record.body_len > 0) {
      parts.push(h('p', {},
        h('a', { id: 'body-download', href: `${base}/body`, download: `${safeName(id)}-body` },
          `Download the raw body (${formatBytes(record.body_len)})`)));
    }
    if (!ctx.signal.aborted) replace(view.payload, parts);
  }

  /** A body that is not JSON: fetched as bytes, shown as text. */
  async function bodyViewer() {
    try {
      const res = await api(`${base}/body`, { raw: true, signal: ctx.signal });
      const text = decodeBytes(new Uint8Array(await res.arrayBuffer()));
      return jsonViewer({ text, label: 'Payload', filename: `${id}-body.txt` });
    } catch (err) {
      if (isQuiet(err)) return null;
      return h('p', { class: 'error', text: `Could not load the body: ${err.message}` });
    }
  }

  // ---- live progress ----

  // Events come in bursts (a log line each): one re-fetch per burst.
  function refreshSoon(delay = 300) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(load, delay);
  }

  function startFollowing() {
    const handlers = Object.fromEntries(STREAM_EVENTS.map((name) => [name, () => refreshSoon()]));
    handlers.step_started = (data) => {
      // An attempt under way is not in the record yet: show it running now.
      if (data && typeof data === 'object' && Number.isInteger(data.index)) inflight.set(data.index, data);
      if (record) show(record);
      refreshSoon();
    };
    handlers.finished = () => {
      stopFollowing();
      refreshSoon(0);
    };
    stream = follow(`${base}/events`, {
      handlers,
      onState: (text) => { view.liveState.textContent = text === 'Live' ? 'Following live' : text; },
    });
    view.liveState.hidden = false;
  }

  function stopFollowing() {
    stream?.close();
    stream = null;
    view.liveState.hidden = true;
  }

  // ---- actions ----

  /** Runs an action's request with its button busy; failures go to #action-error. */
  function act(button, what, task) {
    showError(view.actionError, '');
    whileBusy(button, () => task().catch((err) => {
      if (!isQuiet(err)) showError(view.actionError, `Could not ${what}: ${err.message}`);
    }));
  }

  view.replay.addEventListener('click', () => {
    if (!window.confirm('Replay this event as a new execution?')) return;
    act(view.replay, 'replay', async () => {
      const res = await api(`${base}/replay`, { method: 'POST', signal: ctx.signal });
      const newId = String(res?.execution_id ?? '');
      // The link is kept (no navigation): the new execution is one click away.
      replace(view.replayResult, 'Replayed as ',
        h('a', { id: 'replay-link', href: `/ui/executions/${encodeURIComponent(newId)}`, text: newId }),
        res?.status ? ` (${String(res.status).replace(/_/g, ' ')})` : '');
      view.replayResult.hidden = false;
      announce(`Replayed as ${newId}`);
    });
  });

  view.cancel.addEventListener('click', () => act(view.cancel, 'cancel', async () => {
    await api(`${base}/cancel`, { method: 'POST', signal: ctx.signal });
    announce('Cancellation requested');
    refreshSoon();
  }));

  ctx.signal.addEventListener('abort', () => {
    clearTimeout(refreshTimer);
    stopFollowing();
  });
  load();
}

// ---- the page's elements ----

function buildView(id) {
  const section = (key, title, content) => h('section', { class: 'panel', 'aria-labelledby': `h-${key}` },
    h('h2', { id: `h-${key}`, text: title }), content);
  const replay = h('button', { type: 'button', id: 'replay', text: 'Replay' });
  const cancel = h('button', { type: 'button', id: 'cancel', class: 'button-danger', hidden: true, text: 'Cancel' });
  const liveState = h('p', { id: 'detail-live', class: 'live-state muted', hidden: true });
  const v = {
    replay, cancel, liveState,
    head: h('div', { class: 'page-head' },
      h('h1', { tabindex: '-1' }, 'Execution ', h('code', { class: 'break', text: id })),
      h('div', { class: 'actions' }, liveState, replay, cancel)),
    replayResult: h('p', { id: 'replay-result', class: 'note', hidden: true }),
    actionError: h('p', { id: 'action-error', class: 'error', role: 'alert', hidden: true }),
    loadError: h('p', { id: 'detail-error', class: 'error', role: 'alert', hidden: true }),
    loading: h('p', { class: 'muted', text: 'Loading…' }),
    summary: h('dl', { id: 'summary', class: 'summary' }),
    waterfall: h('ol', { id: 'waterfall', class: 'waterfall', 'aria-label': 'Step timeline' }),
    steps: h('div', { id: 'steps' }),
    output: h('div', { id: 'output' }, h('p', { class: 'muted', text: 'No output yet: the execution has not finished.' })),
    payload: h('div', { id: 'payload' }, h('p', { class: 'muted', text: 'Loading…' })),
    request: h('div', { id: 'request' }),
  };
  v.body = h('div', { hidden: true },
    section('summary', 'Summary', v.summary),
    section('timeline', 'Timeline', v.waterfall),
    section('steps', 'Steps', v.steps),
    section('output', 'Output', v.output),
    section('payload', 'Payload', v.payload),
    section('request', 'Request', v.request));
  return v;
}

function row(term, ...value) {
  return h('div', { class: 'dl-row' }, h('dt', { text: term }), h('dd', {}, value));
}

function summaryRows(r) {
  const end = r.finished_at_ms ?? (FINISHED.has(r.status) ? null : Date.now());
  const duration = end == null ? '—' : formatDuration(end - r.created_at_ms) + (r.finished_at_ms ? '' : ' so far');
  const q = r.request?.query ? `?${r.request.query}` : '';
  return [
    row('Status', statusChip(r.status)),
    row('Workflow', h('a', { href: `/ui/?workflow=${encodeURIComponent(r.workflow)}`, text: r.workflow })),
    row('Trigger', r.trigger),
    r.user != null && row('User', r.user),
    r.environment != null && row('Environment', r.environment),
    r.replay_of && row('Replay of', h('a', {
      id: 'replay-of', href: `/ui/executions/${encodeURIComponent(r.replay_of)}`, text: `Replay of ${r.replay_of}`,
    })),
    row('Created', timeEl(r.created_at_ms)),
    row('Started', timeEl(r.started_at_ms)),
    row('Finished', timeEl(r.finished_at_ms)),
    row('Duration', duration),
    row('Version', r.version ? h('code', { class: 'break', text: r.version }) : '—'),
    r.request && row('Request', h('code', { class: 'break', text: `${r.request.method} ${r.request.path}${q}` })),
    r.error != null && h('div', { class: 'dl-row' },
      h('dt', { text: 'Error' }), h('dd', { id: 'execution-error', class: 'error-text', text: r.error })),
  ];
}

/**
 * One row per step: a bar from its first attempt's start to its last
 * attempt's end, placed on the execution's whole span. The duration is
 * also given as text, so the bar's length is never the only clue.
 */
function waterfallRows(r, inflight) {
  const now = Date.now();
  const spans = r.steps.map((step, index) => {
    const parts = step.attempts.map((a) => [a.started_at_ms, a.started_at_ms + a.wall_time_us / 1000]);
    const live = inflight.get(index);
    if (live && Number.isFinite(live.started_at_ms)) parts.push([live.started_at_ms, now]);
    return parts.length ? [Math.min(...parts.map((p) => p[0])), Math.max(...parts.map((p) => p[1]))] : null;
  });
  const known = spans.filter(Boolean);
  const start = Math.min(r.started_at_ms ?? r.created_at_ms, ...known.map((s) => s[0]));
  const end = Math.max(r.finished_at_ms ?? (FINISHED.has(r.status) ? 0 : now), ...known.map((s) => s[1]), start + 1);
  const total = end - start;

  return r.steps.map((step, index) => {
    const span = spans[index];
    const running = inflight.has(index);
    const bar = h('div', { class: `bar bar-${running ? 'running' : step.status}` });
    let text = notRunText(step.status);
    if (span) {
      const left = ((span[0] - start) / total) * 100;
      bar.style.left = `${Math.min(Math.max(left, 0), 100)}%`;
      bar.style.width = `${Math.min(((span[1] - span[0]) / total) * 100, 100 - left)}%`;
      const tries = step.attempts.length + (running ? 1 : 0);
      text = formatDuration(span[1] - span[0]) + (running ? ' so far' : '') + (tries > 1 ? ` · ${tries} attempts` : '');
    } else {
      bar.classList.add('bar-none');
    }
    return h('li', { class: 'bar-row', dataset: { step: step.id, status: running ? 'running' : step.status } },
      h('span', { class: 'bar-name' }, h('code', { text: step.id })),
      statusChip(running ? 'running' : step.status),
      h('span', { class: 'bar-time', text }),
      h('div', { class: 'bar-track' }, bar));
  });
}

function notRunText(status) {
  return { skipped: 'Skipped: not run', cancelled: 'Cancelled before it ran' }[status] || 'Not run yet';
}

function stepMeta(step, running) {
  return h('dl', { class: 'inline' },
    row('Status', statusChip(running ? 'running' : step.status)),
    row('Plugin', h('code', { class: 'break', text: step.plugin })),
    row('Plugin digest', h('code', { class: 'break digest', text: step.plugin_digest || '—' })));
}

function attemptStatus(a) {
  if (!a.error) return 'succeeded';
  return { timeout: 'timed_out', cancelled: 'cancelled' }[a.error.kind] || 'failed';
}

function attemptView(executionId, step, a) {
  const title = `${step.id} attempt ${a.number}`;
  return h('div', { class: 'attempt', dataset: { attempt: a.number } },
    h('h4', {}, `Attempt ${a.number} `, statusChip(attemptStatus(a))),
    a.error && h('p', { class: 'attempt-error' },
      h('strong', { text: a.error.kind }), ': ', h('span', { class: 'error-text', text: a.error.message })),
    h('dl', { class: 'inline' },
      row('Started', timeEl(a.started_at_ms)),
      row('Wall time', formatDuration(a.wall_time_us / 1000)),
      row('Peak memory', formatBytes(a.peak_memory_bytes)),
      a.fuel != null && row('Fuel', a.fuel.toLocaleString()),
      a.host_time_us != null && row('Host time', formatDuration(a.host_time_us / 1000))),
    a.output !== undefined && [h('h5', { text: 'Output' }),
      jsonViewer({ value: a.output, label: `Output of ${title}`,
        filename: `${executionId}-${step.id}-attempt${a.number}-output.json` })],
    h('h5', { text: 'Logs' }),
    a.logs?.length
      ? h('pre', { class: 'logs', tabindex: '0', text: a.logs.map((l) => `${l.stream}: ${l.message}`).join('\n') })
      : h('p', { class: 'muted', text: 'No logs.' }),
    a.logs_dropped_bytes > 0 && h('p', { class: 'note', text: `${formatBytes(a.logs_dropped_bytes)} of logs were dropped.` }),
    a.host_calls?.length > 0 && [h('h5', { text: 'Host calls' }), hostCallTable(a.host_calls)],
    a.host_calls_dropped > 0 && h('p', { class: 'note', text: `${a.host_calls_dropped} more host calls were not kept.` }));
}

function hostCallTable(calls) {
  const { wrap, tbody } = dataTable({ class: 'host-calls' }, ['Kind', 'Call', 'Result', 'Bytes', 'Duration']);
  append(tbody, calls.map((c) => h('tr', {}, hostCallCells(c).map((text) => h('td', { text })))));
  return wrap;
}

function hostCallCells(c) {
  const refused = c.denied ? `denied: ${c.denied}` : null;
  if (c.kind === 'http') {
    return [
      'http', `${c.method} ${c.host}:${c.port}${c.path}`,
      refused || (c.error ? `error: ${c.error}` : c.status != null ? `HTTP ${c.status}` : '—'),
      `${formatBytes(c.bytes_out)} out, ${formatBytes(c.bytes_in)} in`,
      formatDuration(c.duration_us / 1000),
    ];
  }
  if (c.kind === 'kv') {
    return ['kv', `${c.op} ${c.bucket ?? ''}${c.key ? `/${c.key}` : ''}`, refused || 'ok', formatBytes(c.bytes), '—'];
  }
  const { kind, denied, ...rest } = c;
  const detail = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
  return [String(kind ?? '?'), detail, refused || '—', '—', '—'];
}

function requestSection(r) {
  const req = r.request || {};
  return [
    h('dl', { class: 'inline' },
      row('Method', req.method ?? '—'),
      row('Path', h('code', { class: 'break', text: req.path ?? '—' })),
      req.query && row('Query', h('code', { class: 'break', text: req.query })),
      row('Received', timeEl(req.received_at_ms)),
      row('From', req.remote_addr ?? '—'),
      row('Content type', r.content_type ?? '—'),
      row('Body', formatBytes(r.body_len))),
    headerTable(req.headers || []),
  ];
}

function headerTable(headers) {
  if (!headers.length) return h('p', { class: 'muted', text: 'No headers were kept.' });
  const { wrap, tbody } = dataTable({ class: 'headers' }, ['Header', 'Value'], 'Request headers');
  append(tbody, headers.map(([name, value]) => h('tr', {}, h('td', { text: name }), h('td', { text: value }))));
  return wrap;
}
