"""A small stand-in for Make's runtime, enough to run our Make custom app
(manifests/make) against a live service in tests.

It covers what the manifests use, the way Make's custom-app docs describe it:
- IML templates: `{{expr}}` inside JSON strings. A string that is exactly one
  expression keeps the value's type (numbers stay numbers); an undefined value
  leaves its key out of an object (Make drops empty optional parameters).
  Expressions: paths (`parameters.x`, `connection.x`, `webhook.x`, `body.x`,
  `item.x`, `statusCode`, ...), 1-based `[n]` indexes, string/number/boolean
  literals, `!`, `&&`, `||`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `+`, and the
  functions `ifempty(a, b)` and `if(cond, a, b)` (`;` also separates arguments).
- communication: base `baseUrl` for urls starting with `/`, base + module
  headers, JSON body, `response.valid`, `response.error` (per status, else the
  default), `response.iterate`, `response.output`, `response.limit`,
  `response.trigger`, `response.data`, `response.metadata`, and `pagination`
  (its `body` REPLACES the request body, as the brief for this app says).
- a polling trigger's memory (`TriggerState`): Make keeps the date and id of the
  last item it output and only outputs items after it, oldest first.
- JSON with comments (JSONC), as app files are.

Standard library only; HTTP through urllib.
"""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


class _Missing:
    """IML's `undefined`."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING = _Missing()


# --------------------------------------------------------------------------- JSONC
def strip_jsonc(text: str) -> str:
    """Remove // and /* */ comments outside JSON strings (keeps line breaks)."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        ch = text[i]
        if in_string:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if ch == '"':
                in_string = False
            i += 1
            continue
        if ch == '"':
            in_string = True
            out.append(ch)
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end == -1 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end == -1:
                raise ValueError("unterminated /* comment")
            out.append("\n" * text.count("\n", i, end))
            i = end + 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def load_jsonc(path: Path | str) -> Any:
    return json.loads(strip_jsonc(Path(path).read_text(encoding="utf-8")))


