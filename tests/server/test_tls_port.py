"""TLS on the server port as Consul configures it (byte 3, verify_incoming, verify_outgoing,
verify_server_hostname), in virtual time: consim's servers talk TLS to each other, a forged
plaintext peer is served without TLS and refused (and counted) with verify_incoming."""

from __future__ import annotations

import pytest
import trio

from consim.net.portmux import RPC_CONSUL, RPC_MULTIPLEX_V2, RPC_RAFT, RPC_TLS
from consim.net.tls import wrap_stream
from consim.tls.certs import create_ca, create_cert
from consim.tls.config import TLSConfig

from .endpoints.helpers import http, ready, run
from .test_consul_rpc import CLIENT, Client

CA = create_ca()
SERVER = create_cert(CA, datacenter="dc1")
CLIENT_CERT = create_cert(CA, datacenter="dc1", kind="client")
OTHER_CA = create_ca()
FORGED = create_cert(OTHER_CA, datacenter="dc1")


def tls(**flags: bool) -> TLSConfig:
    return TLSConfig(ca_pem=CA.cert, certs=(("dc1", SERVER.cert, SERVER.key),), **flags)


VERIFY_ALL = {"verify_incoming": True, "verify_outgoing": True, "verify_server_hostname": True}
FORGED_WRITE = {"Op": "set", "DirEnt": {"Key": "forged", "Value": b"x"}}


async def forged_plaintext_write(c, address: str) -> str | None:
    """A peer that is not one of the servers writes a key over plain Consul RPC."""
    rpc = Client(await c.net.open_stream(CLIENT, address, RPC_CONSUL))
    try:
        r = await rpc.call("KVS.Apply", FORGED_WRITE)
    except EOFError:
        return None
    return r.error or "ok"


def client_context(pem, *, hostname_check: bool = True):
    return TLSConfig(
        ca_pem=CA.cert,
        cert_pem=pem.cert,
        key_pem=pem.key,
        verify_outgoing=True,
        verify_server_hostname=hostname_check,
    ).client_context("dc1")


def test_without_tls_anyone_reaching_the_port_is_served():
    async def body(c):
        leader, _ = await ready(c)
        assert await forged_plaintext_write(c, leader.address) == "ok"
        assert leader.fsm.get("forged")[1] is not None  # committed: the exposure TLS closes

    run(body)


def test_verify_incoming_refuses_and_counts_a_forged_peer():
    async def body(c):
        leader, followers = await ready(c)
        stats = c.net.stats[leader.address]
        # consim's own servers talk TLS: a write through a follower is forwarded over it.
        status, _, reply = await http(c, followers[0].name, "PUT", "/v1/kv/a", body=b"1")
        assert (status, reply) == (200, b"true")
        assert c.net.stats[followers[0].address]["tls_dial_handshake_failed"] == 0
        assert sum(c.net.stats[n.address]["tls_accepted"] for n in c.servers.values()) > 0
        # Plaintext, on any first byte (known or not): closed unanswered, counted, logged.
        assert await forged_plaintext_write(c, leader.address) is None
        for first in (RPC_MULTIPLEX_V2, 0xC1, RPC_RAFT):
            s = await c.net.open_stream(CLIENT, leader.address, first)
            await s.send_all(b"\x00" * 64)
            assert await s.receive_some(10) == b""
        assert stats["tls_plaintext_refused"] == 4
        assert leader.fsm.get("forged")[1] is None
        warned = [e for e in c.events.events if e.kind == "tls_plaintext_refused"]
        assert (
            warned and warned[0].message == "Non-TLS connection attempted with VerifyIncoming set"
        )
        # TLS with a certificate of another CA: the handshake fails, counted.
        s = await c.net.open_stream(CLIENT, leader.address, RPC_TLS)
        forged_ctx = TLSConfig(cert_pem=FORGED.cert, key_pem=FORGED.key).client_context("dc1")
        with pytest.raises((trio.BrokenResourceError, trio.TooSlowError)):
            tls_stream = await wrap_stream(s, forged_ctx, None, RPC_CONSUL)
            await Client(tls_stream).call("KVS.Apply", FORGED_WRITE)
        with trio.fail_after(15):
            while stats["tls_handshake_failed"] == 0:
                await trio.sleep(0.05)
        assert leader.fsm.get("forged")[1] is None
        # A client with a certificate of the cluster's CA is served (Consul's name checked).
        s = await c.net.open_stream(CLIENT, leader.address, RPC_TLS)
        good = await wrap_stream(s, client_context(CLIENT_CERT), "server.dc1.consul", RPC_CONSUL)
        r = await Client(good).call("Status.Leader", {})
        assert (r.error, r.body) == ("", leader.address)

    run(body, tls=tls(**VERIFY_ALL))


def test_verify_server_hostname_refuses_a_server_named_for_another_datacenter():
    async def body(c):
        leader, _ = await ready(c)
        s = await c.net.open_stream(CLIENT, leader.address, RPC_TLS)
        with pytest.raises(trio.BrokenResourceError):
            # the servers' certificate names server.dc1.consul, not server.dc2.consul
            await wrap_stream(s, client_context(CLIENT_CERT), "server.dc2.consul", RPC_CONSUL)

    run(body, tls=tls(**VERIFY_ALL))


def test_tls_without_verify_incoming_still_serves_plaintext():
    async def body(c):
        leader, followers = await ready(c)
        status, _, _ = await http(c, followers[0].name, "PUT", "/v1/kv/a", body=b"1")
        assert status == 200
        assert await forged_plaintext_write(c, leader.address) == "ok"
        assert c.net.stats[leader.address]["tls_plaintext_refused"] == 0

    run(body, tls=tls())
