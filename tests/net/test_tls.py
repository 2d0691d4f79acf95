"""TLS on the port mux (consim.net.tls), on both networks: a sans-IO handler behind TLS at both
ends (the dialer wrapped by ``Network.outgoing_tls``, the listener by ``serve_tls``), and the
verify_incoming gate refusing plaintext."""

from __future__ import annotations

from typing import Any

import trio

from consim.net.portmux import RPC_RAFT, RPC_TLS, ConnHandler, MuxConn
from consim.net.tls import ClientWrapper, serve_tls
from consim.tls.config import TLSConfig
from tests.net.conftest import Env, wait_for
from tests.net.test_network import echo
from tests.net.test_portmux import Recorder

CONFIG = TLSConfig.auto(["dc1"])


async def test_sans_io_handler_behind_tls_and_the_plaintext_gate(env: Env, clock: Any) -> None:
    address = await env.serve(1, echo)
    mux = env.net.port_mux(address)
    stats = env.net.stats[address]
    servers: list[Recorder] = []

    def accept(conn: MuxConn) -> ConnHandler:
        servers.append(Recorder(conn, answer=True))
        return servers[-1]

    ctx = CONFIG.server_context("dc1")

    async def over_tls(stream: trio.abc.Stream, peer: str, local: str) -> None:
        await serve_tls(stream, peer, local, mux, ctx, stats)

    async def refuse(stream: trio.abc.Stream, peer: str, local: str) -> None:
        stats["refused"] += 1
        await trio.aclose_forcefully(stream)

    mux.register(RPC_RAFT, accept)
    mux.register_stream(RPC_TLS, over_tls)
    mux.refuse_plaintext(refuse)
    src = env.src(2)
    env.net.outgoing_tls[src] = ClientWrapper(
        lambda dst: (CONFIG.client_context("dc1"), "server.dc1.consul"), env.net.stats[src]
    )
    clients: list[Recorder] = []
    conn = env.net.dial(
        src, address, RPC_RAFT, lambda c: clients.append(Recorder(c)) or clients[-1]
    )
    conn.write(b"hello ")
    conn.write(b"raft")
    await wait_for(lambda: bytes(clients[0].data) == b"HELLO RAFT")
    assert bytes(servers[0].data) == b"hello raft"  # the inner first byte picked the handler
    assert stats["tls_accepted"] == 1 and stats["refused"] == 0
    # The same dial from an address without TLS: refused by the gate, never reaching accept.
    plain: list[Recorder] = []
    env.net.dial(env.src(3), address, RPC_RAFT, lambda c: plain.append(Recorder(c)) or plain[-1])
    await wait_for(lambda: plain[0].lost)
    assert stats["refused"] == 1 and len(servers) == 1
    conn.close()
    await wait_for(lambda: servers[0].lost)