# --------------------------------------------------------------------------- IML expressions
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>\d+(?:\.\d+)?)
      | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<tick>`[^`]*`)
      | (?P<op>===|!==|==|!=|<=|>=|&&|\|\||[-+*/%<>!=(),;.\[\]])
      | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
    )""",
    re.VERBOSE,
)


class ImlError(ValueError):
    pass


def _tokens(expr: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise ImlError(f"cannot parse IML expression {expr!r} at {pos}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _truthy(value) -> bool:
    if value is MISSING or value is None:
        return False
    if isinstance(value, (list, dict)):
        return True
    return bool(value)


def _is_empty(value) -> bool:
    return value is MISSING or value is None or value == ""


def to_text(value) -> str:
    if value is MISSING or value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


class _Parser:
    def __init__(self, expr: str, ctx: dict):
        self.expr = expr
        self.toks = _tokens(expr)
        self.i = 0
        self.ctx = ctx

    # helpers
    def peek(self, value: str | None = None):
        if self.i >= len(self.toks):
            return None
        tok = self.toks[self.i]
        if value is not None and not (tok[0] == "op" and tok[1] == value):
            return None
        return tok

    def take(self, value: str | None = None):
        tok = self.peek(value)
        if tok is None:
            raise ImlError(f"expected {value or 'a value'} in {self.expr!r}")
        self.i += 1
        return tok

    def parse(self):
        value = self.or_()
        if self.i != len(self.toks):
            raise ImlError(f"unexpected {self.toks[self.i][1]!r} in {self.expr!r}")
        return value

    def or_(self):
        value = self.and_()
        while self.peek("||"):
            self.take()
            right = self.and_()
            value = value if _truthy(value) else right
        return value

    def and_(self):
        value = self.eq()
        while self.peek("&&"):
            self.take()
            right = self.eq()
            value = right if _truthy(value) else value
        return value

    def eq(self):
        value = self.rel()
        while True:
            tok = self.peek()
            if tok and tok[0] == "op" and tok[1] in ("==", "===", "=", "!=", "!=="):
                self.take()
                right = self.rel()
                same = value == right and type(value) is type(right)
                value = same if tok[1] in ("==", "===", "=") else not same
            else:
                return value

    def rel(self):
        value = self.add()
        while True:
            tok = self.peek()
            if tok and tok[0] == "op" and tok[1] in ("<", "<=", ">", ">="):
                self.take()
                right = self.add()
                try:
                    value = {"<": value < right, "<=": value <= right,
                             ">": value > right, ">=": value >= right}[tok[1]]
                except TypeError:
                    value = False
            else:
                return value

    def add(self):
        value = self.unary()
        while True:
            tok = self.peek()
            if tok and tok[0] == "op" and tok[1] in ("+", "-", "*", "/", "%"):
                self.take()
                right = self.unary()
                if tok[1] == "+" and (isinstance(value, str) or isinstance(right, str)):
                    value = to_text(value) + to_text(right)
                else:
                    a = 0 if value in (MISSING, None) else value
                    b = 0 if right in (MISSING, None) else right
                    value = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                             "/": lambda: a / b, "%": lambda: a % b}[tok[1]]()
            else:
                return value

    def unary(self):
        if self.peek("!"):
            self.take()
            return not _truthy(self.unary())
        if self.peek("-"):
            self.take()
            return -self.unary()
        return self.postfix()

    def postfix(self):
        value = self.primary()
        while True:
            if self.peek("."):
                self.take()
                kind, name = self.take()
                if kind not in ("name", "tick"):
                    raise ImlError(f"bad property name {name!r} in {self.expr!r}")
                value = _get(value, name.strip("`"))
            elif self.peek("["):
                self.take()
                index = self.or_()
                self.take("]")
                value = _index(value, index)
            else:
                return value

    def primary(self):
        tok = self.take()
        kind, text = tok
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "tick":
            return _get(self.ctx, text.strip("`"))
        if kind == "op" and text == "(":
            value = self.or_()
            self.take(")")
            return value
        if kind == "name":
            if text == "true":
                return True
            if text == "false":
                return False
            if text == "null":
                return None
            if text == "undefined":
                return MISSING
            if self.peek("("):
                return self.call(text)
            return _get(self.ctx, text)
        raise ImlError(f"unexpected {text!r} in {self.expr!r}")

    def call(self, name: str):
        self.take("(")
        # Arguments are evaluated eagerly: none of the supported functions has side effects.
        args = []
        if not self.peek(")"):
            args.append(self.or_())
            while self.peek(",") or self.peek(";"):
                self.take()
                args.append(self.or_())
        self.take(")")
        if name == "ifempty" and len(args) == 2:
            return args[1] if _is_empty(args[0]) else args[0]
        if name == "if" and len(args) in (2, 3):
            return args[1] if _truthy(args[0]) else (args[2] if len(args) == 3 else MISSING)
        fn = _FUNCTIONS.get((name, len(args)))
        if fn is None:
            raise ImlError(f"IML function {name}() with {len(args)} arguments is not supported here")
        return fn(*args)


def _as_list(value) -> list:
    return value if isinstance(value, list) else []


# Make's built-in IML functions this app uses, as Make documents them (arrays are 1-based).
_FUNCTIONS = {
    ("keys", 1): lambda obj: list(obj) if isinstance(obj, dict) else [],
    ("first", 1): lambda arr: _as_list(arr)[0] if _as_list(arr) else MISSING,
    ("length", 1): lambda v: len(v) if isinstance(v, (list, str, dict)) else 0,
    ("get", 2): lambda obj, key: _get(obj, key) if isinstance(key, str) else _index(obj, key),
    ("capitalize", 1): lambda text: to_text(text)[:1].upper() + to_text(text)[1:],
    ("join", 2): lambda arr, sep: to_text(sep).join(to_text(v) for v in _as_list(arr)),
    ("slice", 2): lambda arr, start: _as_list(arr)[start:],
    ("contains", 2): lambda arr, value: value in _as_list(arr),
    ("map", 2): lambda arr, key: [_get(item, key) for item in _as_list(arr) if _get(item, key) is not MISSING],
    ("toCollection", 3): lambda arr, key, value: {
        to_text(_get(item, key)): _get(item, value) for item in _as_list(arr)
        if not _is_empty(_get(item, key)) and _get(item, value) is not MISSING},
}


def _get(obj, key: str):
    if isinstance(obj, dict):
        return obj.get(key, MISSING)
    return MISSING


def _index(obj, index):
    if not isinstance(obj, list) or not isinstance(index, int) or index == 0:
        return MISSING
    pos = index - 1 if index > 0 else index  # IML arrays are 1-based; -1 is the last
    try:
        return obj[pos]
    except IndexError:
        return MISSING


