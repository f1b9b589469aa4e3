"""Write a hookflow step in Python: a function from a dict to a dict.

    from hookflow_step import WitWorld, step, http, kv, config, log

    @step(description="Greets whoever the event names")
    def run(input):
        name = input["previous"].get("name", "world")
        return {"message": f"Hello, {name}!"}

`hookflow build` turns a folder holding `app.py` into a component of the
`step` world (componentize-py); `app.py` must import `WitWorld` from this
module, which is what the component exports. `input` has `payload`,
`previous` and `config` (as Python values), `body` (bytes),
`content_type`, `request` (`method`, `path`, `query`, `headers` by
lower-case name, `remote_addr`, `received_at_ms`), `execution_id`,
`workflow`, `step_id`, `attempt` and `idempotency_key`. Return any JSON
value, or `Output(value, halt=..., response=(status, headers, body))`.
Raise `Retryable` or `Permanent` to fail the attempt; any other exception
is permanent. The capabilities (`http`, `kv`, `config`) work as far as the
step's `allow` grant in its manifest says.
"""

# Looked up by name when a library encodes a host name (socket, urllib):
# imported here so that componentize-py bundles it.
import encodings.idna  # noqa: F401
import json

from componentize_py_types import Err, Ok
from wit_world.imports import atomics as _atomics
from wit_world.imports import hookflow_plugin_types as _types
from wit_world.imports import log as _log
from wit_world.imports import outgoing_handler as _outgoing
from wit_world.imports import streams as _streams
from wit_world.imports import wasi_config_store as _config
from wit_world.imports import wasi_http_types as _http
from wit_world.imports import wasi_keyvalue_store as _kv


class Retryable(Exception):
    """The attempt failed; hookflow tries again as the step's retries allow."""


class Permanent(Exception):
    """The attempt failed; trying again cannot help."""


class Output:
    """A result with more than a value: stop the workflow, or answer a sync
    webhook with `response = (status, {header: value}, body)`."""

    def __init__(self, output, halt=False, response=None):
        self.output = output
        self.halt = halt
        self.response = response


_step = {}


def step(fn=None, *, name="step", version="0.1.0", description="", config_schema=None):
    """Registers the step's function (`@step` or `@step(name=..., ...)`);
    `config_schema`, a JSON Schema as a dict, is checked against each
    manifest's `config` when the workflow loads."""

    def register(f):
        _step.update(run=f, name=name, version=version, description=description,
                     schema=config_schema)
        return f

    return register(fn) if fn is not None else register


class WitWorld:
    """The component's exports; `app.py` imports it from here."""

    def describe(self):
        schema = _step.get("schema")
        return _types.PluginInfo(
            name=_step.get("name", "step"),
            version=_step.get("version", "0.1.0"),
            description=_step.get("description", ""),
            config_schema=json.dumps(schema) if schema is not None else None,
        )

    def run(self, input):
        fn = _step.get("run")
        if fn is None:
            raise Err(_types.StepError_Permanent("app.py registers no function with @step"))
        request = input.event.request
        data = {
            "payload": json.loads(input.event.payload),
            "previous": json.loads(input.previous),
            "config": json.loads(input.config),
            "body": bytes(input.event.body),
            "content_type": input.event.content_type,
            "request": {
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "headers": {k: v for (k, v) in request.headers},
                "remote_addr": request.remote_addr,
                "received_at_ms": request.received_at_ms,
            },
            "execution_id": input.execution_id,
            "workflow": input.workflow,
            "step_id": input.step_id,
            "attempt": input.attempt,
            "idempotency_key": input.idempotency_key,
        }
        try:
            out = fn(data)
        except Retryable as e:
            raise Err(_types.StepError_Retryable(str(e)))
        except Permanent as e:
            raise Err(_types.StepError_Permanent(str(e)))
        except Err:
            raise
        except Exception as e:
            raise Err(_types.StepError_Permanent(f"{type(e).__name__}: {e}"))
        if not isinstance(out, Output):
            out = Output(out)
        response = None
        if out.response is not None:
            status, headers, body = out.response
            if isinstance(body, str):
                body = body.encode()
            response = _types.HttpResponse(status=status, headers=list(headers.items()), body=body)
        return _types.StepOutput(output=json.dumps(out.output), halt=out.halt, response=response)


class log:
    """Lines kept with the attempt (capped); print() is kept too."""

    @staticmethod
    def debug(message):
        _log.log(_log.Level.DEBUG, str(message))

    @staticmethod
    def info(message):
        _log.log(_log.Level.INFO, str(message))

    @staticmethod
    def warn(message):
        _log.log(_log.Level.WARN, str(message))

    @staticmethod
    def error(message):
        _log.log(_log.Level.ERROR, str(message))


