// The hookflow dashboard: session check, client-side routing and the
// header. Each page is a module exporting `render(ctx)`; see `pageContext`.

import { api, isQuiet, setUnauthorizedHandler } from './api.js';
import { h, replace, showError } from './dom.js';
import { renderLogin } from './login.js';
import { renderList } from './list.js';
import { renderDetail } from './detail.js';
import { renderWorkflows } from './workflows.js';

const LOGIN = /^\/ui\/login\/?$/;
const ROUTES = [
  { re: LOGIN, render: renderLogin },
  { re: /^\/ui\/?$/, render: renderList, nav: 'executions' },
  { re: /^\/ui\/executions\/([^/]+)\/?$/, render: renderDetail, nav: 'executions' },
  { re: /^\/ui\/workflows\/?$/, render: renderWorkflows, nav: 'workflows' },
];

const pageRoot = document.getElementById('page');
const appError = document.getElementById('app-error');
let loggedIn = false;
// Aborted when the page is left: its fetches, streams and timers stop.
let pageLife = null;

/** Shows `url` (a /ui/ path), adding a history entry unless `replace`. */
export function navigate(url, { replace: replaceEntry = false } = {}) {
  history[replaceEntry ? 'replaceState' : 'pushState'](null, '', url);
  render(true);
}

/** The login page's URL, remembering the page to come back to. */
function loginUrl(next) {
  return next && next !== '/ui/' ? `/ui/login?next=${encodeURIComponent(next)}` : '/ui/login';
}

/** Where to go after logging in: `?next=` when it is one of our pages. */
function nextPage() {
  const next = new URLSearchParams(location.search).get('next') || '';
  return /^\/ui\/(?!\/)/.test(next) && !LOGIN.test(next.split('?')[0]) ? next : '/ui/';
}

function render(moveFocus) {
  pageLife?.abort();
  pageLife = new AbortController();
  showError(appError, '');
  const path = location.pathname;
  if (!loggedIn && !LOGIN.test(path)) {
    history.replaceState(null, '', loginUrl(path + location.search));
  } else if (loggedIn && LOGIN.test(path)) {
    history.replaceState(null, '', nextPage());
  }
  const route = ROUTES.find((r) => r.re.test(location.pathname));
  updateHeader(route);
  replace(pageRoot);
  const ctx = pageContext(route, pageLife.signal);
  if (route) route.render(ctx);
  else renderNotFound(ctx);
  // After an in-app navigation, focus goes to the new page's heading (or
  // its first field) so that screen readers announce the change.
  const field = pageRoot.querySelector('[data-autofocus]');
  if (field) field.focus();
  else if (moveFocus) (pageRoot.querySelector('h1') || pageRoot).focus();
}

/**
 * What a page gets: `root` to render into, `signal` (aborted when the page
 * is left), `params` from the path, `navigate`, `title(text)`,
 * `nextPage()` and `loggedIn()` for the login form.
 */
function pageContext(route, signal) {
  const match = route ? location.pathname.match(route.re) : null;
  return {
    root: pageRoot,
    signal,
    params: match ? match.slice(1).map(decodeSegment) : [],
    navigate,
    title: (text) => { document.title = `${text} · hookflow`; },
    nextPage,
    loggedIn: () => { loggedIn = true; },
  };
}

function decodeSegment(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function updateHeader(route) {
  document.getElementById('site-nav').hidden = !loggedIn;
  document.getElementById('logout').hidden = !loggedIn;
  for (const link of document.querySelectorAll('#site-nav a')) {
    if (route && link.dataset.nav === route.nav) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function renderNotFound(ctx) {
  ctx.title('Not found');
  replace(ctx.root,
    h('h1', { tabindex: '-1', text: 'Page not found' }),
    h('p', {}, 'There is no such page. ', h('a', { href: '/ui/', text: 'Go to the executions' }), '.'));
}

/** Same-origin links to /ui/ pages are followed without a page load. */
function interceptLinks(event) {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest?.('a[href]');
  if (!link || link.target || link.hasAttribute('download')) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/ui/')) return;
  if (url.pathname.startsWith('/ui/assets/')) return;
  // In-page anchors (the skip link) keep their default behaviour.
  if (url.hash && url.pathname === location.pathname && url.search === location.search) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
}

/** Any API call answered 401: the session is gone, log in again. */
function sessionEnded() {
  loggedIn = false;
  if (LOGIN.test(location.pathname)) return;
  navigate(loginUrl(location.pathname + location.search), { replace: true });
}

async function logOut() {
  try {
    await api('/api/v1/session', { method: 'DELETE', auth: false });
  } catch (err) {
    if (!(err.status === 401 || isQuiet(err))) {
      showError(appError, `Could not log out: ${err.message}`);
      return;
    }
  }
  loggedIn = false;
  navigate('/ui/login');
}

async function start() {
  setUnauthorizedHandler(sessionEnded);
  document.addEventListener('click', interceptLinks);
  window.addEventListener('popstate', () => render(true));
  document.getElementById('logout').addEventListener('click', logOut);
  try {
    await api('/api/v1/session', { auth: false });
    loggedIn = true;
  } catch (err) {
    if (err.status !== 401) {
      replace(pageRoot,
        h('h1', { text: 'hookflow' }),
        h('p', { class: 'error', role: 'alert', text: err.message }),
        h('button', { type: 'button', onclick: () => location.reload(), text: 'Try again' }));
      return;
    }
  }
  render(false);
}

start();
