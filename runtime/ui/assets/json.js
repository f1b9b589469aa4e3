// The JSON viewer (payloads, step outputs, the final output) and the
// byte decoder used to show a body that is not JSON.

import { announce, h, safeName } from './dom.js';

const SHOW_LIMIT = 64 * 1024; // bytes of text shown in the page at most

/**
 * A viewer for a JSON `value` (Pretty/Raw toggle) or a plain `text`.
 * `label` names it for assistive technology ("Payload", "Output of step
 * x"), `filename` is the name the Download button gives.
 */
export function jsonViewer({ value, text, label, filename }) {
  const isJson = text === undefined;
  const forms = isJson
    ? { pretty: JSON.stringify(value, null, 2) ?? 'null', raw: JSON.stringify(value) ?? 'null' }
    : { raw: String(text) };
  let mode = isJson ? 'pretty' : 'raw';

  const pre = h('pre', { class: 'code', tabindex: '0' });
  const note = h('p', { class: 'viewer-note', hidden: true });
  const message = h('span', { class: 'viewer-msg' });
  const modeButtons = isJson
    ? [['pretty', 'Pretty'], ['raw', 'Raw']].map(([key, name]) => h('button', {
      type: 'button', class: 'button-small', 'aria-pressed': String(key === mode),
      dataset: { mode: key }, text: name,
      onclick: () => { mode = key; show(); },
    }))
    : [];

  function show() {
    const full = forms[mode];
    const { shown, total } = truncate(full);
    pre.textContent = shown;
    note.hidden = shown.length === full.length;
    if (!note.hidden) {
      note.textContent = `Truncated: showing 64 KiB of ${Math.ceil(total / 1024)} KiB; download for the whole.`;
    }
    for (const button of modeButtons) button.setAttribute('aria-pressed', String(button.dataset.mode === mode));
  }

  async function copy() {
    try {
      if (!navigator.clipboard) throw new Error('the clipboard is not available here');
      await navigator.clipboard.writeText(forms[mode]);
      say('Copied to the clipboard.');
    } catch (err) {
      say(`Could not copy: ${err?.message || 'the browser refused'}. Select the text and copy it instead.`);
    }
  }

  function say(text) {
    message.textContent = text;
    announce(text);
  }

  function download() {
    const type = isJson ? 'application/json' : 'text/plain';
    const url = URL.createObjectURL(new Blob([forms[mode]], { type }));
    const link = h('a', { href: url, download: safeName(filename), hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    // Revoked later: the download may not have started yet.
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }

  show();
  return h('div', { class: 'viewer', dataset: { viewer: label } },
    h('div', { class: 'viewer-bar', role: 'group', 'aria-label': label },
      modeButtons,
      h('button', { type: 'button', class: 'button-small', onclick: copy, text: 'Copy' }),
      h('button', { type: 'button', class: 'button-small', onclick: download, text: 'Download' }),
      message),
    note,
    pre);
}

/** The first 64 KiB (UTF-8 bytes) of `text`, and its whole size in bytes. */
function truncate(text) {
  // Cheap test first: fewer UTF-16 units than a quarter of the limit
  // cannot make more than the limit in bytes.
  if (text.length * 3 <= SHOW_LIMIT) return { shown: text, total: text.length };
  const bytes = new TextEncoder().encode(text);
  if (bytes.length <= SHOW_LIMIT) return { shown: text, total: bytes.length };
  // Back off to a character boundary (UTF-8 continuation bytes are 10xxxxxx).
  let end = SHOW_LIMIT;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end -= 1;
  return { shown: new TextDecoder().decode(bytes.subarray(0, end)), total: bytes.length };
}

const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

/**
 * Bytes as text: valid UTF-8 sequences are decoded, every other byte is
 * shown as `\xNN`. (TextDecoder alone would turn them all into U+FFFD and
 * lose what they were.)
 */
export function decodeBytes(bytes) {
  const parts = [];
  let runStart = 0;
  let i = 0;
  while (i < bytes.length) {
    const size = sequenceLength(bytes, i);
    if (size > 0) {
      i += size;
      continue;
    }
    parts.push(utf8.decode(bytes.subarray(runStart, i)));
    parts.push(`\\x${bytes[i].toString(16).toUpperCase().padStart(2, '0')}`);
    i += 1;
    runStart = i;
  }
  parts.push(utf8.decode(bytes.subarray(runStart, i)));
  return parts.join('');
}

/** The length of the valid UTF-8 sequence at `i`, or 0 when it is not one. */
function sequenceLength(bytes, i) {
  const b = bytes[i];
  if (b < 0x80) return 1;
  let size;
  let cp;
  let min;
  if (b >= 0xc2 && b <= 0xdf) [size, cp, min] = [2, b & 0x1f, 0x80];
  else if (b >= 0xe0 && b <= 0xef) [size, cp, min] = [3, b & 0x0f, 0x800];
  else if (b >= 0xf0 && b <= 0xf4) [size, cp, min] = [4, b & 0x07, 0x10000];
  else return 0;
  if (i + size > bytes.length) return 0;
  for (let k = 1; k < size; k += 1) {
    const c = bytes[i + k];
    if ((c & 0xc0) !== 0x80) return 0;
    cp = (cp << 6) | (c & 0x3f);
  }
  // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are invalid.
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return size;
}

