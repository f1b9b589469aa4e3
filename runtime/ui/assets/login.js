// The login page: the admin token is sent once to POST /api/v1/session,
// which sets an HttpOnly session cookie. The token is never kept: not in
// storage, not in the URL, and the field is emptied after each try.

import { api } from './api.js';
import { h, replace, showError } from './dom.js';

export function renderLogin(ctx) {
  ctx.title('Log in');
  const input = h('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'current-password',
    required: true, spellcheck: 'false', 'data-autofocus': true,
  });
  const error = h('p', { id: 'login-error', class: 'error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'button-primary', text: 'Log in' });
  const form = h('form', { id: 'login-form', class: 'login-form', method: 'post', action: '/ui/login' },
    h('div', { class: 'field' },
      h('label', { for: 'token', text: 'Admin token' }),
      input),
    error,
    submit);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = input.value;
    input.value = '';
    if (!token) {
      showError(error, 'Enter the admin token.');
      input.focus();
      return;
    }
    showError(error, '');
    submit.disabled = true;
    try {
      await api('/api/v1/session', { method: 'POST', body: { token }, auth: false, signal: ctx.signal });
      ctx.loggedIn();
      ctx.navigate(ctx.nextPage(), { replace: true });
    } catch (err) {
      if (err.name === 'AbortError') return;
      showError(error, err.message);
      submit.disabled = false;
      input.focus();
    }
  });

  replace(ctx.root,
    h('section', { class: 'login-panel', 'aria-labelledby': 'login-title' },
      h('h1', { id: 'login-title', tabindex: '-1', text: 'Log in to hookflow' }),
      h('p', { class: 'muted', text: 'Use the admin token the server was started with.' }),
      form));
}
