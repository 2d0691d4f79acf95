"""Serving an ASGI app on a real port (live mode): a small HTTP/1.1 server, h11 on trio.

Consul serves its API with Go's ``net/http``; this module reproduces what a client can see of that
server, which hypercorn does not (it keeps answered connections open, even after
``Connection: close``, answers a slow body with a 500, leaves the rest of an unread body to be
parsed as the next request, writes lower-case header names and no reason phrase):

- the status line carries Go's reason phrase (``HTTP/1.1 200 OK``); header names are written in
  Go's canonical form (``X-Consul-Index``), the handler's headers sorted by name, then ``Date``,
  ``Content-Length`` and ``Connection``, as ``net/http`` writes them;
- ``Connection: close`` (or HTTP/1.0) closes after the answer; Go-style lingering close: the
  write side is shut first and what the client still sends is read and dropped for a moment, so
  the answer is not lost to a reset;
- the rest of a body the app did not read is drained up to 256 KiB (Go's
  ``maxPostHandlerReadBytes``); beyond that the answer says ``Connection: close`` and the
  connection is closed, so the next request on it never hangs;
- malformed requests get Go's plain-text answers (``400 Bad Request``, ``400 Bad Request:
  missing required Host header``, ``431 Request Header Fields Too Large``), Host is validated
  as Go's ``httpguts.ValidHostHeader`` does;
- Consul's ``limits.http_max_conns_per_client`` (default 200) per client IP, enforced like
  hashicorp/go-connlimit: the connection over the limit gets ``429 Too Many Requests`` with
  ``Your IP is issuing too many concurrent connections, please rate limit your calls`` and is
  closed;
- timeouts (:class:`HTTPLimits`). Consul sets none on its ``http.Server`` (a Go server with none
  keeps an idle or half-sent connection forever); consim uses Go's semantics with bounded
  defaults so that one client cannot pin file descriptors: ``read_header_timeout`` (10 s, from
  the first byte of a request to the end of its head), ``read_timeout`` (30 s for the body, then
  ``408 Request Timeout``), ``idle_timeout`` (60 s between requests on a keep-alive
  connection), ``write_timeout`` (30 s without progress sending an answer). There is no total
  write deadline: Consul's blocking queries answer after up to 10 minutes.

Request bodies reach the app only as it asks for them (ASGI ``receive``), so a body limit in the
app bounds memory before anything is buffered here.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import h11
import trio

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


def response_head(
    status: int,
    headers: list[tuple[bytes, bytes]],
    body_length: int | None,
    close: bool,
    http10: bool = False,
) -> bytes:
    """The status line and headers as Go's ``net/http`` writes them (``HTTP/1.0`` to 1.0)."""
    own: dict[str, list[str]] = {}
    for raw_name, raw_value in headers:
        name = canonical_header_key(raw_name.decode("latin-1"))
        if name in ("Content-Length", "Connection", "Date", "Transfer-Encoding"):
            continue  # the server's to write
        own.setdefault(name, []).append(raw_value.decode("latin-1"))
    lines = [f"HTTP/{'1.0' if http10 else '1.1'} {status} {status_text(status)}"]
    for name in sorted(own):
        lines.extend(f"{name}: {value}" for value in own[name])
    lines.append(f"Date: {formatdate(usegmt=True)}")
    if body_length is not None:
        lines.append(f"Content-Length: {body_length}")
    if close and not http10:  # Go: an HTTP/1.0 answer closes without saying so
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _has_body(method: str, status: int) -> bool:
    return method != "HEAD" and status >= 200 and status not in (204, 304)


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


class _Timeout(Exception):
    pass


class _Closed(Exception):
    pass


# --------------------------------------------------------------------------- one connection

App = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[..., Any]], Any]


