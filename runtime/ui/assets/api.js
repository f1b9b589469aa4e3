// Talking to the hookflow API: JSON over same-origin fetch with the session
// cookie, and Server-Sent Events.

/** An API failure, with the server's `message` ready to show. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

// Called on a 401: the app sends the user to the login page. The error is
// still thrown (so the caller stops), but callers need not show it:
// see `isQuiet`.
let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/** True for errors a page should not display: navigation away, or a 401. */
export function isQuiet(err) {
  return err?.name === 'AbortError' || (err instanceof ApiError && err.status === 401);
}

/**
 * `api(path, {method, body, signal, auth, raw})`: the parsed JSON answer
 * (null for 204), or the Response itself with `raw`. Throws `ApiError`.
 * `auth: false` leaves a 401 to the caller (the login form).
 */
export async function api(path, { method = 'GET', body, signal, auth = true, raw = false } = {}) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' }, signal };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err?.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', 'Cannot reach the server. Check that it is running, then try again.');
  }
  if (res.status === 401 && auth) {
    onUnauthorized();
    throw new ApiError(401, 'unauthorized', 'Your session has ended. Please log in again.');
  }
  if (!res.ok) throw await errorOf(res);
  if (raw) return res;
  if (res.status === 204) return null;
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(res.status, 'bad_json', 'The server sent an answer that is not JSON.');
  }
}

async function errorOf(res) {
  let data = null;
  try {
    data = JSON.parse(await res.text());
  } catch { /* not JSON: fall back on the status */ }
  const message = data?.message || data?.title || `Request failed (HTTP ${res.status}).`;
  return new ApiError(res.status, data?.code || 'http', message);
}

/** Query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v != null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/**
 * Follows a Server-Sent Events stream. `handlers` maps event names to
 * `fn(data, event)` (data parsed as JSON, or the raw string). `onOpen` runs
 * on every (re)connection, `onState(text)` gets "Live" or "Reconnecting…".
 * EventSource retries by itself while it can; when it gives
 * up (an HTTP error such as 401), we check the session (a 401 there sends
 * the user to log in) and otherwise start again a little later.
 * Returns `{close()}`.
 */
export function follow(url, { handlers = {}, onOpen, onState } = {}) {
  let source = null;
  let retry = 0;
  let closed = false;

  const connect = () => {
    source = new EventSource(url, { withCredentials: true });
    source.addEventListener('open', () => {
      onState?.('Live');
      onOpen?.();
    });
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (event) => fn(parse(event.data), event));
    }
    source.addEventListener('error', () => {
      if (closed) return;
      onState?.('Reconnecting…');
      if (source.readyState !== EventSource.CLOSED) return;
      api('/api/v1/session')
        .then(() => { if (!closed) retry = setTimeout(connect, 3000); })
        .catch((err) => {
          if (!closed && !isQuiet(err)) retry = setTimeout(connect, 5000);
        });
    });
  };
  connect();
  return {
    close() {
      closed = true;
      clearTimeout(retry);
      source?.close();
    },
  };
}

function parse(data) {
  try { return JSON.parse(data); } catch { return data; }
}
