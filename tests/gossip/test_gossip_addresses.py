"""Addresses are validated where they enter the gossip core: a member, indirect-probe target,
query origin or datagram source that is not a valid IP:port is malformed (counted) and never
stored, answered or sent to, so no later timer can trip over it."""

from __future__ import annotations

import random

import pytest

from consim.gossip import wire
from consim.gossip.core import GossipCore
from consim.gossip.types import GossipError

# What can stand for an address on memberlist's wire (IP bytes + u16 port) and is not one:
# wrong IP lengths, a string where bytes go, nil, port 0 or beyond 16 bits.
BAD = [
    (b"\x7f\x00\x14", 8301),
    (b"", 8301),
    (None, 8301),
    (b"\x7f\x00\x14\x09", 0),
    (b"\x7f\x00\x14\x09", 99999),
    (b"\x7f\x00\x14\x09", -1),
]
BAD_IDS = ["3-byte-ip", "empty-ip", "nil-ip", "port-0", "port-99999", "port-negative"]
ME = "127.0.0.1:8301"
PEER = "127.0.0.2:8301"


def _core() -> GossipCore:
    core = GossipCore("s1", ME, rng=random.Random(7), now=0.0)
    core.ready()
    return core


def _alive(node: str, addr: object, port: object) -> bytes:
    meta = wire.encode_tags({})
    body = {
        "Addr": addr,
        "Incarnation": 1,
        "Meta": meta,
        "Node": node,
        "Port": port,
        "Vsn": wire.VSN,
    }
    return bytes([wire.ALIVE]) + wire.pack(body)


def _datagram_targets(core: GossipCore, until: float = 120.0) -> set[str]:
    """Every address the core sends to while its timers run for ``until`` seconds."""
    targets: set[str] = set()
    now = 0.0
    while now < until:
        now = max(now + 0.01, min(core.next_deadline(), until))
        core.tick(now)
        targets.update(dst for dst, _ in core.ready().datagrams)
    return targets


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_alive_with_a_bad_address_is_malformed_and_not_stored(bad: tuple) -> None:
    core = _core()
    core.receive(PEER, _alive("evil", *bad), 1.0)
    assert core.counters["dropped_malformed"] == 1
    assert [m.name for m in core.members()] == ["s1"]
    assert _datagram_targets(core) == set()


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_push_pull_with_one_bad_state_merges_nothing(bad: tuple) -> None:
    core = _core()
    meta = wire.encode_tags({})
    addr, port = bad

    def state(name: str, ip: object, p: object) -> bytes:
        return wire.pack(
            {
                "Addr": ip,
                "Incarnation": 1,
                "Meta": meta,
                "Name": name,
                "Port": p,
                "State": 0,
                "Vsn": wire.VSN,
            }
        )

    header = wire.pack({"Join": True, "Nodes": 2, "UserStateLen": 0})
    good = state("s2", wire.ip_bytes("127.0.0.2"), 8301)
    stream = bytes([wire.PUSH_PULL]) + header + good + state("evil", addr, port)
    reply = core.receive_stream(PEER, stream, 1.0)
    assert core.counters["dropped_malformed"] == 1
    assert [m.name for m in core.members()] == ["s1"]  # not even the good entry
    assert reply is not None and reply[0] == wire.ERR  # memberlist answers an errResp
    assert core.ready().datagrams == []


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_indirect_ping_and_query_origin_must_be_addresses(bad: tuple) -> None:
    core = _core()
    addr, port = bad
    preq = {"Nack": False, "Node": "x", "Port": port, "SeqNo": 1, "Target": addr}
    core.receive(PEER, bytes([wire.INDIRECT_PING]) + wire.pack(preq), 1.0)
    query = wire.enc_s_query(
        ltime=1,
        qid=9,
        address=PEER,
        source_node="x",
        name="_serf_ping",
        payload=b"",
        timeout_ns=10**9,
        flags=wire.QUERY_FLAG_ACK,
    )
    body = wire.unpack(query[1:])
    body[b"Addr"], body[b"Port"] = addr, port
    query = bytes([wire.S_QUERY]) + wire.pack(body)
    core.receive(PEER, wire.enc_user(query), 1.0)
    assert core.counters["dropped_malformed"] == 2
    assert core.ready().datagrams == []
    assert _datagram_targets(core) == set()


@pytest.mark.parametrize(
    "bad", ["127.0.20.9:notaport", "127.0.20.9:99999", ":8301", "127.0.20.9", "", "host:8301"]
)
def test_a_datagram_from_a_bad_source_is_dropped(bad: str) -> None:
    core = _core()
    core.receive(bad, _plain_ping(), 1.0)
    assert core.counters["dropped_malformed"] == 1
    assert core.ready().datagrams == []  # no ack to it


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.20.9:notaport", 'strconv.ParseUint: parsing "notaport": invalid syntax'),
        ("127.0.20.9:99999", 'strconv.ParseUint: parsing "99999": value out of range'),
        (":8301", "lookup : no such host"),
        ("127.0.20.9", "address 127.0.20.9: missing port in address"),
    ],
)
def test_join_of_a_bad_address_fails_with_memberlists_text(address: str, reason: str) -> None:
    core = _core()
    with pytest.raises(GossipError) as err:
        core.join(address, 1.0)
    assert str(err.value) == f"Failed to resolve {address}: {reason}"
    # Nothing was sent, and no retry is pending for it.
    assert address not in _datagram_targets(core)


def _plain_ping() -> bytes:
    """A ping without SourceAddr: the answer would go to the datagram's source."""
    return bytes([wire.PING]) + wire.pack({"Node": "s1", "SeqNo": 1})


def test_valid_addresses_still_join_and_are_stored() -> None:
    core = _core()
    core.receive(PEER, _alive("s3", wire.ip_bytes("::1"), 8301), 1.0)
    assert [(m.name, m.addr, m.port) for m in core.members()] == [
        ("s1", "127.0.0.1", 8301),
        ("s3", "::1", 8301),
    ]
    core.join(PEER, 2.0)
    assert PEER in {dst for dst, _ in core.ready().streams}