def evaluate(expr: str, ctx: dict):
    return _Parser(expr, ctx).parse()


_MUSTACHE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


def expressions(template) -> list[str]:
    """Every `{{...}}` expression text in a JSON-like structure (keys included)."""
    found: list[str] = []
    if isinstance(template, str):
        found.extend(m.group(1).strip() for m in _MUSTACHE.finditer(template))
    elif isinstance(template, dict):
        for key, value in template.items():
            found.extend(expressions(key))
            found.extend(expressions(value))
    elif isinstance(template, list):
        for value in template:
            found.extend(expressions(value))
    return found


def render(template, ctx: dict):
    """Evaluate every IML string in `template`; MISSING values leave objects."""
    if isinstance(template, str):
        whole = _MUSTACHE.fullmatch(template)
        if whole:
            return evaluate(whole.group(1), ctx)
        return _MUSTACHE.sub(lambda m: to_text(evaluate(m.group(1), ctx)), template)
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            rendered = render(value, ctx)
            if rendered is not MISSING:
                out[to_text(render(key, ctx))] = rendered
        return out
    if isinstance(template, list):
        return [v for v in (render(item, ctx) for item in template) if v is not MISSING]
    return template


# --------------------------------------------------------------------------- the app
@dataclass
class Component:
    kind: str
    name: str
    meta: dict
    files: dict[str, Any]  # code name -> parsed JSON (None when the code file is null)

    def code(self, name: str, default=None):
        value = self.files.get(name)
        return default if value is None else value