class _Connection:
    def __init__(self, stream: trio.SocketStream, app: Any, limits: HTTPLimits) -> None:
        self.stream = stream
        self.app = app
        self.limits = limits
        self.h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=limits.max_header_bytes + 4096
        )
        sock = stream.socket
        self.client = _addr(sock.getpeername())
        self.server = _addr(sock.getsockname())

    # -- reading ------------------------------------------------------------------------------

    async def _receive_into_h11(self, deadline: float) -> None:
        try:
            with trio.fail_at(deadline):
                data = await self.stream.receive_some(MAX_RECV)
        except trio.TooSlowError:
            raise _Timeout() from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            raise _Closed() from None
        self.h11.receive_data(bytes(data))

    async def _next_event(self, deadline: float) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            await self._receive_into_h11(deadline)

    async def _send(self, data: bytes) -> None:
        try:
            # write_timeout bounds each 64 KiB, not the whole answer: a slow reader of a large
            # answer is fine, a stalled one is dropped.
            view = memoryview(data)
            for start in range(0, len(view), MAX_RECV):
                with trio.fail_after(self.limits.write_timeout):
                    await self.stream.send_all(view[start : start + MAX_RECV])
        except trio.TooSlowError:
            raise _Closed() from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            raise _Closed() from None

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        first = True
        try:
            while True:
                keep_alive = await self._one_request(first)
                if not keep_alive:
                    break
                self.h11.start_next_cycle()
                first = False
        except (_Closed, _Timeout):
            pass
        await self._linger_close()

    async def _one_request(self, first: bool) -> bool:
        limits = self.limits
        # Between requests: the idle timeout, until the first byte of the next one.
        if not self.h11.trailing_data[0] and not first:
            try:
                await self._receive_into_h11(trio.current_time() + limits.idle_timeout)
            except _Timeout:
                return False  # Go closes an idle connection without a word
        deadline = trio.current_time() + limits.read_header_timeout
        try:
            event = await self._next_event(deadline)
        except h11.RemoteProtocolError as exc:
            await self._send(_go_head_error(exc))
            return False
        except _Timeout:
            return False  # Go: a request head that never completes is closed, not answered
        if isinstance(event, h11.ConnectionClosed) or not isinstance(event, h11.Request):
            return False
        head_size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
        if head_size > self.limits.max_header_bytes + 4096:
            # Go reads a head through a LimitReader of MaxHeaderBytes + 4096; h11 checks its
            # limit only while a head is incomplete, so one that arrives whole is measured here.
            await self._send(go_error_response(431))
            return False
        if event.http_version not in (b"1.0", b"1.1"):
            await self._send(go_error_response(505, "unsupported protocol version"))
            return False
        if event.target == b"*" and event.method == b"OPTIONS":
            # Go's globalOptionsHandler: 200, no body, nothing for the app.
            await self._send(response_head(200, [], 0, False))
            self.h11.send(h11.Response(status_code=200, headers=[(b"content-length", b"0")]))
            self.h11.send(h11.EndOfMessage())
            return await self._drain_after_options(event)
        hosts = [v for k, v in event.headers if k == b"host"]
        if len(hosts) == 1 and not valid_host_header(hosts[0].decode("latin-1")):
            await self._send(go_error_response(400, "malformed Host header"))
            return False
        return await self._run_app(event)

    async def _drain_after_options(self, request: h11.Request) -> bool:
        if not _wants_keep_alive(request):
            return False
        deadline = trio.current_time() + self.limits.read_timeout
        ok = await self._drain(request, 0, deadline)
        return ok and self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    async def _run_app(self, request: h11.Request) -> bool:
        limits = self.limits
        method = request.method.decode("ascii", "replace").upper()
        target = request.target
        if not target.startswith(b"/") and b"://" in target:  # absolute-form
            target = b"/" + target.split(b"://", 1)[1].partition(b"/")[2]
        raw_path, _, query = target.partition(b"?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode("ascii"),
            "method": method,
            "scheme": "http",
            "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": [(k, v) for k, v in request.headers],
            "client": self.client,
            "server": self.server,
            "extensions": {},
        }
        body_deadline = trio.current_time() + limits.read_timeout
        state = {
            "body_done": False,
            "timed_out": False,
            "bad_body": False,
            "started": False,
            "gone": False,
            "peer_eof": False,
        }
        delivered = 0  # body bytes handed to the app
        response_started = trio.Event()
        response_done = trio.Event()
        body_done = trio.Event()
        status = 500
        out_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            if state["body_done"]:
                await response_done.wait()
                return {"type": "http.disconnect"}
            if self.h11.they_are_waiting_for_100_continue:
                # Go sends 100 Continue when the handler first reads the body. Quart asks for
                # it at once, so let the handler answer first if it will (a 413 for a
                # Content-Length over the limit): then the client never sends the body.
                with trio.move_on_after(EXPECT_CONTINUE_GRACE):
                    await response_started.wait()
                if response_started.is_set():
                    await response_done.wait()
                    return {"type": "http.disconnect"}
                await self._send(b"HTTP/1.1 100 Continue\r\n\r\n")
                # Tell h11 too, so it stops waiting for us.
                self.h11.send(h11.InformationalResponse(status_code=100, headers=[]))
            try:
                event = await self._next_event(body_deadline)
            except _Timeout:
                state["timed_out"] = True
                app_scope.cancel()
                await trio.sleep_forever()
            except (_Closed, h11.RemoteProtocolError):
                state["bad_body"] = True
                app_scope.cancel()
                await trio.sleep_forever()
            if isinstance(event, h11.Data):
                nonlocal delivered
                delivered += len(event.data)
                return {"type": "http.request", "body": bytes(event.data), "more_body": True}
            state["body_done"] = True
            body_done.set()
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                out_headers.extend(message.get("headers", []))
                state["started"] = True
                response_started.set()
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))
                if not message.get("more_body", False):
                    response_done.set()

        async def watch_for_disconnect() -> None:
            # Go's backgroundRead: once the body is read, a client that goes away cancels the
            # request (a blocking query would otherwise hold the connection for minutes).
            # Bytes that arrive instead (a pipelined request) are kept for the next cycle.
            await body_done.wait()
            while len(self.h11.trailing_data[0]) < limits.max_header_bytes:
                try:
                    data = await self.stream.receive_some(MAX_RECV)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    data = b""
                if not data:
                    if response_done.is_set():  # a half-close after the answer: still send it
                        state["peer_eof"] = True
                        return
                    state["gone"] = True
                    app_scope.cancel()
                    return
                self.h11.receive_data(bytes(data))

        with trio.CancelScope() as app_scope:
            async with trio.open_nursery() as watch:
                watch.start_soon(watch_for_disconnect)
                try:
                    await self.app(scope, receive, send)
                except Exception:  # the app answers its own errors; a bug, not the client's
                    log.exception("HTTP app failed on %s %s", method, scope["path"])
                    if not state["started"]:
                        status, out_headers, chunks = 500, [], []
                        state["started"] = True
                        response_done.set()
                watch.cancel_scope.cancel()
        if state["gone"]:
            raise _Closed()
        if state["timed_out"] and not response_done.is_set():
            await self._send(go_error_response(408))
            return False
        if state["bad_body"] and not response_done.is_set():
            await self._send(go_error_response(400))
            return False
        if not response_done.is_set():
            # The app ended without an answer (Go: the handler returned without writing: 200).
            status, chunks = (500, []) if not state["started"] else (status, chunks)
        close = not _wants_keep_alive(request) or state["peer_eof"]
        if self.h11.they_are_waiting_for_100_continue:
            # Go: a client that wanted 100 Continue and never got it may or may not send its
            # body now; the connection cannot be reused.
            close = True
        elif not state["body_done"] and not (state["timed_out"] or state["bad_body"]):
            close = close or not await self._drain(request, delivered, body_deadline)
        elif state["timed_out"] or state["bad_body"]:
            close = True
        body = b"".join(chunks)
        has_body = _has_body(method, status)
        length = None if status < 200 or status in (204, 304) else len(body)
        h11_headers = [(b"content-length", str(len(body) if has_body else 0).encode())]
        if close:
            h11_headers.append((b"connection", b"close"))
        try:
            self.h11.send(h11.Response(status_code=status, headers=h11_headers))
            if has_body and body:
                self.h11.send(h11.Data(data=body))
            self.h11.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            close = True
        await self._send(
            response_head(status, out_headers, length, close, request.http_version == b"1.0")
            + (body if has_body else b"")
        )
        return not close and self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    async def _drain(self, request: h11.Request, delivered: int, body_deadline: float) -> bool:
        """Read and drop what is left of the request body, up to Go's 256 KiB; True if all read."""
        remaining = None
        for k, v in request.headers:
            if k == b"content-length":
                with contextlib.suppress(ValueError):
                    remaining = int(v)
        if remaining is not None and remaining - delivered >= POST_HANDLER_DRAIN:
            return False
        budget = POST_HANDLER_DRAIN + 1
        deadline = min(body_deadline, trio.current_time() + self.limits.read_timeout)
        try:
            while budget > 0:
                event = await self._next_event(deadline)
                if isinstance(event, h11.Data):
                    budget -= len(event.data)
                    continue
                return isinstance(event, h11.EndOfMessage)
        except (_Timeout, _Closed, h11.RemoteProtocolError):
            return False
        return False

    async def _linger_close(self) -> None:
        # Go's closeWriteAndWait: FIN first, then read and drop for a moment before closing, so
        # the client gets our answer rather than a reset for the bytes it was still sending.
        with contextlib.suppress(Exception):
            self.stream.socket.shutdown(socket.SHUT_WR)
            with trio.move_on_after(LINGER):
                left = LINGER_BYTES
                while left > 0:
                    data = await self.stream.receive_some(MAX_RECV)
                    if not data:
                        break
                    left -= len(data)
        with contextlib.suppress(Exception):
            await self.stream.aclose()


