"""The live page's backend: what every ``consim up`` server answers under ``/ui/``.

:class:`PageBackend` is what any live ``/ui`` answers (the page, its assets, the pushed stream,
the client); :class:`LiveUI` is the one of ``consim up`` in one process, and
``consim.ui.agent.AgentUI`` the one of a ``consim agent`` process (``consim up --processes``).

All servers of a ``consim up`` share one :class:`LiveUI` (they live in one process), so the page
is the same on each, and it keeps working through another server's address (or the control
API's) when the one it was loaded from is killed: the API answers CORS requests from the
cluster's own HTTP addresses, and nothing else.

Routes (``consim/http/app.py`` hands every ``/ui`` path here; other unknown paths keep Consul's
404s):

- ``GET /ui`` -> 301 to ``/ui/``; ``GET /ui/`` the page; ``GET /ui/static/<file>`` its assets.
- ``GET /ui/api/state``: the cluster snapshot (``snapshot.cluster_snapshot``).
- ``GET /ui/api/stream``: server-sent events (``?scope=self``: only what this process knows
  first-hand; an agent's page follows its peers through it): ``state`` (a snapshot, at most every 50 ms after
  an event and every 250 ms anyway), ``log`` (each INFO+ event as Consul's log line), ``msg``
  (server-to-server messages, sampled: see :class:`MessageTap`).
- ``POST /ui/api/ctl/<action>``: the same :class:`~consim.live.Controller` (so the same code
  path and the same remembered roles) as ``consim ctl``'s ``POST /ctl/<action>``.
- ``POST /ui/api/client``: a KV read (default/consistent/stale) or write sent to one server's
  HTTP API, answered with its status, headers and body.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any
from urllib.parse import quote

import trio
from quart import Request, Response

from consim.cluster import Cluster, ClusterError
from consim.events import Event, EventLog, level_enabled, node_log_line
from consim.raft.messages import message_to_wire
from consim.raft.recovery import RecoveryError
from consim.ui.assets import asset, content_type
from consim.ui.snapshot import cluster_snapshot, note_down_reason

# How often the page gets a snapshot without any event (commit indexes, last contact, timers).
STATE_INTERVAL = 0.25
# The least time between two snapshots: events come in bursts; one snapshot covers a burst.
STATE_COALESCE = 0.05
# Log lines a new page gets at once, and what each subscriber may have queued.
BACKLOG = 200
QUEUE = 512
# Messages: at most this many a second in all, and one per link and type per MESSAGE_GAP.
MESSAGES_PER_SECOND = 60
MESSAGE_GAP = 0.2

_JSON = "application/json"


class MessageTap:
    """Samples the server-to-server messages a cluster sends, for the page's arrows.

    It wraps each server's Raft transport ``send`` (hashicorp/raft's messages on byte 1 of the
    server port) and its Forwarder's ``call`` (Consul RPCs to other servers: forwarded requests,
    autopilot's stats; :meth:`install`) on these objects only, so only a live cluster or agent with the
    UI pays for it. Busy links are sampled: one message per link and type per :data:`MESSAGE_GAP` and at most
    :data:`MESSAGES_PER_SECOND` in all (votes are rare and always pass the first rule). Counts
    of what was seen (while a page watched) and shown are kept in :attr:`seen` /
    :attr:`shown`. The tap never raises into the sender.
    """

    def __init__(
        self,
        name_of: Callable[[str], str],
        publish: Callable[[dict[str, Any]], None],
        clock: Callable[[], float],
        active: Callable[[], bool] | None = None,
    ) -> None:
        self.name_of = name_of  # a server's name for an address it sends from or to
        self.publish = publish
        self.clock = clock
        # While nobody watches (no page open), a message costs one call and this check.
        self.active = active
        self.seen = 0
        self.shown = 0
        self._last: dict[tuple[str, str, str], float] = {}
        self._window_start = 0.0
        self._window_count = 0

    def install(self, nodes: Iterable[Any]) -> None:
        """Wrap the Raft transport and RPC calls of each of ``nodes`` (a cluster's, or an agent's)."""
        tap = self
        # Raft travels on the servers' transports (hashicorp's wire on byte 1).
        for node in nodes:
            transport = node.raft_transport

            def tapped_send(out: Any, send: Any = transport.send, src: str = node.address) -> None:
                send(out)
                if tap.active is None or tap.active():
                    wire = {"msg": message_to_wire(out.message)}
                    tap.observe(src, out.to_address, "Raft.Message", wire)

            transport.send = tapped_send
            # Forwarded requests and autopilot's stats calls travel as Consul RPCs (byte 4, yamux)
            # through the server's Forwarder; its ``call`` survives pool resets.
            forwarder = getattr(node, "forwarder", None)
            if forwarder is None:
                continue

            async def tapped_call(
                address: str,
                method: str,
                args: Any,
                timeout: float,
                call: Any = forwarder.call,
                src: str = node.address,
            ) -> Any:
                tap.observe(src, address, method, args)
                return await call(address, method, args, timeout)

            forwarder.call = tapped_call

    def observe(self, src: str, dst: str, method: str, args: Any) -> None:
        if self.active is not None and not self.active():
            return
        with contextlib.suppress(Exception):  # a view must never break the sender
            self._observe(src, dst, method, args)

    def _observe(self, src: str, dst: str, method: str, args: Any) -> None:
        self.seen += 1
        kind, detail = describe_message(method, args)
        now = self.clock()
        key = (src, dst, kind)
        last = self._last.get(key)
        if last is not None and now - last < MESSAGE_GAP:
            return
        if now - self._window_start >= 1.0:
            self._window_start, self._window_count = now, 0
        if self._window_count >= MESSAGES_PER_SECOND:
            return
        self._window_count += 1
        self._last[key] = now
        self.shown += 1
        self.publish(
            {
                "from": self.name_of(src),
                "to": self.name_of(dst),
                "type": kind,
                "detail": detail,
                "seen": self.seen,
                "shown": self.shown,
            }
        )


def cluster_tap(
    cluster: Cluster,
    publish: Callable[[dict[str, Any]], None],
    clock: Callable[[], float],
    active: Callable[[], bool] | None = None,
) -> MessageTap:
    """A :class:`MessageTap` on every server of ``cluster`` (one network object for all)."""
    by_host = {n.spec.host: n.name for n in cluster.servers.values()}
    tap = MessageTap(
        lambda address: by_host.get(address.rsplit(":", 1)[0], address), publish, clock, active
    )
    tap.install(cluster.servers.values())
    return tap


def describe_message(method: str, args: Any) -> tuple[str, str]:
    """A message's type as the page labels it, and a short detail."""
    if method != "Raft.Message" or not isinstance(args, dict):
        return method, ""
    msg = args.get("msg")
    if not isinstance(msg, dict):
        return method, ""
    kind = str(msg.get("type", method))
    term = msg.get("term")
    if kind == "AppendEntries":
        n = len(msg.get("entries") or ())
        if n == 0:
            return "Heartbeat", f"term {term}, commit {msg.get('leader_commit')}"
        return kind, f"term {term}, {n} entries, commit {msg.get('leader_commit')}"
    if kind in ("RequestVote", "RequestVoteResponse") and msg.get("pre_vote"):
        kind = "Pre" + kind
    if kind.endswith("VoteResponse"):
        return kind, f"term {term}, granted {msg.get('granted')}"
    if kind == "AppendEntriesResponse":
        return kind, f"term {term}, success {msg.get('success')}, index {msg.get('last_log_index')}"
    return kind, f"term {term}"


