"""Serving an ASGI app on a real port (live mode): hypercorn's HTTP/1.1, with Go's connection rules.

hypercorn (its h11 protocol, ASGI handling, lifespan and ``Config``) serves each server's
quart-trio app. Consul serves its API with Go's ``net/http``, and a client sees a few things
that plain hypercorn does differently; this module adds only those, as small subclasses of
hypercorn's ``TCPServer`` and ``H11Protocol`` and a trio accept loop of its own:

- the status line carries Go's reason phrase (``HTTP/1.1 200 OK``, ``HTTP/1.0 200 OK`` to a
  1.0 client) and header names are written in Go's canonical form (``X-Consul-Index``), the
  handler's headers sorted by name, then ``Date``, ``Content-Length`` and ``Connection``, as
  ``net/http`` writes them (hypercorn writes lower-case names and no reason phrase);
- ``Connection: close`` (or HTTP/1.0) closes after the answer. hypercorn 0.18 decides to
  close but its close runs in the ASGI app's task, which quart-trio cancels right after the
  answer, so the connection stayed open; here the close is shielded, and it is Go's lingering
  close: the write side is shut first and what the client still sends is read and dropped for
  a moment, so the answer is not lost to a reset;
- the rest of a body the app did not read is drained up to 256 KiB (Go's
  ``maxPostHandlerReadBytes``) before the answer's head is written; beyond that (or when a
  client that sent ``Expect: 100-continue`` never got ``100 Continue``) the answer says
  ``Connection: close`` and the connection is closed, so the next request on it never hangs;
- ``100 Continue`` is sent only if the app has not answered within a moment (Go sends it when the
  handler first reads the body; Consul's KV handler refuses a too-large Content-Length first);
- requests the server answers itself get Go's plain-text answers (``400 Bad Request``, ``400 Bad
  Request: missing required Host header``, ``431 Request Header Fields Too Large``, ``501``
  ``Unsupported transfer encoding``, ``505``); Host is validated as Go's
  ``httpguts.ValidHostHeader`` does; ``OPTIONS *`` is answered as Go's ``globalOptionsHandler``;
- Consul's ``limits.http_max_conns_per_client`` (default 200) per client IP, enforced like
  hashicorp/go-connlimit in the accept loop: the connection over the limit gets ``429 Too Many
  Requests`` with ``Your IP is issuing too many concurrent connections, please rate limit your
  calls`` and is closed;
- timeouts (:class:`HTTPLimits`). Consul sets none on its ``http.Server`` (a Go server with none
  keeps an idle or half-sent connection forever); consim uses Go's semantics with bounded
  defaults so that one client cannot pin file descriptors: ``read_header_timeout`` (10 s, from
  the connection's start or the next request's first byte to the end of its head),
  ``read_timeout`` (30 s for the body, then ``408 Request Timeout`` if the app has not
  answered), ``idle_timeout`` (60 s between requests on a keep-alive connection),
  ``write_timeout`` (30 s without progress sending 64 KiB of an answer). They are read
  deadlines of the connection's one read loop: hypercorn's ``keep_alive_timeout`` is a task
  spawned per request, which costs more than the rest of this layer. There is no total write deadline: Consul's blocking queries answer after up to 10
  minutes.

A client that goes away cancels its request (hypercorn tells the app ``http.disconnect``,
quart-trio cancels the handler), as Go's background read cancels the request's context.
hypercorn hands the body to the app as it arrives, at most ``max_app_queue_size`` messages
ahead of it; Quart keeps at most ``MAX_CONTENT_LENGTH`` of it, so a body limit in the app bounds
memory.

hypercorn internals this relies on (checked against hypercorn 0.18.0; pyproject pins 0.18.x, so
check these on an upgrade): ``hypercorn.trio.tcp_server.TCPServer`` (its constructor, ``stream``,
``send_lock``, ``_task_group``; ``run``, ``protocol_send``,
``_read_data`` and ``_close`` are replaced here), ``hypercorn.protocol.h11.H11Protocol`` (its
constructor and attributes, ``_handle_events`` calling ``_create_stream``, ``_send_h11_event``
and ``_send_error_response``, ``_maybe_recycle`` sending ``Closed`` / ``Updated``; ``handle``, ``_check_protocol``,
``stream_send``, ``_create_stream``, ``_send_h11_event`` and ``_send_error_response`` are
overridden), ``hypercorn.protocol.http_stream.HTTPStream`` and ``protocol.events.Request``,
``hypercorn.trio.lifespan.Lifespan``, ``WorkerContext``, ``TaskGroup.spawn``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import sys
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from math import inf
from typing import Any

import h11
import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.events import Request, Response, StreamClosed
from hypercorn.protocol.h11 import STREAM_ID, H11Protocol
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState, LifespanState
from hypercorn.utils import parse_socket_addr, wrap_app

log = logging.getLogger("consim.http.server")

MAX_RECV = 64 * 1024
# Go: maxPostHandlerReadBytes, what the server reads of an unread body to keep a connection.
POST_HANDLER_DRAIN = 256 * 1024
# Go: closeWriteAndWait's rstAvoidanceDelay, how long a closing connection keeps reading.
LINGER = 0.5
LINGER_BYTES = 1 << 20
# How long a request with "Expect: 100-continue" waits for the app to answer without its body.
EXPECT_CONTINUE_GRACE = 0.05

# hashicorp/go-connlimit's tooManyRequestsResponse, byte for byte.
_TOO_MANY_CONNS_MSG = (
    b"Your IP is issuing too many concurrent connections, please rate limit your calls\n"
)
TOO_MANY_CONNS = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
) % (len(_TOO_MANY_CONNS_MSG), _TOO_MANY_CONNS_MSG)


@dataclass(frozen=True)
class HTTPLimits:
    """Connection limits and timeouts of the live HTTP server (seconds, bytes)."""

    max_conns_per_client: int = 200  # Consul's limits.http_max_conns_per_client; 0 = no limit
    max_header_bytes: int = 1 << 20  # Go's DefaultMaxHeaderBytes (Consul's http_max_header_bytes)
    read_header_timeout: float = 10.0
    read_timeout: float = 30.0
    idle_timeout: float = 60.0
    write_timeout: float = 30.0


def hypercorn_config(limits: HTTPLimits) -> Config:
    """hypercorn's ``Config`` for a Consul-like server."""
    config = Config()
    # Quiet: the event log is the only output; Consul sends no Server header either.
    config.accesslog = None
    config.errorlog = logging.getLogger("consim.http.hypercorn")
    config.include_server_header = False
    config.include_date_header = False  # written here, in Go's place among the headers
    # Go reads a head through a LimitReader of MaxHeaderBytes + 4096.
    config.h11_max_incomplete_size = limits.max_header_bytes + 4096
    config.keep_alive_max_requests = sys.maxsize  # Go closes no connection for its count
    return config