def _wants_keep_alive(request: h11.Request) -> bool:
    if request.http_version < b"1.1":
        return False  # h11 closes HTTP/1.0 connections
    for k, v in request.headers:
        if k == b"connection" and b"close" in [t.strip().lower() for t in v.split(b",")]:
            return False
    return True


def _go_head_error(exc: h11.RemoteProtocolError) -> bytes:
    text = str(exc)
    status = exc.error_status_hint
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


# --------------------------------------------------------------------------- the server


async def serve_http(
    app: Any,
    address: str,
    *,
    limits: HTTPLimits | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` (ASGI) on ``address`` ("host:port") until cancelled.

    ``task_status.started(binds)`` is called once the socket is listening; ``binds`` are the
    bound URLs (``["http://127.0.0.1:54321"]``), which tells a caller the port chosen for ``:0``.
    Cancellation closes the listener and open connections.
    """
    limits = limits or HTTPLimits()
    host, _, port = address.rpartition(":")
    listeners = await trio.open_tcp_listeners(int(port), host=host or None)
    binds = []
    for listener in listeners:
        name = listener.socket.getsockname()
        binds.append(f"http://{name[0]}:{name[1]}")
    limiter = ClientLimiter(limits.max_conns_per_client)

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
            await _Connection(stream, app, limits).run()
        except Exception:  # one connection's failure is never the server's
            log.exception("HTTP connection from %s failed", ip)
            with contextlib.suppress(Exception):
                await stream.aclose()
        finally:
            limiter.free(ip)

    async with trio.open_nursery() as nursery:
        await _lifespan_startup(app, nursery)
        task_status.started(binds)
        await trio.serve_listeners(handle, listeners)


async def _lifespan_startup(app: Any, nursery: trio.Nursery) -> None:
    """ASGI lifespan: run the app's startup (Quart's before_serving, quart-trio's nursery) first.

    The app's lifespan task lives as long as the server; shutdown is its cancellation.
    """
    started = trio.Event()
    sent_startup = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_startup
        if not sent_startup:
            sent_startup = True
            return {"type": "lifespan.startup"}
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] in ("lifespan.startup.complete", "lifespan.startup.failed"):
            if message["type"] == "lifespan.startup.failed":
                log.error("HTTP app startup failed: %s", message.get("message", ""))
            started.set()

    async def run() -> None:
        with contextlib.suppress(Exception):  # an app without lifespan support: serve it anyway
            await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        started.set()

    nursery.start_soon(run)
    await started.wait()


__all__ = [
    "HTTPLimits",
    "ClientLimiter",
    "TOO_MANY_CONNS",
    "canonical_header_key",
    "go_error_response",
    "response_head",
    "serve_http",
    "status_text",
    "valid_host_header",
]
