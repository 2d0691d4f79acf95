"""The live HTTP server (consim.http.serve) as Go's net/http behaves, checked with raw sockets.

The app is the real Consul API app over a FakeAgent; the server listens on 127.0.0.1:0 (a
kernel-chosen port, so no host block is needed). Socket work runs in threads (plain blocking
sockets with timeouts, what a script or curl would do) while trio serves.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import select
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from consim.http.app import create_app
from consim.http.serve import TOO_MANY_CONNS, HTTPLimits, serve_http

KV_ENTRY = {"Key": "x", "Value": b"v", "CreateIndex": 1, "ModifyIndex": 1}
META = {"Index": 7, "LastContact": 0, "KnownLeader": True, "ConsistencyLevel": "leader"}
REPO = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def live(agent: Any, limits: HTTPLimits | None = None) -> AsyncIterator[int]:
    agent.replies["KVS.Get"] = {"Entries": [KV_ENTRY], "QueryMeta": META}
    agent.replies["KVS.Apply"] = {"Result": True, "Index": 3}
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            lambda task_status: serve_http(
                create_app(agent), "127.0.0.1:0", limits=limits, task_status=task_status
            )
        )
        yield int(binds[0].rsplit(":", 1)[1])
        nursery.cancel_scope.cancel()


def connect(port: int, source: str | None = None, timeout: float = 5.0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_response(s: socket.socket) -> tuple[bytes, dict[str, str], bytes]:
    """One response: (status line, headers by lower-case name, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return lines[0], headers, body


def closed_by_server(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await trio.to_thread.run_sync(fn)


GET = b"GET /v1/kv/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


# --------------------------------------------------------------------------- the wire format


async def test_status_line_has_reason_and_header_names_are_canonical(agent):
    async with live(agent) as port:
        raw = await in_thread(lambda: _raw_head(port, GET))
    lines = raw.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    names = [line.split(b":", 1)[0] for line in lines[1:]]
    # Go: the handler's headers sorted by name, then Date and Content-Length.
    assert names == [
        b"Content-Type",
        b"Vary",  # Consul's gzip handler adds it to every API answer
        b"X-Consul-Default-Acl-Policy",
        b"X-Consul-Effective-Consistency",
        b"X-Consul-Index",
        b"X-Consul-Knownleader",
        b"X-Consul-Lastcontact",
        b"Date",
        b"Content-Length",
    ]
    assert b"X-Consul-Index: 7" in lines
    assert b"X-Consul-Default-Acl-Policy: allow" in lines
    assert b"Vary: Accept-Encoding" in lines


async def test_large_answers_are_gzipped_when_the_client_asks(agent):
    # 200 keys: a body well over gziphandler's 1400-byte minimum
    agent.replies["KVS.ListKeys"] = {"Keys": [f"key/{i:04d}" for i in range(200)]}
    ask = b"GET /v1/kv/?keys HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n"
    plain = b"GET /v1/kv/?keys HTTP/1.1\r\nHost: a\r\n\r\n"
    async with live(agent) as port:
        gz = await in_thread(lambda: _one(port, ask))
        raw = await in_thread(lambda: _one(port, plain))
    assert gz[0] == raw[0] == b"HTTP/1.1 200 OK"
    assert gz[1]["content-encoding"] == "gzip" and "content-encoding" not in raw[1]
    assert gz[1]["vary"] == raw[1]["vary"] == "Accept-Encoding"
    assert int(gz[1]["content-length"]) == len(gz[2]) < len(raw[2])
    assert gzip.decompress(gz[2]) == raw[2]
    assert json.loads(raw[2])[0] == "key/0000"


def _one(port: int, request: bytes) -> tuple[bytes, dict[str, str], bytes]:
    with connect(port) as s:
        s.sendall(request)
        return read_response(s)


def _raw_head(port: int, request: bytes) -> bytes:
    with connect(port) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        return data.split(b"\r\n\r\n")[0]


async def test_default_acl_policy_header_follows_the_agent(agent):
    agent.default_acl_policy = "deny"
    async with live(agent) as port:
        raw = await in_thread(lambda: _raw_head(port, GET))
        not_api = await in_thread(lambda: _raw_head(port, b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert b"X-Consul-Default-Acl-Policy: deny" in raw.split(b"\r\n")
    # Consul's Index handler (not wrap) answers unknown paths: no policy header there.
    assert not_api.startswith(b"HTTP/1.1 404 Not Found") and b"Acl-Policy" not in not_api


# --------------------------------------------------------------------------- connections


async def test_connection_close_is_honoured(agent):
    async with live(agent) as port:

        def go() -> tuple[bytes, str, bool]:
            with connect(port) as s:
                s.sendall(b"GET /v1/kv/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                status, headers, _ = read_response(s)
                return status, headers.get("connection", ""), closed_by_server(s, 3)

        status, connection, closed = await in_thread(go)
    assert (status, connection, closed) == (b"HTTP/1.1 200 OK", "close", True)


async def test_keep_alive_serves_many_then_idle_connections_are_closed(agent):
    async with live(agent, HTTPLimits(idle_timeout=0.5)) as port:

        def go() -> tuple[list[bytes], bool, float]:
            with connect(port) as s:
                statuses = []
                for _ in range(3):  # the same connection, as a keep-alive client does
                    time.sleep(0.2)  # under the idle timeout: kept
                    s.sendall(GET)
                    statuses.append(read_response(s)[0])
                answered = time.monotonic()
                closed = closed_by_server(s, 5)
                return statuses, closed, time.monotonic() - answered

        statuses, closed, after = await in_thread(go)
    assert statuses == [b"HTTP/1.1 200 OK"] * 3
    # The idle timeout runs from the end of the last answer (which the server finished writing
    # a moment before the client read it).
    assert closed and 0.4 < after < 3


async def test_partial_body_times_out_with_408(agent):
    async with live(agent, HTTPLimits(read_timeout=0.5)) as port:

        def go() -> tuple[bytes, bytes, bool]:
            with connect(port) as s:
                s.sendall(b"PUT /v1/kv/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
                status, _, body = read_response(s)
                return status, body, closed_by_server(s, 3)

        status, body, closed = await in_thread(go)
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert body == b"408 Request Timeout"
    assert closed
    assert not [c for c in agent.calls if c[0] == "KVS.Apply"]


async def test_unread_small_body_is_drained_and_the_connection_reused(agent):
    async with live(agent) as port:

        def go() -> list[bytes]:
            with connect(port) as s:
                # GET ignores its body; 100 KB is under Go's 256 KiB post-handler drain.
                s.sendall(
                    b"GET /v1/kv/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n"
                    + b"a" * 100000
                )
                first = read_response(s)[0]
                s.sendall(GET)
                return [first, read_response(s)[0]]

        assert await in_thread(go) == [b"HTTP/1.1 200 OK"] * 2


async def test_early_answer_to_a_large_body_closes_instead_of_hanging(agent):
    async with live(agent) as port:

        def go() -> tuple[bytes, str, bool]:
            with connect(port) as s:
                s.sendall(
                    b"PUT /v1/kv/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n"
                    + b"a" * 1000
                )
                status, headers, _ = read_response(s)
                try:  # the rest of the body and a next request: never answered, never hung
                    s.sendall(b"a" * 999000 + GET)
                except OSError:
                    return status, headers.get("connection", ""), True
                return status, headers.get("connection", ""), closed_by_server(s, 5)

        status, connection, closed = await in_thread(go)
    assert status == b"HTTP/1.1 413 Request Entity Too Large"
    assert connection == "close" and closed


async def test_expect_continue_answered_without_the_body_when_it_is_too_large(agent):
    async with live(agent) as port:

        def too_large() -> bytes:
            with connect(port) as s:
                s.sendall(
                    b"PUT /v1/kv/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n"
                    b"Expect: 100-continue\r\n\r\n"
                )
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                return data

        def small() -> list[bytes]:
            with connect(port) as s:
                s.sendall(
                    b"PUT /v1/kv/y HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                    b"Expect: 100-continue\r\n\r\n"
                )
                interim = s.recv(65536)
                s.sendall(b"hello")
                return [interim, read_response(s)[2]]

        refused = await in_thread(too_large)
        accepted = await in_thread(small)
    # Go (and Consul's KV handler, which checks Content-Length first): no 100 Continue, the 413,
    # and the connection closed; the client never has to send its megabyte.
    assert refused.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n"), refused[:80]
    assert b"100 Continue" not in refused and b"Connection: close" in refused
    assert accepted == [b"HTTP/1.1 100 Continue\r\n\r\n", b"true"]
    assert agent.last_args["DirEnt"]["Value"] == b"hello"


def _chunked_put(port: int, size: int) -> tuple[bytes, bytes]:
    with connect(port, timeout=30) as s:
        s.sendall(b"PUT /v1/kv/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = 64 * 1024
        try:
            for _ in range(size // chunk):
                s.sendall(b"%x\r\n" % chunk + b"a" * chunk + b"\r\n")
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed: the answer is still there to read
        status, _, body = read_response(s)
        return status, body


async def test_chunked_kv_values_over_the_limit_get_413_and_are_not_stored(agent):
    async with live(agent) as port:
        results = [await in_thread(lambda n=n: _chunked_put(port, n)) for n in (1 << 20, 20 << 20)]
    text = (
        b"Request body too large, max size: 524288 bytes. See "
        b"https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size."
    )
    assert results == [(b"HTTP/1.1 413 Request Entity Too Large", text)] * 2
    assert not [c for c in agent.calls if c[0] == "KVS.Apply"]


async def test_chunked_value_under_the_limit_is_stored(agent):
    async with live(agent) as port:
        status, body = await in_thread(lambda: _chunked_put(port, 256 * 1024))
    assert (status, body) == (b"HTTP/1.1 200 OK", b"true")
    assert len(agent.last_args["DirEnt"]["Value"]) == 256 * 1024


async def test_long_host_is_served_and_a_malformed_one_gets_gos_400(agent):
    async with live(agent) as port:

        def go(host: bytes) -> tuple[bytes, bytes]:
            with connect(port) as s:
                s.sendall(b"GET /v1/kv/x HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
                status, _, body = read_response(s)
                return status, body

        long_host = await in_thread(lambda: go(b"h" * 20000))
        bad_host = await in_thread(lambda: go(b"a/b"))
    assert long_host[0] == b"HTTP/1.1 200 OK" and long_host[1].startswith(b'[{"Key":"x"')
    assert bad_host == (
        b"HTTP/1.1 400 Bad Request: malformed Host header",
        b"400 Bad Request: malformed Host header",
    )
    assert agent.internal_errors == []


@pytest.mark.parametrize(
    "request_bytes, status_line, body",
    [
        (
            b"GET /v1/kv/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"HTTP/1.1 400 Bad Request: too many Host headers",
            b"400 Bad Request: too many Host headers",
        ),
        (
            b"GET /v1/kv/x HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 400 Bad Request: missing required Host header",
            b"400 Bad Request: missing required Host header",
        ),
        (
            b"GET /v1/kv/x HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n",
            b"HTTP/1.1 400 Bad Request",
            b"400 Bad Request",
        ),
        (
            b"GET /v1/kv/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 501 Not Implemented",
            b"Unsupported transfer encoding",
        ),
        (
            b"GET /v1/kv/x HTTP/2.0\r\nHost: a\r\n\r\n",
            b"HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version",
            b"505 HTTP Version Not Supported: unsupported protocol version",
        ),
        (
            b"GET /v1/kv/x HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * (2 << 20) + b"\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large",
            b"431 Request Header Fields Too Large",
        ),
        (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", b"HTTP/1.1 200 OK", b""),
        (b"GET /v1/kv/x HTTP/1.0\r\n\r\n", b"HTTP/1.0 200 OK", None),
        (
            # Go's server without TLS speaks no HTTP/2: an h2c upgrade is answered in HTTP/1.1,
            b"GET /v1/kv/x?raw HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n"
            b"Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
            b"HTTP/1.1 200 OK",
            b"v",
        ),
        (  # and the HTTP/2 preface is a version it does not support.
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version",
            b"505 HTTP Version Not Supported: unsupported protocol version",
        ),
    ],
    ids=[
        "two-hosts",
        "no-host",
        "bad-length",
        "gzip-te",
        "http2",
        "huge-header",
        "options-star",
        "http10",
        "h2c-upgrade",
        "h2-preface",
    ],
)
async def test_requests_the_server_answers_itself_get_gos_texts(
    agent, request_bytes, status_line, body
):
    async with live(agent) as port:

        def go() -> tuple[bytes, dict[str, str], bytes]:
            with connect(port) as s:
                # (the huge header may be answered and closed before it is all sent)
                with contextlib.suppress(OSError):
                    s.sendall(request_bytes)
                return read_response(s)

        got_status, headers, got_body = await in_thread(go)
    assert got_status == status_line
    if body is not None:
        assert got_body == body
    assert agent.internal_errors == []


async def test_http10_answer_closes_without_saying_so(agent):
    async with live(agent) as port:

        def go() -> tuple[bytes, dict[str, str], bytes, bool]:
            with connect(port) as s:
                s.sendall(b"GET /v1/kv/x?raw HTTP/1.0\r\n\r\n")
                status, headers, body = read_response(s)
                return status, headers, body, closed_by_server(s, 3)

        status, headers, body, closed = await in_thread(go)
    # Go: "HTTP/1.0" on the status line, and no Connection header (1.0 closes by default).
    assert (status, body, closed) == (b"HTTP/1.0 200 OK", b"v", True)
    assert "connection" not in headers


async def test_connections_per_client_ip_are_limited_like_consul(agent):
    assert HTTPLimits().max_conns_per_client == 200  # limits.http_max_conns_per_client
    async with live(agent, HTTPLimits(max_conns_per_client=5)) as port:

        def go() -> tuple[bytes, bytes, bytes]:
            held = [connect(port) for _ in range(5)]
            for s in held:  # each is accepted and served
                s.sendall(GET)
                assert read_response(s)[0] == b"HTTP/1.1 200 OK"
            with connect(port) as sixth:
                refused = b""
                while chunk := sixth.recv(65536):
                    refused += chunk
            with connect(port, source="127.0.0.7") as other:  # another client IP is served
                other.sendall(GET)
                other_status = read_response(other)[0]
            held.pop().close()
            deadline = time.monotonic() + 5
            while True:  # a freed slot is usable again (once the server has seen the close)
                with connect(port) as again:
                    try:
                        again.sendall(GET)
                        again_status = read_response(again)[0]
                    except OSError:  # refused and closed before the read
                        again_status = b"HTTP/1.1 429"
                # A 429: the server has not processed the close yet.
                if not again_status.startswith(b"HTTP/1.1 429") or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            for s in held:
                s.close()
            return refused, other_status, again_status

        refused, other_status, again_status = await in_thread(go)
    assert refused == TOO_MANY_CONNS
    assert refused.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert refused.endswith(
        b"Your IP is issuing too many concurrent connections, please rate limit your calls\n"
    )
    assert other_status == again_status == b"HTTP/1.1 200 OK"


async def test_a_client_that_goes_away_cancels_its_blocking_query(agent):
    cancelled = trio.Event()

    class Blocking(type(agent)):
        async def rpc(self, method, args):
            try:
                await trio.sleep(600)  # a blocking query with ?wait=10m
            finally:
                cancelled.set()

    blocking = Blocking()
    async with live(blocking, HTTPLimits(max_conns_per_client=1)) as port:

        def ask_and_leave() -> None:
            with connect(port) as s:
                s.sendall(b"GET /v1/kv/x?index=5&wait=10m HTTP/1.1\r\nHost: a\r\n\r\n")
                time.sleep(0.3)

        await in_thread(ask_and_leave)
        with trio.fail_after(5):
            await cancelled.wait()  # Go cancels the request's context on the client's EOF

        def next_client() -> bytes:
            deadline = time.monotonic() + 3
            while True:  # the one slot of this client IP is freed as the connection closes
                with connect(port) as s:
                    s.sendall(b"GET /v1/agent/self HTTP/1.1\r\nHost: a\r\n\r\n")
                    answer = s.recv(65536)
                if not answer.startswith(b"HTTP/1.1 429") or time.monotonic() > deadline:
                    return answer
                time.sleep(0.05)

        answer = await in_thread(next_client)
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer


async def test_a_client_that_stops_reading_is_dropped_after_the_write_timeout(agent):
    size = 32 << 20
    async with live(agent, HTTPLimits(write_timeout=0.5)) as port:
        agent.replies["KVS.Get"] = {
            "Entries": [{"Key": "big", "Value": b"v" * size}],
            "QueryMeta": META,
        }

        def stall_then_read() -> int:
            with connect(port, timeout=10) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.sendall(b"GET /v1/kv/big?raw HTTP/1.1\r\nHost: a\r\n\r\n")
                time.sleep(2)  # not reading: the server's writes stall past write_timeout
                got = 0
                try:
                    while chunk := s.recv(1 << 20):
                        got += len(chunk)
                except ConnectionResetError:
                    pass
                return got

        got = await in_thread(stall_then_read)
        # The connection was dropped mid-answer (a server without a write timeout sends it all).
        assert got < size

        def next_request() -> bytes:
            with connect(port) as s:
                s.sendall(b"GET /v1/agent/self HTTP/1.1\r\nHost: a\r\n\r\n")
                return s.recv(65536)

        assert (await in_thread(next_request)).startswith(b"HTTP/1.1 200 OK")


# --------------------------------------------------------------------------- in a subprocess

SERVER = textwrap.dedent(
    """
    import resource, sys, trio
    sys.path.insert(0, {tests!r})
    from conftest import FakeAgent
    from consim.http.app import create_app
    from consim.http.serve import serve_http
    nofile = int(sys.argv[1])
    if nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    agent = FakeAgent()
    agent.replies["KVS.Get"] = {{"Entries": [{{"Key": "x", "Value": b"v"}}], "QueryMeta": {{"Index": 7}}}}
    agent.replies["keyring"] = []
    async def main():
        async with trio.open_nursery() as n:
            binds = await n.start(serve_http, create_app(agent), "127.0.0.1:0")
            print(binds[0].rsplit(":", 1)[1], flush=True)
    trio.run(main)
    """
)


@asynccontextmanager
async def server_process(nofile: int = 0) -> AsyncIterator[tuple[int, int]]:
    code = SERVER.format(tests=str(REPO / "tests" / "http"))
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(nofile)], stdout=subprocess.PIPE, cwd=REPO
    )
    try:
        assert proc.stdout is not None
        port = int(await trio.to_thread.run_sync(proc.stdout.readline))
        yield proc.pid, port
    finally:
        proc.kill()
        proc.wait()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_many_held_connections_under_a_low_fd_limit_do_not_stop_other_clients():
    # ulimit -n 400 in the server, 420 connections held by one client: the per-client limit
    # (200) turns the rest away, so the server keeps descriptors for everyone else.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1024:  # this process holds the 420 client ends
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    async with server_process(nofile=400) as (_pid, port):

        def go() -> tuple[int, int, bytes]:
            held = [connect(port) for _ in range(420)]
            refused = 0
            pending = set(held)
            deadline = time.monotonic() + 20
            # The refused ones get a 429 and are closed; the accepted ones hear nothing.
            while refused < 220 and time.monotonic() < deadline:
                ready, _, _ = select.select(list(pending), [], [], 0.5)
                for s in ready:
                    pending.discard(s)
                    try:
                        if s.recv(65536).startswith(b"HTTP/1.1 429"):
                            refused += 1
                    except OSError:
                        pass
            with connect(port, source="127.0.0.9") as other:
                other.sendall(GET)
                status = read_response(other)[0]
            for s in held:
                s.close()
            return len(held), refused, status

        held, refused, status = await in_thread(go)
    assert held == 420
    assert refused == 220
    assert status == b"HTTP/1.1 200 OK"


async def test_large_keyring_bodies_are_not_read_into_memory():
    body = b'{"Key": "' + b"a" * (10 << 20) + b'"}'
    async with server_process() as (pid, port):

        def post() -> bytes:
            with connect(port, timeout=30) as s:
                s.sendall(
                    b"POST /v1/operator/keyring HTTP/1.1\r\nHost: a\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                try:
                    for i in range(0, len(body), 1 << 16):
                        piece = body[i : i + (1 << 16)]
                        s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                    s.sendall(b"0\r\n\r\n")
                except OSError:
                    pass
                return read_response(s)[2]

        def get() -> bytes:
            with connect(port) as s:
                s.sendall(GET)
                return read_response(s)[0]

        assert await in_thread(get) == b"HTTP/1.1 200 OK"
        before = rss_kib(pid)
        answers = []
        async with trio.open_nursery() as nursery:
            for _ in range(3):

                async def one() -> None:
                    answers.append(await in_thread(post))

                nursery.start_soon(one)
        after = rss_kib(pid)
    assert answers == [b"Request decode failed: http: request body too large"] * 3
    # Three 10 MB bodies held would be 30 MB and more; capped reads stay well under that.
    assert after - before < 12 * 1024, (before, after)
