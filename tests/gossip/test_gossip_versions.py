"""memberlist verifyProtocol on push-pull: a state exchange with a member whose protocol versions
the pool cannot speak is refused (answered, not merged), and a join to it fails."""

from __future__ import annotations

from consim.gossip import wire
from consim.gossip.harness import Harness


def push_pull_from(name: str, address: str, vsn: tuple[int, ...]) -> bytes:
    user = wire.enc_s_push_pull(
        ltime=1, status_ltimes={name: 1}, left_members=[], event_ltime=0, events=None, query_ltime=0
    )
    return wire.enc_push_pull([(name, address, b"", 1, 0, vsn)], user, False)


def test_a_member_that_needs_a_newer_protocol_is_refused() -> None:
    h = Harness(3)
    (core,) = h.add_pool(1)
    # speaks memberlist protocol 6..7 only: no version all members can use
    reply = core.receive_stream(
        "10.9.9.9:8301", push_pull_from("x", "10.9.9.9:8301", (6, 7, 6, 2, 5, 4)), 1.0
    )
    assert reply is not None and wire.dec_stream_inner(reply)["t"] == "pp"  # state sent first
    assert "x" not in {m.name for m in core.members()}
    assert core.counters["push_pull_refused"] == 1
    events = [e.message for e in core.ready().events if e.kind == "packet_dropped"]
    assert events == [
        # remote members are checked first: x's own version 6 is above the pool's maximum 5
        "Failed push/pull merge: Node 'x' protocol version (6) is incompatible: [6, 5] "
        "from=10.9.9.9:8301"
    ]


def test_a_compatible_member_is_merged() -> None:
    h = Harness(3)
    (core,) = h.add_pool(1)
    core.receive_stream(
        "10.9.9.9:8301", push_pull_from("x", "10.9.9.9:8301", (1, 5, 3, 2, 5, 5)), 1.0
    )
    assert "x" in {m.name for m in core.members()}
    assert core.counters["push_pull_refused"] == 0


def test_a_delegate_version_outside_the_range_is_refused() -> None:
    h = Harness(3)
    (core,) = h.add_pool(1)
    core.receive_stream(
        "10.9.9.9:8301", push_pull_from("x", "10.9.9.9:8301", (1, 5, 2, 2, 3, 3)), 1.0
    )
    assert "x" not in {m.name for m in core.members()}
    events = [e.message for e in core.ready().events if e.kind == "packet_dropped"]
    assert events and "delegate protocol version (4) is incompatible: [2, 3]" in events[0]
