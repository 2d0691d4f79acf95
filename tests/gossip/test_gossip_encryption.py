"""Encrypted gossip on the wire: what is dropped, and how it is counted."""

from __future__ import annotations

import random

import msgpack
import pytest

from consim.gossip import GossipCore, Keyring, KeyringError, wire
from consim.gossip.harness import Harness

from .helpers import K1, K2, converged, fail, pool


def test_push_pull_stream_is_sealed_with_the_header_as_additional_data() -> None:
    core = GossipCore(
        "a", "127.0.0.1:8301", rng=random.Random(1), now=0.0, keyring=Keyring([K1, K2])
    )
    core.join("127.0.0.2:8301", 0.0)
    ready = core.ready()
    assert ready.datagrams == []  # memberlist joins over TCP
    [(dst, stream)] = ready.streams
    assert dst == "127.0.0.2:8301"
    # [10 encrypt][length u32 BE][vsn 1][nonce][ciphertext + tag], header = GCM additional data
    assert stream[0] == wire.ENCRYPT
    assert int.from_bytes(stream[1:5], "big") == len(stream) - 5
    with pytest.raises(KeyringError):
        Keyring([K1]).open(stream[5:])  # without the header as AAD it does not open
    plain = Keyring([K2, K1]).open(stream[5:], aad=stream[:5])
    inner = wire.dec_stream_inner(plain)
    assert inner["t"] == "pp" and inner["join"] is True
    assert [s["node"] for s in inner["states"]] == ["a"]
    assert inner["user"]["status_ltimes"] == {"a": 1}


def test_datagrams_are_sealed_with_the_primary_key() -> None:
    core = GossipCore(
        "a", "127.0.0.1:8301", rng=random.Random(1), now=0.0, keyring=Keyring([K1, K2])
    )
    core.receive("127.0.0.2:8301", Keyring([K2]).seal(_ping("a"), random.Random(2)), 0.0)
    [(dst, packet)] = core.ready().datagrams
    assert dst == "127.0.0.9:8301"  # the ping's SourceAddr:SourcePort
    assert packet[0] == 1 and len(packet) > 1 + 12 + 16
    [ack] = wire.decode_packet(Keyring([K1]).open(packet))  # the primary seals
    assert ack["t"] == "ack" and ack["seq"] == 7


def test_plain_core_sends_plain_memberlist_messages() -> None:
    core = GossipCore("a", "127.0.0.1:8301", rng=random.Random(1), now=0.0)
    core.receive("127.0.0.2:8301", _ping("a"), 0.0)
    [(_, packet)] = core.ready().datagrams
    assert packet[0] == wire.ACK
    assert wire.unpack(packet[1:])[b"SeqNo"] == 7
    core.join("127.0.0.2:8301", 0.0)
    [(_, stream)] = core.ready().streams
    assert stream[0] == wire.PUSH_PULL


def _ping(node: str) -> bytes:
    return wire.enc_ping(7, node, "127.0.0.9:8301", "b")


def test_member_with_other_key_cannot_join_and_drops_are_counted() -> None:
    h, names = pool(21, 3, keys=[K1])
    stranger = h.add_member("dc1-s9", "10.0.0.9:8301", keyring=Keyring([K2]))
    h.join("dc1-s9", "dc1-s1")
    h.run_for(5)
    assert "dc1-s9" not in h.members("dc1-s1")
    assert [m.name for m in stranger.members()] == ["dc1-s9"]
    counters = h.cores["dc1-s1"].counters
    assert counters["dropped_decrypt"] >= 1, counters
    drops = [e for e in h.trace if e[2] == "packet_dropped" and e[1] == "dc1-s1"]
    assert drops and drops[0][3] == (
        "failed to receive: no installed keys could decrypt the message from=10.0.0.9:8301"
    )
    assert converged(h, names)


def test_plaintext_member_is_dropped_by_encrypted_pool() -> None:
    h, names = pool(22, 3, keys=[K1])
    h.add_member("dc1-s8", "10.0.0.8:8301", keyring=None)
    h.join("dc1-s8", "dc1-s2")
    h.run_for(3)
    assert "dc1-s8" not in h.members("dc1-s2")
    assert h.cores["dc1-s2"].counters["dropped_plaintext"] >= 1
    assert h.cores["dc1-s2"].counters["dropped_decrypt"] == 0
    # ... and the plaintext member drops the pool's sealed packets the other way round
    plain = GossipCore("p", "10.0.0.7:8301", rng=random.Random(2), now=h.now)
    sealed = Keyring([K1]).seal(_ping("p"), random.Random(3))
    plain.receive("10.0.0.1:8301", sealed, h.now)
    assert plain.counters["dropped_encrypted"] == 1


def test_garbage_is_counted_malformed() -> None:
    core = GossipCore("a", "127.0.0.1:8301", rng=random.Random(1), now=0.0)
    core.ready()
    for junk in (
        b"",
        b"\xc1\xc1",
        msgpack.packb({"t": "ping"}),
        msgpack.packb([1, 2]),
        msgpack.packb([{"t": "nope"}]),
    ):
        core.receive("127.0.0.9:8301", junk, 0.1)
    core.receive("127.0.0.9:8301", bytes([wire.PING]) + wire.pack({"SeqNo": "x", "Node": "a"}), 0.2)
    assert core.counters["dropped_malformed"] == 6
    assert not core.ready().datagrams  # never answered garbage
    sealed = GossipCore("b", "127.0.0.2:8301", rng=random.Random(1), now=0.0, keyring=Keyring([K1]))
    sealed.receive("127.0.0.9:8301", Keyring([K1]).seal(b"\xc1 not msgpack", random.Random(1)), 0.1)
    assert sealed.counters["dropped_malformed"] == 1


def test_gossip_keeps_working_across_primary_change() -> None:
    """After a member switches primary, members that still have its key installed decrypt it."""
    h = Harness(23)
    cores = h.add_pool(3, keys=[K1, K2])
    names = [c.name for c in cores]
    assert h.run_until_true(lambda: converged(h, names), 10)
    cores[0].keyring.use_key(K2)  # only s1 now seals with K2
    h.run_for(10)
    assert converged(h, names), fail(h, "primary change broke gossip")
    assert all(c.counters["dropped_decrypt"] == 0 for c in cores)
    cores[1].keyring.remove_key(K2)  # s2 can no longer open s1's packets
    h.run_for(3)
    assert cores[1].counters["dropped_decrypt"] > 0
