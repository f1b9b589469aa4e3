// The workflows page (/ui/workflows): every manifest file with its load
// state and problems, and enable/disable. Refetched whenever the server
// says the workflows served changed (the `workflows` event of the stream).

import { api, follow, isQuiet } from './api.js';
import { announce, dataTable, h, replace, setLiveState, showError, statusChip, timeEl, whileBusy } from './dom.js';

const COLUMNS = ['Workflow', 'File', 'Triggers', 'State', 'Enabled', 'Errors', 'Action'];

export function renderWorkflows(ctx) {
  ctx.title('Workflows');
  const liveState = h('span', { id: 'live-state', class: 'live-state' }, 'Connecting…');
  const reloaded = h('p', { id: 'workflows-reloaded', class: 'muted' });
  const error = h('p', { id: 'workflows-error', class: 'error', role: 'alert', hidden: true });
  const problems = h('ul', { id: 'workflow-problems', class: 'problems' });
  const problemsBox = h('section', { class: 'panel panel-warning', 'aria-labelledby': 'h-problems', hidden: true },
    h('h2', { id: 'h-problems', text: 'Load problems' }), problems);
  const { wrap, tbody } = dataTable({ id: 'workflows' }, COLUMNS, 'Workflow files');
  const empty = h('p', { id: 'workflows-empty', class: 'muted', hidden: true, text: 'No workflow files were found.' });

  replace(ctx.root,
    h('h1', { tabindex: '-1', text: 'Workflows' }),
    h('div', { class: 'list-bar' }, h('p', { class: 'live-indicator' }, 'Updates: ', liveState), reloaded),
    error, problemsBox,
    wrap, empty);

  let loadTimer = 0;
  // `focusFile`: the row whose button keeps the keyboard focus across the
  // re-render (the button clicked, which lost it when it was disabled).
  async function load(focusFile) {
    try {
      const data = await api('/api/v1/workflows', { signal: ctx.signal });
      showError(error, '');
      const focused = focusFile || document.activeElement?.closest?.('#workflows tr')?.dataset.file;
      replace(tbody, (data.workflows || []).map(workflowRow));
      if (focused) tbody.querySelector(`tr[data-file="${CSS.escape(focused)}"] button`)?.focus();
      empty.hidden = tbody.rows.length > 0;
      replace(problems, (data.errors || []).map((p) => h('li', { class: 'error-text', text: p.text })));
      problemsBox.hidden = !(data.errors || []).length;
      replace(reloaded, 'Last reload: ', timeEl(data.reloaded_at_ms));
    } catch (err) {
      if (!isQuiet(err)) showError(error, `Could not load the workflows: ${err.message}`);
    }
  }
  const loadSoon = () => {
    clearTimeout(loadTimer);
    loadTimer = setTimeout(load, 150);
  };

  tbody.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-action]');
    if (!button) return;
    const { name, file } = button.closest('tr').dataset;
    const action = button.dataset.action;
    showError(error, '');
    whileBusy(button, async () => {
      try {
        await api(`/api/v1/workflows/${encodeURIComponent(name)}/${action}`, { method: 'POST', signal: ctx.signal });
        announce(`${name} ${action}d`);
        await load(file);
      } catch (err) {
        if (!isQuiet(err)) showError(error, `Could not ${action} ${name}: ${err.message}`);
      }
    });
  });

  const stream = follow('/api/v1/stream', {
    handlers: {
      workflows: () => {
        announce('Workflows reloaded');
        loadSoon();
      },
    },
    onOpen: () => loadSoon(),
    onState: (text) => setLiveState(liveState, text),
  });
  ctx.signal.addEventListener('abort', () => {
    clearTimeout(loadTimer);
    stream.close();
  });
  load();
}

function workflowRow(w) {
  const named = w.name != null;
  const action = !named ? null : w.enabled === false ? 'enable' : 'disable';
  return h('tr', { dataset: { file: w.file, state: w.state, name: w.name ?? '' } },
    h('td', { class: 'c-name' }, named
      ? h('a', { href: `/ui/?workflow=${encodeURIComponent(w.name)}`, text: w.name })
      : h('code', { class: 'break', text: w.file })),
    h('td', { class: 'c-file' }, h('code', { class: 'break', text: w.file })),
    h('td', { class: 'c-triggers' }, triggerList(w)),
    h('td', { class: 'c-state' }, statusChip(w.state), w.rolled_back ? ' (rolled back)' : ''),
    h('td', { class: 'c-enabled', text: !named ? '—' : w.enabled === false ? 'disabled' : 'enabled' }),
    h('td', { class: 'errors' }, (w.errors || []).length
      ? (w.errors || []).map((e) => h('div', { class: 'error-text', text: e.text }))
      : h('span', { class: 'muted', text: '—' })),
    h('td', { class: 'c-action' }, action && actionButton(action, w.name)));
}

function actionButton(action, name) {
  const verb = action === 'enable' ? 'Enable' : 'Disable';
  return h('button', {
    type: 'button', class: 'button-small', dataset: { action }, 'aria-label': `${verb} ${name}`, text: verb,
  });
}

function triggerList(w) {
  let triggers = w.triggers;
  if (!Array.isArray(triggers)) triggers = w.path ? [{ kind: 'webhook', path: w.path }] : [];
  if (!triggers.length) return h('span', { class: 'muted', text: '—' });
  return h('ul', { class: 'plain' }, triggers.map((t) => {
    if (t.kind === 'webhook') {
      return h('li', {}, 'webhook ', h('code', { class: 'break', text: t.path }), w.mode ? ` (${w.mode})` : '');
    }
    if (t.kind === 'cron') return h('li', {}, 'cron ', h('code', { text: t.schedule }));
    return h('li', { text: String(t.kind) });
  }));
}