# What a ``/ui/api/ctl/<action>`` may be; anything else is a 400 naming these.
CONTROL_ACTIONS = (
    "kill",
    "restart",
    "stop",
    "pause",
    "resume",
    "isolate",
    "partition",
    "block",
    "heal",
    "delay",
    "loss",
)
# A stream's scope: everything this page knows (``all``), or what this process knows first-hand
# (``self``: an agent's own server, its own log lines and messages; what a peer relays).
SCOPES = ("all", "self")


class PageBackend:
    """What every live ``/ui`` answers: the page, its assets, the pushed stream and the client.

    A subclass says what the cluster is (:meth:`snapshot`), who may call it across origins
    (:meth:`allowed_origins`), what a control does (:meth:`control`) and how a server's HTTP API
    is reached (:meth:`resolve`, :meth:`server_http`). Log lines are the events of ``events``
    (INFO and up, as Consul prints them); ``relay`` lets a subclass push lines and messages it
    got from elsewhere (an agent's peers) to the pages, but not to ``?scope=self`` streams.
    """

    # The least time between two snapshots (see STATE_COALESCE).
    coalesce = STATE_COALESCE

    def __init__(self, events: EventLog, error_node: str = "cluster") -> None:
        self.events = events
        self.error_node = error_node
        self._subscribers: dict[trio.MemorySendChannel[tuple[str, str]], str] = {}
        # (first-hand?, line): a self-scope stream gets the first-hand ones only.
        self._backlog: deque[tuple[bool, str]] = deque(maxlen=BACKLOG)
        self._dirty = trio.Event()
        self._wall_offset = time.time() - trio.current_time()
        # The page's clock: seconds since this UI started (trio's clock has an arbitrary origin).
        self._t0 = trio.current_time()
        self.dropped = 0
        self.errors = 0  # events the page could not be shown (a bug; counted, never raised)
        contained_subscribe(events, self._show_event, self)

    # ---- what a subclass says ----------------------------------------------------------------
    def snapshot(self, scope: str = "all") -> dict[str, Any]:
        raise NotImplementedError

    def allowed_origins(self) -> set[str]:
        raise NotImplementedError

    async def control(self, action: str, body: dict[str, Any]) -> None:
        """Do ``action``; ``ClusterError`` (or ``ValueError``) is the page's 400."""
        raise NotImplementedError

    def resolve(self, server: Any) -> str:
        """A server's name for a name or a role (``leader``, ``follower``); ``ClusterError``."""
        raise NotImplementedError

    async def server_http(
        self, name: str, method: str, path: str, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    def observe_event(self, event: Event) -> None:
        """Called for every event before it is shown (a subclass remembers what it needs)."""

    # ---- what the page is told ---------------------------------------------------------------
    def page_time(self) -> float:
        return round(trio.current_time() - self._t0, 3)

    def watched(self) -> bool:
        """Is a stream open (a page, or a peer's page following this process)?"""
        return bool(self._subscribers)

    def pages(self) -> int:
        """Open streams of scope ``all``: pages (not peers following this process)."""
        return sum(1 for scope in self._subscribers.values() if scope == "all")

    def mark_dirty(self) -> None:
        self._dirty.set()

    def _show_event(self, event: Event) -> None:
        self.observe_event(event)
        self._dirty.set()
        if not level_enabled(event.level, "INFO"):
            return
        line = json.dumps(
            {
                "time": round(event.time - self._t0, 3),
                "node": event.node,
                "kind": event.kind,
                "level": event.level,
                "line": node_log_line(event, shift=self._wall_offset, virtual=False),
            },
        )
        self._backlog.append((True, line))
        self._broadcast("log", line)

    def _on_message(self, message: dict[str, Any]) -> None:
        message["time"] = self.page_time()
        self._broadcast("msg", json.dumps(message))

    def relay(self, kind: str, data: str) -> None:
        """Push a ``log`` line or a ``msg`` that came from elsewhere to this process's pages."""
        if kind == "log":
            self._backlog.append((False, data))
        self._broadcast(kind, data, first_hand=False)

    def _broadcast(self, kind: str, data: str, *, first_hand: bool = True) -> None:
        for channel, scope in list(self._subscribers.items()):
            if scope == "self" and not first_hand:
                continue
            try:
                channel.send_nowait((kind, data))
            except trio.WouldBlock:
                self.dropped += 1  # a slow page misses lines; the next snapshot still comes
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.pop(channel, None)

    def _emit_error(
        self, what: str, where: str, exc: BaseException, node: str | None = None
    ) -> None:
        self.events.emit(
            node or self.error_node,
            "internal_error",
            {"where": where, "error": f"{type(exc).__name__}: {exc}"},
            level="ERROR",
            message=f"unexpected error in {what}, continuing",
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Push snapshots: soon after events, and every :data:`STATE_INTERVAL` anyway."""
        task_status.started()
        while True:
            with trio.move_on_after(STATE_INTERVAL):
                await self._dirty.wait()
            self._dirty = trio.Event()
            for scope in {s for s in self._subscribers.values()}:
                try:
                    state = json.dumps(self.snapshot(scope), default=_finite)
                except Exception as exc:  # one bad snapshot must not end the pushes
                    self._emit_error("ui snapshot", "ui snapshot", exc)
                    continue
                for channel, wants in list(self._subscribers.items()):
                    if wants != scope:
                        continue
                    try:
                        channel.send_nowait(("state", state))
                    except trio.WouldBlock:
                        self.dropped += 1
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self._subscribers.pop(channel, None)
            await trio.sleep(self.coalesce)

    # ---- HTTP --------------------------------------------------------------------------------
    async def handle(self, request: Request, server: str | None = None) -> Response:
        """Answer one ``/ui`` request (``server``: the server whose address it came to)."""
        path, method = request.path, request.method
        origin = request.headers.get("Origin")
        cors = cors_headers(origin, self.allowed_origins())
        if method == "OPTIONS":
            return _answer(204, b"", None, cors)
        try:
            return await self._route(request, path, method, server, cors)
        except Exception as exc:  # never a traceback to the page; the server goes on
            self._emit_error("ui request", f"ui {method} {path}", exc, server)
            return _answer(500, b"internal error", "text/plain; charset=utf-8", cors)

    async def _route(
        self, request: Request, path: str, method: str, server: str | None, cors: dict[str, str]
    ) -> Response:
        if path == "/ui":
            return _answer(301, b"", None, {"Location": "/ui/"})
        get_only = (
            path == "/ui/"
            or path.startswith("/ui/static/")
            or path
            in (
                "/ui/api/state",
                "/ui/api/stream",
            )
        )
        post_only = path.startswith("/ui/api/ctl/") or path == "/ui/api/client"
        if not (get_only or post_only):
            return _answer(404, b"not found in consim's UI\n", "text/plain; charset=utf-8")
        if (get_only and method not in ("GET", "HEAD")) or (post_only and method != "POST"):
            allow = "GET" if get_only else "POST"
            return _answer(405, f"method {method} not allowed".encode(), None, {"Allow": allow})
        if path == "/ui/":
            page = asset("index.html").replace(
                b"<!--CONSIM-BOOT-->",
                f"<script>window.CONSIM_BOOT={json.dumps({'mode': 'live', 'server': server})}"
                "</script>".encode(),
            )
            return _answer(200, page, "text/html; charset=utf-8", {"Cache-Control": "no-store"})
        if path.startswith("/ui/static/"):
            name = path[len("/ui/static/") :]
            try:
                body = asset(name)
            except FileNotFoundError:
                return _answer(404, b"no such asset\n", "text/plain; charset=utf-8")
            return _answer(200, body, content_type(name))
        scope = request.args.get("scope", "all")
        if scope not in SCOPES:
            return _json(400, {"error": f"scope must be all or self, got {scope!r}"}, cors)
        if path == "/ui/api/state":
            self.looked_at(scope)
            return _json(200, self.snapshot(scope), cors)
        if path == "/ui/api/stream":
            return self._stream(cors, scope)
        # POSTs: JSON only, so a page of another origin cannot send one without CORS' preflight.
        if request.mimetype != _JSON:
            return _json(415, {"error": "send Content-Type: application/json"}, cors)
        body = await request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            return _json(400, {"error": "expected a JSON object"}, cors)
        if path == "/ui/api/client":
            return _json(200, await self.client_request(body), cors)
        action = path[len("/ui/api/ctl/") :]
        if action not in CONTROL_ACTIONS:
            return _json(400, {"error": f"unknown action {action!r}"}, cors)
        try:
            await self.control(action, body)
        except (ClusterError, ValueError, RecoveryError) as exc:
            return _json(400, {"error": str(exc)}, cors)
        return _json(200, {"ok": True, "state": self.snapshot()}, cors)

    def _stream(self, cors: dict[str, str], scope: str) -> Response:
        send, recv = trio.open_memory_channel[tuple[str, str]](QUEUE)
        # The backlog as of now, the channel from now: no line twice, none lost.
        backlog = [line for own, line in self._backlog if own or scope == "all"]
        self._subscribers[send] = scope
        self.looked_at(scope)

        async def frames() -> AsyncIterator[bytes]:
            try:
                await self.first_state_ready(scope)
                yield _frame("state", json.dumps(self.snapshot(scope), default=_finite))
                for line in backlog:
                    yield _frame("log", line)
                while True:
                    with trio.move_on_after(15) as idle:
                        kind, data = await recv.receive()
                    if idle.cancelled_caught:
                        yield b": keep-alive\n\n"  # proxies and browsers keep the stream open
                        continue
                    yield _frame(kind, data)
            finally:
                self._subscribers.pop(send, None)
                send.close()

        resp = Response(frames(), status=200, content_type="text/event-stream")
        resp.headers["Cache-Control"] = "no-store"
        for k, v in cors.items():
            resp.headers[k] = v
        resp.timeout = None  # type: ignore[assignment]  # Quart's 60 s response timeout: off
        return resp

    async def first_state_ready(self, scope: str) -> None:
        """Wait (briefly) until a new stream's first snapshot is worth showing."""

    def looked_at(self, scope: str) -> None:
        """A stream of ``scope`` opened, or a state was asked for (an agent then follows its
        peers for a while)."""

    async def client_request(self, body: dict[str, Any]) -> dict[str, Any]:
        """``{server, op: read|write, key, value, consistency}`` -> the server's answer."""
        server, op = body.get("server"), body.get("op")
        key = body.get("key") or "ui/demo"
        consistency = body.get("consistency") or "default"
        if op not in ("read", "write"):
            return {"error": f"op must be read or write, got {op!r}"}
        if consistency not in ("default", "consistent", "stale"):
            return {
                "error": f"consistency must be default, consistent or stale, got {consistency!r}"
            }
        if not isinstance(key, str):
            return {"error": "key must be a string"}
        try:
            name = self.resolve(server)
        except ClusterError as exc:
            return {"error": str(exc)}
        path = "/v1/kv/" + quote(key, safe="/")
        if op == "read" and consistency != "default":
            path += "?" + consistency
        method = "GET" if op == "read" else "PUT"
        data = str(body.get("value", "")).encode() if op == "write" else b""
        start = trio.current_time()
        try:
            status, headers, answer = await self.server_http(name, method, path, data)
        except Exception as exc:  # connection refused by a killed server, a timeout, ...
            return {"server": name, "request": f"{method} {path}", "error": str(exc) or repr(exc)}
        shown = {k: v for k, v in headers.items() if k.lower().startswith("x-consul")}
        return {
            "server": name,
            "request": f"{method} {path}",
            "status": status,
            "headers": shown,
            "body": answer.decode("utf-8", "replace"),
            "ms": round((trio.current_time() - start) * 1000, 1),
        }


class LiveUI(PageBackend):
    """The ``/ui`` of one ``consim up``: shared by its servers and its control API."""

    def __init__(
        self, cluster: Cluster, controller: Any, *, control_address: str | None = None
    ) -> None:
        self.cluster = cluster
        self.controller = controller
        self.control_address = control_address
        self._down_reason: dict[str, str] = {}
        super().__init__(cluster.events)
        self.tap = cluster_tap(cluster, self._on_message, trio.current_time, active=self.watched)

    def snapshot(self, scope: str = "all") -> dict[str, Any]:
        # One process holds the whole cluster: every scope is all of it, first-hand.
        now = trio.current_time()
        snap = cluster_snapshot(self.cluster, now, self._down_reason)
        snap["time"] = round(now - self._t0, 3)
        snap["control"] = self.control_address
        snap["messages"] = {"seen": self.tap.seen, "shown": self.tap.shown}
        snap["ui"] = {"dropped": self.dropped, "errors": self.errors}
        return snap

    def observe_event(self, event: Event) -> None:
        note_down_reason(self._down_reason, event)

    def allowed_origins(self) -> set[str]:
        origins = {f"http://{n.spec.http_address}" for n in self.cluster.servers.values()}
        if self.control_address:
            origins.add(f"http://{self.control_address}")
        return origins

    async def control(self, action: str, body: dict[str, Any]) -> None:
        await self.controller.apply(action, body)

    def resolve(self, server: Any) -> str:
        return str(self.controller.resolve(server))

    async def server_http(
        self, name: str, method: str, path: str, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        return await self.cluster.http(name, method, path, body=body)


def cors_headers(origin: str | None, allowed: set[str]) -> dict[str, str]:
    """CORS answers for ``origin`` when it is one of ``allowed`` (the cluster's own pages)."""
    if not origin or origin not in allowed:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "GET, POST",
        "Access-Control-Allow-Headers": "Content-Type",
        "Vary": "Origin",
    }


def contained_subscribe(events: EventLog, handler: Callable[[Event], None], owner: Any) -> None:
    """Subscribe ``handler`` to ``events``; it runs inside every emit, so what it raises is
    counted in ``owner.errors`` and never fails the emitter (a view must not break the cluster)."""

    def on_event(event: Event) -> None:
        try:
            handler(event)
        except Exception:
            owner.errors += 1

    events.subscribe(on_event)


def _frame(kind: str, data: str) -> bytes:
    return f"event: {kind}\ndata: {data}\n\n".encode()


def _json(status: int, body: Any, headers: dict[str, str]) -> Response:
    return _answer(
        status, json.dumps(body, allow_nan=False, default=_finite).encode(), _JSON, headers
    )


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _answer(
    status: int, body: bytes, content_type: str | None, headers: dict[str, str] | None = None
) -> Response:
    resp = Response(body, status=status)
    if content_type is None:
        del resp.headers["Content-Type"]
    else:
        resp.headers["Content-Type"] = content_type
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp
