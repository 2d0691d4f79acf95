"""What every HTTP handler works with: the request context, the answer types and routes.

The handlers of one endpoint family live in their own module (``consim/http/<family>.py``), each
exporting its ``ROUTES``; ``app.py`` joins them into the one routing table.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from quart import Request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

from consim.golike import GoError, parse_duration, parse_uint
from consim.http.agent import Agent
from consim.structs import DEFAULT_QUERY_TIME, MAX_QUERY_TIME

KV_MAX_VALUE_SIZE = 512 * 1024  # Consul's kv_max_value_size default
# The most any endpoint reads of a body (KV values are the largest consim accepts).
MAX_BODY_SIZE = KV_MAX_VALUE_SIZE


class _JSONNull:
    """A handler's answer meaning the JSON body ``null`` (``None`` is an empty body)."""


JSON_NULL = _JSONNull()


class BodyTooLarge(GoError):
    """A request body over :data:`MAX_BODY_SIZE`."""


class HTTPError(Exception):
    """A request refused by this layer: ``status`` with ``text`` as the plain body."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@dataclass
class Reply:
    """A fully formed answer (status, body, headers) bypassing JSON encoding."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] | None = None
    content_type: str | None = None


def error_status(message: str) -> int:
    """Consul's mapping from an RPC error text to an HTTP status (agent/http.go handleErr)."""
    # acl.IsErrPermissionDenied / IsErrNotFound use strings.Contains.
    if "Permission denied" in message or "ACL not found" in message:
        return 403
    if message in (
        "rate limit exceeded, try again later or against a different server",
        "RPC rate limit exceeded",
    ):
        return 429
    return 500


Handler = Callable[["Ctx"], Awaitable[Any]]


@dataclass
class Route:
    path: str
    prefix: bool  # Go ServeMux: a pattern ending in "/" matches the subtree
    methods: tuple[str, ...]
    handler: Handler


class Ctx:
    """The parts of a request the handlers read, with Consul's query semantics."""

    def __init__(self, agent: Agent, req: Request, method: str, path: str, rest: str) -> None:
        self.agent = agent
        self.request = req
        self.method = method
        self.path = path
        self.rest = rest  # the path after a prefix route's pattern
        self.headers = req.headers
        self.meta_headers: dict[str, str] = {}
        # First value per name, read once: a missing name in werkzeug's MultiDict.get costs a
        # raised and caught BadRequestKeyError, and handlers ask for many absent names. No query
        # string, nothing to parse.
        self._query: dict[str, str] = (
            {name: values[0] for name, values in req.args.lists()} if req.query_string else {}
        )

    @property
    def args(self) -> MultiDict[str, str]:
        """The parsed query string (every value of every name, in order)."""
        return self.request.args

    def has(self, name: str) -> bool:
        """Go's ``_, ok := query[name]``: presence, whatever the value."""
        return name in self._query

    def get(self, name: str) -> str:
        """Go's ``query.Get(name)``: first value or ``""``."""
        return self._query.get(name, "")

    async def body(self) -> bytes:
        """The request body, at most :data:`MAX_BODY_SIZE` bytes.

        Quart stops buffering past its ``MAX_CONTENT_LENGTH`` (set to that size), so a larger
        body, announced or chunked, is never held in memory. Raises :class:`BodyTooLarge`
        (a GoError with Go's ``http.MaxBytesReader`` text, so JSON endpoints answer
        ``Request decode failed: http: request body too large`` as Consul's decode path would).
        """
        try:
            return await self.request.get_data(cache=True, as_text=False)
        except RequestEntityTooLarge:
            raise BodyTooLarge("http: request body too large") from None
        except RequestTimeout:
            # The live server answers a stalled body itself; this is the in-app fallback.
            raise HTTPError(408, "Request Timeout") from None

    def token(self) -> str:
        # ?token, then X-Consul-Token, then "Authorization: Bearer <t>"; else "" (anonymous /
        # the agent's default token, applied on the server side).
        if tok := self.get("token"):
            return tok
        # One pass over the headers: the first of each name, matched case-insensitively, as
        # werkzeug's Headers.get (which raises and catches a KeyError for each absent name).
        consul_token = auth = None
        for key, value in self.headers.items():
            lower = key.lower()
            if lower == "x-consul-token":
                if consul_token is None:
                    consul_token = value
            elif lower == "authorization" and auth is None:
                auth = value
        if consul_token:
            return consul_token
        parts = (auth or "").split(" ")
        if len(parts) > 1 and parts[0].lower() == "bearer":
            value = " ".join(parts[1:]).strip()
            if bearer := value.split(" ")[0].strip():
                return bearer
        # none given: the agent's default token (PUT /v1/agent/token/default), else anonymous
        return getattr(self.agent, "user_token", "") or ""

    def dc(self) -> str:
        return self.get("dc") or self.agent.datacenter

    def write_args(self) -> dict[str, Any]:
        return {"Datacenter": self.dc(), "Token": self.token()}

    def query_args(self) -> dict[str, Any]:
        """Consul's ``s.parse``: dc, token, consistency flags, blocking wait/index."""
        args: dict[str, Any] = self.write_args()
        stale = self.has("stale")
        consistent = self.has("consistent")
        max_stale = 0.0
        if raw := self.get("max_stale"):
            try:
                max_stale = parse_duration(raw)
            except GoError:
                raise HTTPError(400, f"Invalid max_stale value {json.dumps(raw)}") from None
            if max_stale > 0:
                stale = True
        if stale and consistent:
            raise HTTPError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
        wait = 0.0
        if raw := self.get("wait"):
            try:
                wait = parse_duration(raw)
            except GoError:
                raise HTTPError(400, "Invalid wait time") from None
        index = 0
        if raw := self.get("index"):
            try:
                index = parse_uint(raw)
            except GoError:
                raise HTTPError(400, "Invalid index") from None
        # Consul's blockingQuery: no wait -> 5m, capped at 10m (jitter is the server's).
        if wait <= 0:
            wait = DEFAULT_QUERY_TIME
        wait = min(wait, MAX_QUERY_TIME)
        args.update(
            AllowStale=stale,
            RequireConsistent=consistent,
            MaxStaleDuration=max_stale,
            MinQueryIndex=index,
            MaxQueryTime=wait,
        )
        if self.has("filter"):
            args["Filter"] = self.get("filter")  # go-bexpr, applied by the list endpoints
        return args

    def set_meta(self, reply: Any) -> None:
        """Consul's setMeta: query metadata headers from the reply's QueryMeta."""
        meta = reply.get("QueryMeta") if isinstance(reply, dict) else None
        meta = meta or {}
        last = float(meta.get("LastContact") or 0.0)
        self.meta_headers["X-Consul-Lastcontact"] = str(max(0, int(last * 1000)))
        self.meta_headers["X-Consul-Index"] = str(int(meta.get("Index") or 0) or 1)
        self.meta_headers["X-Consul-Knownleader"] = "true" if meta.get("KnownLeader") else "false"
        if level := meta.get("ConsistencyLevel"):
            self.meta_headers["X-Consul-Effective-Consistency"] = str(level)

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        return await self.agent.rpc(method, args)


def ordered(obj: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Go struct field order for known fields; anything else keeps its place after them."""
    if tuple(obj) == fields:
        return obj  # already in order (the local endpoint builds it so)
    out = {k: obj[k] for k in fields if k in obj}
    out.update({k: v for k, v in obj.items() if k not in out})
    return out
