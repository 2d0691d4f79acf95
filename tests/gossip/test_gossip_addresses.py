"""Addresses are validated where they enter the gossip core: a member, indirect-probe target,
query origin or datagram source that is not a valid IP:port is malformed (counted) and never
stored, answered or sent to, so no later timer can trip over it."""

from __future__ import annotations

import random

import msgpack
import pytest

from consim.gossip.core import GossipCore
from consim.gossip.types import GossipError

BAD = ["127.0.20.9:notaport", "127.0.20.9:99999", ":8301", "127.0.20.9", "", "host:8301"]
ME = "127.0.0.1:8301"
PEER = "127.0.0.2:8301"


def _core() -> GossipCore:
    core = GossipCore("s1", ME, rng=random.Random(7), now=0.0)
    core.ready()
    return core


def _packet(*msgs: dict) -> bytes:
    return msgpack.packb(list(msgs), use_bin_type=True)


def _datagram_targets(core: GossipCore, until: float = 120.0) -> set[str]:
    """Every address the core sends to while its timers run for ``until`` seconds."""
    targets: set[str] = set()
    now = 0.0
    while now < until:
        now = max(now + 0.01, min(core.next_deadline(), until))
        core.tick(now)
        targets.update(dst for dst, _ in core.ready().datagrams)
    return targets


@pytest.mark.parametrize("bad", BAD)
def test_alive_with_a_bad_address_is_malformed_and_not_stored(bad: str) -> None:
    core = _core()
    alive = {"t": "alive", "node": "evil", "inc": 1, "addr": bad, "tags": {}}
    core.receive(PEER, _packet(alive), 1.0)
    assert core.counters["dropped_malformed"] == 1
    assert [m.name for m in core.members()] == ["s1"]
    assert bad not in _datagram_targets(core)


@pytest.mark.parametrize("bad", BAD)
def test_push_pull_with_one_bad_state_merges_nothing(bad: str) -> None:
    core = _core()
    states = [["s2", PEER, 1, 0, {}], ["evil", bad, 1, 0, {}]]
    core.receive(PEER, _packet({"t": "pp", "join": True, "reply": False, "states": states}), 1.0)
    assert core.counters["dropped_malformed"] == 1
    assert [m.name for m in core.members()] == ["s1"]  # not even the good entry
    assert core.ready().datagrams == []  # and no answer to a malformed exchange


@pytest.mark.parametrize("bad", BAD)
def test_indirect_ping_and_query_origin_must_be_addresses(bad: str) -> None:
    core = _core()
    core.receive(PEER, _packet({"t": "preq", "seq": 1, "node": "x", "ta": bad}), 1.0)
    query = {
        "t": "q",
        "id": 9,
        "origin": "x",
        "oa": bad,
        "name": "_serf_ping",
        "payload": {},
        "timeout": 1.0,
    }
    core.receive(PEER, _packet(query), 1.0)
    assert core.counters["dropped_malformed"] == 2
    assert bad not in {dst for dst, _ in core.ready().datagrams}
    assert bad not in _datagram_targets(core)


@pytest.mark.parametrize("bad", BAD)
def test_a_datagram_from_a_bad_source_is_dropped(bad: str) -> None:
    core = _core()
    core.receive(bad, _packet({"t": "ping", "seq": 1, "node": "s1"}), 1.0)
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


def test_valid_addresses_still_join_and_are_stored() -> None:
    core = _core()
    alive = {"t": "alive", "node": "s3", "inc": 1, "addr": "[::1]:8301", "tags": {}}
    core.receive(PEER, _packet(alive), 1.0)
    assert [(m.name, m.addr, m.port) for m in core.members()] == [
        ("s1", "127.0.0.1", 8301),
        ("s3", "::1", 8301),
    ]
    core.join(PEER, 2.0)
    assert PEER in {dst for dst, _ in core.ready().datagrams}
