"""``http = "GET /v1/kv/x"``: one request to a server, checked against ``expect``."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from consim.scenario.actions.base import Action
from consim.scenario.base import ActionArgs, Checker, Step, StepFailed, Target, short

if TYPE_CHECKING:
    from consim.scenario.context import StepContext

HTTP_METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS")


@dataclass(frozen=True, eq=False)
class HttpExpect:
    """What the answer must be; a field left None is not checked."""

    status: int | None = None
    body: str | None = None
    body_contains: str | None = None
    json: dict[str, Any] | None = None
    headers: dict[str, Any] | None = None
    leaders: int | None = None  # servers with Leader=true in a raft configuration

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def filled(self, ctx: StepContext, step: Step) -> HttpExpect:
        return replace(
            self, **{f.name: ctx.fill(getattr(self, f.name), step) for f in fields(self)}
        )


@dataclass(frozen=True, eq=False)
class HttpArgs(ActionArgs):
    method: str
    path: str
    on: Target
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    expect: HttpExpect = field(default_factory=HttpExpect)
    # NAME -> dotted JSON path of the answer, kept for {var:NAME} in later steps
    save: dict[str, str] = field(default_factory=dict)
    # Repeat the request (every RETRY_EVERY) until ``expect`` holds, for at most this long.
    within: float = 0.0
    within_text: str = ""

    def describe(self) -> str:
        label = f"{self.method} {self.path} on {self.on}"
        if self.within_text:
            label += f" (until it answers as expected, within {self.within_text})"
        if self.save:
            label += f" (saves {', '.join(self.save)})"
        return label


class Http(Action[HttpArgs]):
    name = "http"
    keys = frozenset({"on", "body", "headers", "token", "expect", "save", "within"})

    def parse(self, c: Checker, value: Any, step: dict[str, Any], dc: str | None) -> HttpArgs:
        text = c.string("http", value)
        method, _, path = text.strip().partition(" ")
        path = path.strip()
        if (
            method.upper() not in HTTP_METHODS
            or method != method.upper()
            or not path.startswith("/")
        ):
            raise c.expected("http", 'a request like "GET /v1/status/leader"', value)
        body = step.get("body", "")
        if not isinstance(body, str):
            raise c.expected("body", "a string", body)
        headers = step.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise c.expected("headers", "a table of strings", headers)
        token = c.string("token", step["token"]) if "token" in step else None
        expect, raw_expect = _parse_expect(c, step.get("expect", {}))
        c.placeholders("http", path)
        c.placeholders("body", body)
        c.placeholders("expect", raw_expect)
        save = step.get("save", {})
        if not isinstance(save, dict) or not all(isinstance(v, str) and v for v in save.values()):
            raise c.expected("save", 'a table like { session = "ID" } (name = JSON path)', save)
        within, within_text = 0.0, ""
        if "within" in step:
            within, within_text = c.duration("within", step["within"])
            if not expect:
                raise c.fail("within", "needs an expect to wait for")
        args = HttpArgs(
            method=method,
            path=path,
            on=c.target("on", step.get("on", "any"), dc),
            body=body,
            headers=dict(headers),
            token=token,
            expect=expect,
            save=dict(save),
            within=within,
            within_text=within_text,
        )
        c.saved.update(save)  # later steps may use {var:NAME}
        return args

    async def run(self, ctx: StepContext, step: Step, args: HttpArgs) -> str:
        a = replace(
            args,
            path=ctx.fill(args.path, step),
            body=ctx.fill(args.body, step),
            headers=ctx.fill(args.headers, step),
            token=ctx.fill(args.token, step),
            expect=args.expect.filled(ctx, step),
        )
        name = ctx.resolve(a.on, step)
        headers = dict(a.headers)
        if a.token is not None:
            headers["X-Consul-Token"] = a.token
        deadline = ctx.events.now() + a.within
        while True:
            status, out_headers, body, error = await ctx.request(
                name, a.method, a.path, headers, a.body.encode(), step=step.number
            )
            text = body.decode("utf-8", "replace")
            shown = f"{name}: {status if status is not None else error} {short(text, 120)}"
            try:
                check_http(a.expect, status, out_headers, text, error)
                break
            except StepFailed:
                if ctx.events.now() + RETRY_EVERY > deadline:
                    raise
            await ctx.sleep(RETRY_EVERY)
        for var, path in a.save.items():
            ctx.variables[var] = _saved(text, var, path)
        return shown.rstrip()


RETRY_EVERY = 0.5  # seconds between the tries of an http step with ``within``


def _saved(text: str, var: str, path: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        raise StepFailed(f"cannot save {var}: the body is not JSON: {short(text, 120)!r}") from None
    value = _lookup(doc, path)
    if value is _MISSING:
        raise StepFailed(f"cannot save {var}: JSON has no {path}")
    return value if isinstance(value, str) else json.dumps(value)


def _parse_expect(c: Checker, expect: Any) -> tuple[HttpExpect, dict[str, Any]]:
    if not isinstance(expect, dict):
        raise c.expected("expect", "a table like { status = 200 }", expect)
    out: dict[str, Any] = {}
    for k, v in expect.items():
        f = f"expect.{k}"
        if k == "status":
            out[k] = c.integer(f, v, 100)
        elif k == "body":
            out[k] = c.string(f, v)
        elif k in ("json", "headers"):
            if not isinstance(v, dict):
                raise c.expected(f, "a table", v)
            out[k] = dict(v)
        elif k == "leaders":
            out[k] = c.integer(f, v, 0)
        elif k == "body_contains":
            out[k] = c.string(f, v)
        else:
            raise c.fail(
                f,
                "unknown expectation (expected status, body, body_contains, json, headers, leaders)",
            )
    return HttpExpect(**out), out


def check_http(
    expect: HttpExpect,
    status: int | None,
    headers: dict[str, str],
    text: str,
    error: str = "",
) -> None:
    """Raise :class:`StepFailed` listing every expectation that does not hold."""
    problems = []
    if status is None:
        if expect:
            raise StepFailed(f"no answer: {error}")
        return
    if expect.status is not None and status != expect.status:
        problems.append(f"status {status}, expected {expect.status}")
    if expect.body is not None and text != expect.body:
        problems.append(f"body {short(text, 200)!r}, expected {expect.body!r}")
    if expect.body_contains is not None and expect.body_contains not in text:
        problems.append(f"body {short(text, 200)!r} lacks {expect.body_contains!r}")
    for name, value in (expect.headers or {}).items():
        actual = headers.get(name.lower())
        if actual != str(value):
            problems.append(f"header {name}: {actual!r}, expected {value!r}")
    parsed: Any = None
    if expect.json is not None or expect.leaders is not None:
        try:
            parsed = json.loads(text)
        except ValueError:
            problems.append(f"body is not JSON: {short(text, 120)!r}")
    if parsed is not None:
        for key, value in (expect.json or {}).items():
            problems.extend(_json_subset(parsed, key, value))
        if expect.leaders is not None:
            servers = parsed.get("Servers", []) if isinstance(parsed, dict) else []
            leaders = sum(1 for s in servers if isinstance(s, dict) and s.get("Leader") is True)
            if leaders != expect.leaders:
                problems.append(f"{leaders} servers with Leader=true, expected {expect.leaders}")
    if problems:
        raise StepFailed("; ".join(problems))


_MISSING = object()


def _lookup(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(doc, list) and part.lstrip("-").isdigit():
            i = int(part)
            if -len(doc) <= i < len(doc):
                doc = doc[i]
                continue
            return _MISSING
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
            continue
        return _MISSING
    return doc


def _json_subset(doc: Any, path: str, want: Any) -> list[str]:
    """``want`` must match the value at the dotted ``path``; tables match as subsets.

    A ``Value`` field (KV's base64) also matches its decoded text, so a scenario can say
    ``json = { "0.Value" = "v2" }``.
    """
    actual = _lookup(doc, path)
    if actual is _MISSING:
        return [f"JSON has no {path}"]
    if isinstance(want, dict):
        out = []
        for k, v in want.items():
            out.extend(_json_subset(actual, k, v))
        return [p.replace("JSON has no ", f"JSON has no {path}.") for p in out]
    if actual == want:
        return []
    if path.split(".")[-1] == "Value" and isinstance(actual, str) and isinstance(want, str):
        try:
            if base64.b64decode(actual).decode() == want:
                return []
        except ValueError:
            pass
    return [f"JSON {path} = {json.dumps(actual)}, expected {json.dumps(want)}"]


ACTIONS = (Http(),)