class Answer:
    """An HTTP answer, read whole."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


_METHODS = {
    "GET": _http.Method_Get(), "POST": _http.Method_Post(), "PUT": _http.Method_Put(),
    "DELETE": _http.Method_Delete(), "PATCH": _http.Method_Patch(), "HEAD": _http.Method_Head(),
}


class http:
    """Outbound requests (`wasi:http`) to the hosts the step's `allow.http`
    grants. A refused request raises `Permanent`; a timeout or a failed
    connection `Retryable`; an answer of any status is returned."""

    @staticmethod
    def request(method, url, headers=None, body=None, json_body=None):
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http", "https"):
            raise Permanent(f"{url}: the URL needs http:// or https://")
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        authority, path = rest[:cut], rest[cut:] or "/"
        if path.startswith("?"):
            path = "/" + path
        headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers.setdefault("content-type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        body = body or b""
        if body:
            headers.setdefault("content-length", str(len(body)))
        fields = _http.Fields()
        for k, v in headers.items():
            fields.append(k, str(v).encode())
        req = _http.OutgoingRequest(fields)
        req.set_method(_METHODS.get(method.upper()) or _http.Method_Other(method.upper()))
        req.set_scheme(_http.Scheme_Https() if scheme == "https" else _http.Scheme_Http())
        req.set_authority(authority)
        req.set_path_with_query(path)
        out = req.body()
        try:
            future = _outgoing.handle(req, None)
        except Err as e:
            http._fail(url, e.value)
        write_error = None
        try:
            stream = out.write()
            for i in range(0, len(body), 4096):
                stream.blocking_write_and_flush(body[i:i + 4096])
            del stream
            _http.OutgoingBody.finish(out, None)
        except Err as e:
            # A refused request closes the body: the reason is in the answer.
            write_error = e
        future.subscribe().block()
        result = future.get()
        if not isinstance(result, Ok):
            raise Retryable(f"{url}: no answer")
        if not isinstance(result.value, Ok):
            http._fail(url, result.value.value)
        answer = result.value.value
        if write_error is not None:
            raise Retryable(f"{url}: sending the body failed: {write_error.value}")
        status = answer.status()
        got = {k: v.decode("utf-8", "replace") for (k, v) in answer.headers().entries()}
        incoming = answer.consume()
        stream = incoming.stream()
        chunks = []
        while True:
            try:
                chunks.append(stream.blocking_read(65536))
            except Err as e:
                if isinstance(e.value, _streams.StreamError_Closed):
                    break
                raise Retryable(f"{url}: reading the answer failed")
        return Answer(status, got, b"".join(chunks))

    @staticmethod
    def _fail(url, code):
        name = type(code).__name__.replace("ErrorCode_", "")
        if name == "HttpRequestDenied":
            raise Permanent(f"{url}: denied: the host is not in this step's allow.http grant")
        if "Timeout" in name or name.startswith("Connection") or name.startswith("Dns"):
            raise Retryable(f"{url}: {name}")
        raise Permanent(f"{url}: {name}")

    @staticmethod
    def get(url, **kw):
        return http.request("GET", url, **kw)

    @staticmethod
    def post(url, **kw):
        return http.request("POST", url, **kw)


class kv:
    """The step's key-value bucket (`wasi:keyvalue`), as `allow.kv`
    grants; without a grant every call raises `Permanent`."""

    @staticmethod
    def _bucket():
        try:
            return _kv.open("")
        except Err:
            raise Permanent("key-value access denied: the step has no allow.kv grant")

    @staticmethod
    def get(key):
        return kv._call(lambda b: b.get(key))

    @staticmethod
    def set(key, value):
        if isinstance(value, str):
            value = value.encode()
        return kv._call(lambda b: b.set(key, value))

    @staticmethod
    def increment(key, delta=1):
        return kv._call(lambda b: _atomics.increment(b, key, delta))

    @staticmethod
    def _call(f):
        try:
            return f(kv._bucket())
        except Err as e:
            raise Permanent(f"key-value: {e.value}")


class config:
    """Settings and secrets (`wasi:config`) granted by `allow.config`; a
    name not granted reads as None. Secrets are redacted from what is kept
    of the attempt."""

    @staticmethod
    def get(name):
        try:
            return _config.get(name)
        except Err as e:
            raise Permanent(f"config {name}: {e.value}")