# --------------------------------------------------------------------------- Go's wire format

_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
# golang.org/x/net/http/httpguts validHostByte
_HOST_CHARS = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!$%&'()*+,-.:;=[]_~"
)


def canonical_header_key(name: str) -> str:
    """Go's ``textproto.CanonicalMIMEHeaderKey``: ``x-consul-index`` -> ``X-Consul-Index``."""
    if not name or any(c not in _TOKEN_CHARS for c in name):
        return name  # Go leaves a key with a non-token byte as it is
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def status_text(code: int) -> str:
    """Go's ``http.StatusText`` (the reason phrase on the status line)."""
    with contextlib.suppress(ValueError):
        return HTTPStatus(code).phrase
    return f"status code {code}"


def valid_host_header(host: str) -> bool:
    """Go's ``httpguts.ValidHostHeader``."""
    return all(c in _HOST_CHARS for c in host)


def go_error_response(code: int, detail: str = "") -> bytes:
    """What Go's server writes for a request it cannot hand to a handler."""
    text = f"{code} {status_text(code)}" + (f": {detail}" if detail else "")
    return (
        f"HTTP/1.1 {text}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Connection: close\r\n\r\n{text}"
    ).encode("latin-1")


# --------------------------------------------------------------------------- limits


class ClientLimiter:
    """Open connections per client IP (hashicorp/go-connlimit's Limiter)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}

    def accept(self, ip: str) -> bool:
        n = self.open.get(ip, 0)
        if self.limit > 0 and n >= self.limit:
            return False
        self.open[ip] = n + 1
        return True

    def free(self, ip: str) -> None:
        n = self.open.get(ip, 0) - 1
        if n > 0:
            self.open[ip] = n
        else:
            self.open.pop(ip, None)


# --------------------------------------------------------------------------- hypercorn, as Go


def _go_headers(headers: list[tuple[bytes, bytes]], close: bool) -> list[tuple[bytes, bytes]]:
    """The handler's headers as Go writes them: canonical names, sorted, then Date,
    Content-Length and Connection (h11 writes names with the case it is given)."""
    own: dict[str, list[bytes]] = {}
    length: bytes | None = None
    for raw_name, value in headers:
        name = canonical_header_key(raw_name.decode("latin-1"))
        if name == "Content-Length":
            length = value
        elif name not in ("Connection", "Date", "Transfer-Encoding"):  # the server's to write
            own.setdefault(name, []).append(value)
    out = [(name.encode("latin-1"), value) for name in sorted(own) for value in own[name]]
    out.append((b"Date", formatdate(usegmt=True).encode("ascii")))
    if length is not None:
        out.append((b"Content-Length", length))
    if close:
        out.append((b"Connection", b"close"))
    return out


def _wants_keep_alive(request: h11.Request) -> bool:
    if request.http_version < b"1.1":
        return False  # h11 closes HTTP/1.0 connections
    for k, v in request.headers:
        if k == b"connection" and b"close" in [t.strip().lower() for t in v.split(b",")]:
            return False
    return True


async def _options_star(scope: dict[str, Any], receive: Any, send: Any) -> None:
    # Go's globalOptionsHandler: 200, Content-Length 0, nothing for the app.
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
    )
    await send({"type": "http.response.body", "body": b""})


_OPTIONS_STAR = ASGIWrapper(_options_star)
_NON_ASCII = re.compile(rb"[\x80-\xff]")


class _H11Connection(h11.Connection):
    """h11's server side, remembering the parse error that Go's answer is chosen by."""

    error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error = exc
            raise


class _GoH11Protocol(H11Protocol):
    """hypercorn's HTTP/1.1 protocol, writing answers and deciding on keep-alive as Go does."""

    connection: _H11Connection

    def __init__(self, *args: Any, limits: HTTPLimits) -> None:
        super().__init__(*args)
        self.connection = _H11Connection(
            h11.SERVER, max_incomplete_event_size=self.config.h11_max_incomplete_size
        )
        self.limits = limits
        self.request: h11.Request | None = None
        self.request_start = 0.0
        self.received = 0  # bytes received on this connection
        self.body_start = 0  # self.received when the current request's body began
        self.progress = trio.Event()  # set (and replaced) whenever bytes arrive or it closes
        self.response_started = False  # the app has sent its http.response.start
        self.answered = False  # the server answered this request itself: drop the app's answer
        self.body_expired = False  # read_timeout passed while the answer was being written
        self.continue_pending = False
        self.head = b""  # an answer's head, not yet written

    def _progress(self) -> None:
        self.progress.set()
        self.progress = trio.Event()

    async def handle(self, event: Event) -> None:
        if isinstance(event, RawData):
            self.received += len(event.data)
        await super().handle(event)
        self._progress()

    async def answer_and_close(self, data: bytes) -> None:
        """Write an answer of the server's own (Go's text) and close the connection."""
        self.answered = True
        await self.send(RawData(data=data))
        await self.send(Closed())

    async def _send_error_response(self, status_code: int) -> None:
        # hypercorn answers a request h11 cannot parse (and then closes): Go's texts instead.
        self.answered = True
        error = self.connection.error
        await self.send(RawData(data=_go_head_error(error, status_code)))

    async def _check_protocol(self, event: h11.Request) -> None:
        # hypercorn switches to HTTP/2 on "Upgrade: h2c" and "PRI * HTTP/2.0"; Go's server
        # (Consul's, without TLS) answers in HTTP/1.1 and refuses HTTP/2.0 (_create_stream).
        return

    async def _create_stream(self, request: h11.Request) -> None:
        self.request = request
        self.request_start = trio.current_time()
        self.body_start = self.received - len(self.connection.trailing_data[0])
        self.response_started = self.answered = self.body_expired = False
        self.continue_pending = False
        head_size = len(request.target) + sum(len(k) + len(v) + 4 for k, v in request.headers)
        if head_size > self.limits.max_header_bytes + 4096:
            # h11 checks its limit only while a head is incomplete; one that arrives whole in
            # a single read is measured here.
            await self.answer_and_close(go_error_response(431))
            return
        if request.http_version not in (b"1.0", b"1.1"):
            await self.answer_and_close(go_error_response(505, "unsupported protocol version"))
            return
        hosts = [v for k, v in request.headers if k == b"host"]
        if len(hosts) == 1 and not valid_host_header(hosts[0].decode("latin-1")):
            await self.answer_and_close(go_error_response(400, "malformed Host header"))
            return
        star = request.target == b"*" and request.method == b"OPTIONS"
        # hypercorn decodes the path as ASCII; Go takes any byte but controls.
        target = _NON_ASCII.sub(lambda m: b"%%%02X" % m.group()[0], request.target)
        self.stream = HTTPStream(
            _OPTIONS_STAR if star else self.app,
            self.config,
            self.context,
            self.task_group,
            self.ssl,
            self.client,
            self.server,
            self.stream_send,
            STREAM_ID,
        )
        await self.stream.handle(
            Request(
                stream_id=STREAM_ID,
                headers=list(request.headers),
                http_version=request.http_version.decode(),
                method=request.method.decode("ascii").upper(),
                raw_path=target,
                state=self.connection_state,
            )
        )
        self.keep_alive_requests += 1
        await self.context.mark_request()

    async def stream_send(self, event: StreamEvent) -> None:
        if self.answered:  # the server answered (408, 400): the app's answer goes nowhere
            if isinstance(event, StreamClosed):
                await super().stream_send(event)
            return
        if isinstance(event, Response) and event.status_code >= 200:
            self.response_started = True
            close = await self._close_after_answer()
            if self.answered:
                return
            http11 = self.request is None or self.request.http_version != b"1.0"
            await self._send_h11_event(
                h11.Response(
                    status_code=event.status_code,
                    headers=_go_headers(event.headers, close and http11),
                    reason=status_text(event.status_code).encode("latin-1"),
                )
            )
            return
        await super().stream_send(event)

    async def _close_after_answer(self) -> bool:
        """Go's chunkWriter.writeHeader: may this connection serve another request?

        The unread rest of the body is read and dropped first, up to 256 KiB (hypercorn keeps
        reading it while the app answers); a known remainder over that closes at once.
        """
        request, conn = self.request, self.connection
        if request is None or not _wants_keep_alive(request):
            return True
        if conn.they_are_waiting_for_100_continue:
            return True  # Go: the client may or may not send its body now
        if conn.their_state is h11.DONE:
            return False
        length = None
        for k, v in request.headers:
            if k == b"content-length":
                with contextlib.suppress(ValueError):
                    length = int(v)
        if length is not None and length - (self.received - self.body_start) >= POST_HANDLER_DRAIN:
            return True
        budget = self.received + POST_HANDLER_DRAIN
        with trio.move_on_at(self.request_start + self.limits.read_timeout):
            while conn.their_state is h11.SEND_BODY and self.received <= budget:
                await self.progress.wait()
        return conn.their_state is not h11.DONE

    async def _send_h11_event(self, event: Any) -> None:
        if isinstance(event, h11.InformationalResponse) and event.status_code == 100:
            # hypercorn sends 100 Continue as soon as the head is read; Go when the handler
            # first reads the body. Give the app a moment to answer without it.
            if not self.continue_pending:
                self.continue_pending = True
                self.task_group.spawn(self._continue_later)
            return
        try:
            data = self.connection.send(event) or b""
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return
        if isinstance(event, h11.Response):
            if self.request is not None and self.request.http_version == b"1.0":
                # h11 writes HTTP/1.1 and "Connection: close" to a 1.0 client; Go writes
                # HTTP/1.0 and closes without saying so.
                data = b"HTTP/1.0" + data[8:].replace(b"\r\nConnection: close\r\n", b"\r\n")
            # Written with the first body bytes, in one send (as Go's buffered writer does).
            self.head = data
            return
        if self.head:
            if len(data) <= MAX_RECV:
                data = self.head + data
            else:
                await self.send(RawData(data=self.head))
            self.head = b""
        await self.send(RawData(data=data))

    async def _continue_later(self) -> None:
        await trio.sleep(EXPECT_CONTINUE_GRACE)
        if (
            not self.response_started
            and not self.answered
            and self.connection.they_are_waiting_for_100_continue
        ):
            await super()._send_h11_event(
                h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            )


