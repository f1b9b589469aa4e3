// Write a hookflow step in JavaScript: an (async) function from an object
// to a value.
//
//     import { step, kv, config, log, Retryable } from 'hookflow-step';
//
//     export const { describe, run } = step({ name: 'greet' }, async (input) => {
//       const name = input.previous.name ?? 'world';
//       return { message: `Hello, ${name}!` };
//     });
//
// `hookflow build` turns a folder holding `app.js`, `index.js` or a
// `package.json` into a component of the `step` world (componentize-js);
// the module must export `describe` and `run`, which `step` returns.
// `input` has `payload`, `previous` and `config` (parsed), `body`
// (Uint8Array), `contentType`, `request` (`method`, `path`, `query`,
// `headers` by lower-case name, `remoteAddr`, `receivedAtMs`),
// `executionId`, `workflow`, `stepId`, `attempt` and `idempotencyKey`.
// Return any JSON value, or `new Output(value, { halt, response })` with
// `response = { status, headers, body }`. Throw `Retryable` or `Permanent`
// to fail the attempt; anything else thrown is permanent. Outbound calls
// are plain `fetch` (through `wasi:http`); it and `kv` and `config` work
// as far as the step's `allow` grant in its manifest says.

import { log as hostLog } from 'hookflow:plugin/log@0.2.0';
import { open } from 'wasi:keyvalue/store@0.2.0-draft';
import { increment } from 'wasi:keyvalue/atomics@0.2.0-draft';
import { get as configGet } from 'wasi:config/store@0.2.0-rc.1';

/** The attempt failed; hookflow tries again as the step's retries allow. */
export class Retryable extends Error {
  constructor(message) {
    super(message);
    this.name = 'Retryable';
    this.payload = { tag: 'retryable', val: String(message) };
  }
}

/** The attempt failed; trying again cannot help. */
export class Permanent extends Error {
  constructor(message) {
    super(message);
    this.name = 'Permanent';
    this.payload = { tag: 'permanent', val: String(message) };
  }
}

/**
 * A result with more than a value: stop the workflow (`halt`), or answer a
 * sync webhook with `response = { status, headers: { name: value }, body }`.
 */
export class Output {
  constructor(output, { halt = false, response = undefined } = {}) {
    this.output = output;
    this.halt = halt;
    this.response = response;
  }
}

/**
 * The component's exports for a step function:
 * `export const { describe, run } = step({ name, version, description,
 * configSchema }, async (input) => value)`. `configSchema`, a JSON Schema
 * object, is checked against each manifest's `config` when the workflow
 * loads.
 */
export function step(info, fn) {
  if (typeof info === 'function') [info, fn] = [{}, info];
  const describe = () => ({
    name: info.name ?? 'step',
    version: info.version ?? '0.1.0',
    description: info.description ?? '',
    configSchema: info.configSchema === undefined ? undefined : JSON.stringify(info.configSchema),
  });
  const run = async (raw) => {
    const request = raw.event.request;
    const input = {
      payload: JSON.parse(raw.event.payload),
      previous: JSON.parse(raw.previous),
      config: JSON.parse(raw.config),
      body: raw.event.body,
      contentType: raw.event.contentType ?? null,
      request: {
        method: request.method,
        path: request.path,
        query: request.query,
        headers: Object.fromEntries(request.headers),
        remoteAddr: request.remoteAddr,
        receivedAtMs: Number(request.receivedAtMs),
      },
      executionId: raw.executionId,
      workflow: raw.workflow,
      stepId: raw.stepId,
      attempt: raw.attempt,
      idempotencyKey: raw.idempotencyKey,
    };
    let out;
    try {
      out = await fn(input);
    } catch (e) {
      if (e instanceof Retryable || e instanceof Permanent) throw e;
      throw new Permanent(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
    }
    if (!(out instanceof Output)) out = new Output(out);
    let response;
    if (out.response) {
      const { status = 200, headers = {}, body = '' } = out.response;
      response = {
        status,
        headers: Object.entries(headers).map(([k, v]) => [k, String(v)]),
        body: typeof body === 'string' ? new TextEncoder().encode(body) : body,
      };
    }
    return {
      output: JSON.stringify(out.output === undefined ? null : out.output),
      halt: Boolean(out.halt),
      response,
    };
  };
  return { describe, run };
}

const line = (level) => (message) => hostLog(level, String(message));

/** Lines kept with the attempt (capped); `console.log` is kept too. */
export const log = {
  debug: line('debug'),
  info: line('info'),
  warn: line('warn'),
  error: line('error'),
};

const reason = (e) => {
  const p = e && e.payload;
  if (p && typeof p === 'object') return p.val === undefined ? p.tag : `${p.tag}: ${p.val}`;
  return e instanceof Error ? e.message : String(e);
};

function bucket() {
  try {
    return open('');
  } catch (e) {
    throw new Permanent(`key-value access denied: the step has no allow.kv grant (${reason(e)})`);
  }
}

function kvCall(f) {
  const b = bucket();
  try {
    return f(b);
  } catch (e) {
    throw new Permanent(`key-value: ${reason(e)}`);
  }
}

/**
 * The step's key-value bucket (`wasi:keyvalue`), as `allow.kv` grants;
 * without a grant every call throws `Permanent`.
 */
export const kv = {
  /** The value's bytes, or undefined. */
  get: (key) => kvCall((b) => b.get(key)),
  /** The value as text, or undefined. */
  getText(key) {
    const v = kv.get(key);
    return v === undefined ? undefined : new TextDecoder().decode(v);
  },
  /** Sets a string or bytes. */
  set: (key, value) =>
    kvCall((b) => b.set(key, typeof value === 'string' ? new TextEncoder().encode(value) : value)),
  delete: (key) => kvCall((b) => b.delete(key)),
  exists: (key) => kvCall((b) => b.exists(key)),
  /** Adds `delta` (default 1) to the counter at `key`; returns the new value. */
  increment: (key, delta = 1) => Number(kvCall((b) => increment(b, key, BigInt(delta)))),
};

/**
 * Settings and secrets (`wasi:config`) granted by `allow.config`; a name
 * not granted reads as undefined. Secrets are redacted from what is kept
 * of the attempt.
 */
export const config = {
  get(name) {
    try {
      return configGet(name);
    } catch (e) {
      throw new Permanent(`config ${name}: ${reason(e)}`);
    }
  },
};