class MakeApp:
    """The app as makecomapp.json lays it out on disk."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.project = load_jsonc(self.root / "makecomapp.json")
        general = self.project["generalCodeFiles"]
        self.base = load_jsonc(self.root / general["base"]) if general.get("base") else {}
        self.components: dict[str, dict[str, Component]] = {}
        for kind, comps in self.project["components"].items():
            self.components[kind] = {}
            for name, meta in (comps or {}).items():
                files = {}
                for code, rel in (meta or {}).get("codeFiles", {}).items():
                    files[code] = load_jsonc(self.root / rel) if rel else None
                self.components[kind][name] = Component(kind, name, meta or {}, files)

    def connection(self, name: str) -> Component:
        return self.components["connection"][name]

    def module(self, name: str) -> Component:
        return self.components["module"][name]

    def webhook(self, name: str) -> Component:
        return self.components["webhook"][name]

    def code_files(self) -> list[Path]:
        """Every file makecomapp.json points at, plus makecomapp.json itself."""
        paths = [self.root / "makecomapp.json"]
        for rel in self.project["generalCodeFiles"].values():
            if rel:
                paths.append(self.root / rel)
        for comps in self.project["components"].values():
            for meta in (comps or {}).values():
                for rel in (meta or {}).get("codeFiles", {}).values():
                    if rel:
                        paths.append(self.root / rel)
        return paths


# --------------------------------------------------------------------------- HTTP
@dataclass
class HttpRequest:
    method: str
    url: str
    headers: dict
    body: Any = MISSING
    qs: dict = field(default_factory=dict)

    def full_url(self) -> str:
        if not self.qs:
            return self.url
        sep = "&" if "?" in self.url else "?"
        return self.url + sep + urllib.parse.urlencode({k: to_text(v) for k, v in self.qs.items()})


@dataclass
class HttpResponse:
    status: int
    headers: dict
    body: Any
    text: str


def send(request: HttpRequest, timeout: float = 30.0) -> HttpResponse:
    data = None
    headers = {k: to_text(v) for k, v in request.headers.items()}
    if request.body is not MISSING and request.method not in ("GET", "HEAD"):
        data = json.dumps(request.body).encode()
        headers.setdefault("content-type", "application/json")
    req = urllib.request.Request(request.full_url(), data=data, method=request.method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - tests hit 127.0.0.1 only
            status, raw, resp_headers = resp.status, resp.read(), dict(resp.headers.items())
    except urllib.error.HTTPError as exc:
        status, raw, resp_headers = exc.code, exc.read(), dict(exc.headers.items())
    text = raw.decode("utf-8", errors="replace")
    try:
        body = json.loads(text) if text.strip() else MISSING
    except ValueError:
        body = text
    return HttpResponse(status, {k.lower(): v for k, v in resp_headers.items()}, body, text)


class MakeError(Exception):
    """What Make shows the user when a module fails: an error type and a message."""

    def __init__(self, type_: str, message: str, status: int | None = None):
        super().__init__(f"{type_}: {message}")
        self.type = type_
        self.message = message
        self.status = status


# --------------------------------------------------------------------------- running a communication
@dataclass
class TriggerMark:
    id: Any
    date: Any


@dataclass
class Result:
    outputs: list = field(default_factory=list)   # one per bundle
    marks: list = field(default_factory=list)     # TriggerMark per bundle (polling triggers)
    data: dict | None = None                      # response.data (connections, attach)
    metadata: dict | None = None                  # response.metadata (connections)
    requests: list = field(default_factory=list)  # HttpRequest actually sent
    responses: list = field(default_factory=list)
    limit: int | None = None                      # response.limit (a trigger applies it after filtering)
    temp: dict = field(default_factory=dict)      # response.temp, kept for the next request


def _join(base_url: str, url: str) -> str:
    if url.startswith("/") and base_url:
        return base_url + url
    return url


def build_request(directive: dict, ctx: dict, base: dict | None = None) -> HttpRequest:
    base = base or {}
    base_url = to_text(render(base.get("baseUrl", ""), ctx))
    url = to_text(render(directive.get("url", ""), ctx))
    headers = {}
    headers.update(render(base.get("headers", {}), ctx))
    headers.update(render(directive.get("headers", {}), ctx))
    qs = {}
    qs.update(render(base.get("qs", {}), ctx))
    qs.update(render(directive.get("qs", {}), ctx))
    body = render(directive["body"], ctx) if "body" in directive else MISSING
    method = to_text(render(directive.get("method", "GET"), ctx)).upper()
    return HttpRequest(method, _join(base_url, url), headers, body, qs)


def _raise_for(response: HttpResponse, spec: dict, ctx: dict) -> None:
    error = spec.get("error")
    if isinstance(error, str):
        raise MakeError("RuntimeError", to_text(render(error, ctx)), response.status)
    error = error or {}
    status_spec = error.get(str(response.status)) or {}
    type_ = to_text(render(status_spec.get("type") or error.get("type") or "RuntimeError", ctx))
    message_tpl = status_spec.get("message") or error.get("message") or f"HTTP {response.status}"
    raise MakeError(type_, to_text(render(message_tpl, ctx)), response.status)


def run(directive: dict | list, ctx: dict, base: dict | None = None, *, max_requests: int = 200) -> Result:
    """Send the request(s) of one communication the way Make would; answer the bundles.

    A list of directives runs in order; each one's `response.temp` is kept as `temp` for the
    next, a `condition` that is false skips it, and the last request that ran gives the bundles."""
    base = base or {}
    if isinstance(directive, list):
        combined, ctx = Result(), dict(ctx, temp=dict(ctx.get("temp") or {}))
        for step in directive:
            result = run(step, ctx, base, max_requests=max_requests)
            combined.requests += result.requests
            combined.responses += result.responses
            if result.requests:
                combined.outputs, combined.data, combined.metadata = result.outputs, result.data, result.metadata
            ctx["temp"].update(result.temp)
        combined.temp = ctx["temp"]
        return combined
    if "condition" in directive and not _truthy(render(directive["condition"], ctx)):
        return Result()
    response_spec = dict(base.get("response", {}))
    response_spec.update(directive.get("response", {}))
    result = Result()
    request = build_request(directive, ctx, base)
    pagination = directive.get("pagination")
    while True:
        if len(result.requests) >= max_requests:
            raise AssertionError(f"more than {max_requests} requests: pagination does not stop")
        response = send(request)
        result.requests.append(request)
        result.responses.append(response)
        rctx = dict(ctx, body=response.body, headers=response.headers, statusCode=response.status)
        if not 200 <= response.status < 300:
            _raise_for(response, response_spec, rctx)
        valid = response_spec.get("valid", True)
        if isinstance(valid, dict):
            if not _truthy(render(valid.get("condition", True), rctx)):
                raise MakeError(to_text(render(valid.get("type", "RuntimeError"), rctx)),
                                to_text(render(valid.get("message", "Invalid response"), rctx)),
                                response.status)
        elif not _truthy(render(valid, rctx)):
            raise MakeError("RuntimeError", "Invalid response", response.status)
        if "temp" in response_spec:
            result.temp.update(render(response_spec["temp"], rctx))
        if "data" in response_spec:
            result.data = render(response_spec["data"], rctx)
        if "metadata" in response_spec:
            result.metadata = render(response_spec["metadata"], rctx)
        limit = render(response_spec["limit"], rctx) if "limit" in response_spec else MISSING
        limit = None if _is_empty(limit) else int(limit)
        result.limit = limit
        if "trigger" in response_spec:
            # A polling trigger outputs up to `limit` of the items it has not seen yet
            # (TriggerState.take), not the first `limit` items of the answer.
            limit = None
        iterate = response_spec.get("iterate")
        if iterate is not None:
            container_tpl = iterate["container"] if isinstance(iterate, dict) else iterate
            container = render(container_tpl, rctx)
            if container is MISSING or container is None:
                container = []
            if not isinstance(container, list):
                raise AssertionError(f"iterate container is not an array: {container!r}")
            for item in container:
                ictx = dict(rctx, item=item)
                if isinstance(iterate, dict) and "condition" in iterate:
                    if not _truthy(render(iterate["condition"], ictx)):
                        continue
                if limit is not None and len(result.outputs) >= limit:
                    break
                result.outputs.append(render(response_spec.get("output", "{{item}}"), ictx))
                if "trigger" in response_spec:
                    trig = response_spec["trigger"]
                    result.marks.append(TriggerMark(render(trig["id"], ictx), render(trig.get("date", ""), ictx)))
        elif "output" in response_spec:
            result.outputs.append(render(response_spec["output"], rctx))
        if not pagination or (limit is not None and len(result.outputs) >= limit):
            return result
        if not _truthy(render(pagination.get("condition", True), rctx)):
            return result
        page = {k: v for k, v in directive.items() if k not in ("pagination", "response")}
        for key in ("url", "method", "headers", "qs", "body"):
            if key in pagination:
                page[key] = pagination[key]  # the pagination body REPLACES the request body
        request = build_request(page, rctx, base)


def merge_epoch(communication: dict, epoch: dict) -> dict:
    """Make merges the epoch's overrides into the trigger's communication."""
    merged = json.loads(json.dumps(communication))
    for key, value in epoch.items():
        if key == "response":
            response = dict(merged.get("response", {}))
            response.pop("trigger", None)
            response.update(value)
            merged["response"] = response
        else:
            merged[key] = value
    return merged


# --------------------------------------------------------------------------- polling trigger memory
def _as_datetime(value) -> datetime:
    if isinstance(value, datetime):
        dt = value
    else:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _id_key(value):
    text = to_text(value)
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


class TriggerState:
    """Make's memory of a `type: date` polling trigger: the (date, id) of the last
    bundle it output. Epoch choices: all(), since(date), from_now(), choose(mark)."""

    def __init__(self, date: datetime | None = None, id_=None):
        self.date = date
        self.id = id_

    @classmethod
    def all(cls) -> "TriggerState":
        return cls()

    @classmethod
    def since(cls, date) -> "TriggerState":
        return cls(_as_datetime(date))

    @classmethod
    def from_now(cls) -> "TriggerState":
        return cls(datetime.now(timezone.utc))

    @classmethod
    def choose(cls, mark: TriggerMark) -> "TriggerState":
        return cls(_as_datetime(mark.date), mark.id)

    def _is_new(self, mark: TriggerMark) -> bool:
        if self.date is None:
            return True
        date = _as_datetime(mark.date)
        if date != self.date:
            return date > self.date
        return self.id is not None and _id_key(mark.id) > _id_key(self.id)

    def take(self, result: Result, limit: int | None = None) -> list:
        """The bundles one run outputs (oldest first); remembers the last one."""
        limit = result.limit if limit is None else limit
        fresh = [(m, o) for m, o in zip(result.marks, result.outputs) if self._is_new(m)]
        fresh.sort(key=lambda mo: (_as_datetime(mo[0].date), _id_key(mo[0].id)))
        if limit is not None:
            fresh = fresh[:limit]
        if fresh:
            last = fresh[-1][0]
            self.date, self.id = _as_datetime(last.date), last.id
        return [o for _, o in fresh]