class _GoTCPServer(TCPServer):
    """hypercorn's trio connection, with Go's read deadlines, write timeout and lingering close."""

    protocol: _GoH11Protocol  # type: ignore[assignment]

    def __init__(self, *args: Any, limits: HTTPLimits) -> None:
        super().__init__(*args)
        self.limits = limits
        self._closing = False
        self._linger_until = inf
        self._read_scope: trio.CancelScope | None = None
        # Go: the first request's head must arrive within read_header_timeout of the accept;
        # later ones within it of their first byte (before that, the idle timeout).
        self._head_start: float | None = trio.current_time()
        self._idle_since = 0.0

    async def run(self) -> None:
        sock = self.stream.socket
        try:
            client = parse_socket_addr(sock.family, sock.getpeername())
            server = parse_socket_addr(sock.family, sock.getsockname())
            async with TaskGroup() as task_group:
                self._task_group = task_group
                self.protocol = _GoH11Protocol(
                    self.app,
                    self.config,
                    self.context,
                    task_group,
                    ConnectionState(self.state),
                    False,
                    client,
                    server,
                    self.protocol_send,
                    limits=self.limits,
                )
                await self._read_data()
        except OSError:
            pass
        finally:
            await self._close()

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, RawData):
            if not event.data:
                return  # h11's bytes for the end of a Content-Length body
            async with self.send_lock:
                try:
                    # Shielded as in hypercorn (no half-written answer); write_timeout bounds
                    # each 64 KiB, not the whole answer: a slow reader is fine, a stalled one
                    # is dropped.
                    with trio.CancelScope(shield=True):
                        view = memoryview(event.data)
                        for start in range(0, len(view), MAX_RECV):
                            with trio.fail_after(self.limits.write_timeout):
                                await self.stream.send_all(view[start : start + MAX_RECV])
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                    with trio.CancelScope(shield=True):
                        await self.stream.aclose()  # ends the read loop too
                        await self.protocol.handle(Closed())
        elif isinstance(event, Closed):
            # hypercorn sends this (and Updated) from the app's task, which quart-trio cancels
            # once the answer is out (when it hears http.disconnect): unshielded, as in
            # hypercorn 0.18, the close never happened.
            with trio.CancelScope(shield=True):
                self._half_close()
                await self.protocol.handle(Closed())
        elif isinstance(event, Updated) and event.idle:
            # Between requests (hypercorn recycled the connection): the idle timeout.
            self._head_start = None
            self._idle_since = trio.current_time()
            if self._read_scope is not None:
                self._read_scope.deadline = self._read_deadline()

    def _half_close(self) -> None:
        # Go's closeWriteAndWait: FIN first; the read loop then reads and drops for a moment
        # before closing, so the client gets the answer rather than a reset.
        if self._closing:
            return
        self._closing = True
        self._linger_until = trio.current_time() + LINGER
        with contextlib.suppress(OSError):
            self.stream.socket.shutdown(socket.SHUT_WR)
        if self._read_scope is not None:
            self._read_scope.deadline = min(self._read_scope.deadline, self._linger_until)

    def _read_deadline(self) -> float:
        if self._closing:
            return self._linger_until
        state = self.protocol.connection.their_state
        if state is h11.IDLE:
            if self._head_start is None:
                return self._idle_since + self.limits.idle_timeout
            return self._head_start + self.limits.read_header_timeout
        if state is h11.SEND_BODY and not self.protocol.body_expired:
            return self.protocol.request_start + self.limits.read_timeout
        return inf

    async def _read_data(self) -> None:
        linger_left = LINGER_BYTES
        while True:
            try:
                with trio.CancelScope(deadline=self._read_deadline()) as scope:
                    self._read_scope = scope
                    data = await self.stream.receive_some(MAX_RECV)
                self._read_scope = None
            except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
                break
            if scope.cancelled_caught:
                if self._closing or not await self._read_timed_out():
                    break
                continue
            if self._closing:  # lingering: read and drop
                linger_left -= len(data)
                if not data or linger_left <= 0:
                    break
                continue
            idle = self.protocol.connection.their_state is h11.IDLE
            if data and self._head_start is None and idle:
                self._head_start = trio.current_time()
            await self.protocol.handle(RawData(bytes(data)))
            if not data:
                break
        await self.protocol.handle(Closed())

    async def _read_timed_out(self) -> bool:
        """A read deadline passed: True to keep the connection (and go on reading)."""
        protocol = self.protocol
        if protocol.connection.their_state is not h11.SEND_BODY:
            return False  # idle, or a head that never completed: Go closes without a word
        if protocol.response_started or protocol.answered:
            protocol.body_expired = True  # the drain before the answer gives up by itself
            return True
        await protocol.answer_and_close(go_error_response(408))
        return True  # now lingering

    async def _close(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.socket.shutdown(socket.SHUT_WR)
        with trio.CancelScope(shield=True):
            await self.stream.aclose()


def _go_head_error(exc: h11.RemoteProtocolError | None, status: int = 400) -> bytes:
    text = str(exc) if exc is not None else ""
    status = exc.error_status_hint if exc is not None else status
    if status == 431:
        return go_error_response(431)
    if status == 501 or "Transfer-Encoding" in text:
        # Go's isUnsupportedTEError answer: the status line, then a fixed text.
        return (
            b"HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Connection: close\r\n\r\nUnsupported transfer encoding"
        )
    return go_error_response(*_go_400(text))


def _go_400(text: str) -> tuple[int, str]:
    if "Host" in text and "multiple" in text.lower():
        return 400, "too many Host headers"
    if "Host" in text:
        return 400, "missing required Host header"
    return 400, ""


def _addr(sockname: Any) -> tuple[str, int]:
    return (str(sockname[0]), int(sockname[1]))


async def serve_http(
    app: Any,
    address: str,
    *,
    limits: HTTPLimits | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` (ASGI) on ``address`` ("host:port") with hypercorn until cancelled.

    ``task_status.started(binds)`` is called once the socket is listening and the app's
    lifespan startup has run; ``binds`` are the bound URLs (``["http://127.0.0.1:54321"]``),
    which tells a caller the port chosen for ``:0``. Cancellation closes the listener and open
    connections.
    """
    limits = limits or HTTPLimits()
    config = hypercorn_config(limits)
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    host, _, port = address.rpartition(":")
    listeners = await trio.open_tcp_listeners(int(port), host=host or None)
    binds = [
        f"http://{_addr(x.socket.getsockname())[0]}:{_addr(x.socket.getsockname())[1]}"
        for x in listeners
    ]
    limiter = ClientLimiter(limits.max_conns_per_client)
    lifespan_state: LifespanState = {}
    context = WorkerContext(None)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            ip = str(stream.socket.getpeername()[0])
        except OSError:
            await stream.aclose()
            return
        if not limiter.accept(ip):
            # go-connlimit: a 429 written with a 10 ms deadline, then close.
            with contextlib.suppress(Exception), trio.move_on_after(0.01):
                await stream.send_all(TOO_MANY_CONNS)
            with contextlib.suppress(Exception):
                await stream.aclose()
            return
        try:
            server = _GoTCPServer(
                wrapped, config, context, ConnectionState(lifespan_state.copy()), stream,
                limits=limits,
            )  # fmt: skip
            await server.run()
        except Exception:  # one connection's failure is never the server's
            log.exception("HTTP connection from %s failed", ip)
            with contextlib.suppress(Exception):
                await stream.aclose()
        finally:
            limiter.free(ip)

    async with trio.open_nursery() as nursery:
        lifespan = Lifespan(wrapped, config, lifespan_state)
        await nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        task_status.started(binds)
        await trio.serve_listeners(handle, listeners)


__all__ = [
    "HTTPLimits",
    "ClientLimiter",
    "TOO_MANY_CONNS",
    "canonical_header_key",
    "go_error_response",
    "hypercorn_config",
    "serve_http",
    "status_text",
    "valid_host_header",
]
