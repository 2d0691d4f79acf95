"""Terms and indexes stay within uint64 and SQLite's signed 64-bit range; only a leader's messages
are taken from a server outside the configuration (and they are warned about)."""

from __future__ import annotations

import msgpack
import pytest

from consim.raft.configuration import encode_configuration
from consim.raft.core import STRANGER_WARN_INTERVAL, RaftCore
from consim.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshotResponse,
    MalformedMessage,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
    TimeoutNowResponse,
    message_from_wire,
    message_to_wire,
)
from consim.raft.types import MAX_RAFT_NUMBER, EntryType, HardState, LogEntry, PersistentState, Role

from .conftest import conf, make_core
from .test_core import elect

TOO_BIG = [MAX_RAFT_NUMBER + 1, 2**64 - 1]


def _wire(msg: object) -> dict:
    # Through msgpack, as the network delivers it (uint64 values survive the trip).
    return msgpack.unpackb(msgpack.packb(message_to_wire(msg), use_bin_type=True), raw=False)


def _append(**kw: int) -> dict:
    fields = {"term": 3, "prev": 0, "prev_term": 0, "commit": 0, "seq": 1}
    fields.update(kw)
    entries = (LogEntry(fields["prev"] + 1, 3, EntryType.NOOP, b""),)
    return _wire(
        AppendEntries(
            fields["term"],
            "b",
            "b:8300",
            fields["prev"],
            fields["prev_term"],
            entries,
            fields["commit"],
            fields["seq"],
        )
    )


@pytest.mark.parametrize("value", TOO_BIG)
@pytest.mark.parametrize("field", ["term", "prev_log_index", "prev_log_term", "leader_commit"])
def test_append_entries_above_int64_is_malformed(field: str, value: int) -> None:
    wire = _append()
    wire[field] = value
    if field == "prev_log_index":
        wire["entries"] = []  # keep the entries contiguous: only the bound may fail
    with pytest.raises(MalformedMessage):
        message_from_wire(wire)


@pytest.mark.parametrize("value", [-1, *TOO_BIG])
def test_every_number_of_a_replication_message_is_bounded(value: int) -> None:
    # AppendEntries and its response go through the fast decoder: each of its range checks must
    # refuse what the strict path refuses, with the strict path's text.
    from consim.raft import messages

    numbers = ("term", "prev_log_index", "prev_log_term", "leader_commit", "seq")
    samples = [(field, _append()) for field in numbers]
    response = _wire(AppendEntriesResponse(1, True, 1, 0, 1))
    samples += [(f, dict(response)) for f in ("term", "last_log_index", "conflict_index", "seq")]
    for field, wire in samples:
        wire[field] = value
        if field == "prev_log_index":
            wire["entries"] = []  # keep the entries contiguous: only the bound may fail
        with pytest.raises(MalformedMessage) as strict:
            messages._from_wire(wire)
        with pytest.raises(MalformedMessage) as got:
            message_from_wire(wire)
        assert str(got.value) == str(strict.value), (field, value)


@pytest.mark.parametrize("value", [*TOO_BIG, -1])
def test_append_entries_entry_term_and_index_bounds(value: int) -> None:
    for position in (0, 1):  # index, term
        wire = _append(prev=MAX_RAFT_NUMBER - 1)
        entry = list(wire["entries"][0])
        entry[position] = value
        wire["entries"] = [entry]
        with pytest.raises(MalformedMessage):
            message_from_wire(wire)
    # The largest index is still fine.
    assert message_from_wire(_append(prev=MAX_RAFT_NUMBER - 1)).entries[0].index == MAX_RAFT_NUMBER


@pytest.mark.parametrize("value", [*TOO_BIG, -1])
def test_negative_or_huge_terms_are_malformed_on_both_decoders(value: int) -> None:
    # The fast AppendEntries(Response) path and the strict path for the rest.
    messages = [
        AppendEntriesResponse(1, True, 1, 0, 1),
        RequestVote(1, "b", 0, 0),
        RequestVoteResponse(1, True),
        InstallSnapshotResponse(1, True, 0),
        TimeoutNow(1, "b"),
        TimeoutNowResponse(1, False),
    ]
    for msg in messages:
        wire = _wire(msg)
        wire["term"] = value
        with pytest.raises(MalformedMessage):
            message_from_wire(wire)
    wire = _append()
    wire["term"] = value
    with pytest.raises(MalformedMessage):
        message_from_wire(wire)


def test_timeout_now_response_from_a_stranger_does_not_move_the_term() -> None:
    core = make_core()
    elect(core)
    term = core.term
    core.ready()
    core.step("attacker", TimeoutNowResponse(MAX_RAFT_NUMBER, False), 11.0)
    assert core.term == term and core.role is Role.LEADER
    assert core.counters["unknown_sender"] == 1
    warnings = [e for e in core.ready().events if e.kind == "peer_not_in_configuration"]
    assert [(w.level, w.fields["from"]) for w in warnings] == [("WARN", "attacker")]


@pytest.mark.parametrize(
    "message",
    [
        RequestVoteResponse(50, False),
        AppendEntriesResponse(50, False, 0, 0, 1),
        InstallSnapshotResponse(50, False, 0),
        TimeoutNow(50, "attacker"),
        TimeoutNowResponse(50, False),
        RequestVote(50, "attacker", 100, 50),
    ],
    ids=lambda m: type(m).__name__,
)
def test_no_message_from_a_stranger_moves_the_term_or_starts_an_election(message) -> None:
    follower = make_core()
    follower.ready()
    follower.step("attacker", message, 1.0)
    assert follower.term == 1 and follower.role is Role.FOLLOWER
    assert follower.counters["unknown_sender"] == 1
    leader = make_core()
    elect(leader)
    term = leader.term
    leader.step("attacker", message, 11.0)
    assert leader.term == term and leader.role is Role.LEADER


def test_a_known_servers_higher_term_still_deposes_the_leader() -> None:
    core = make_core()
    elect(core)
    core.step("b", TimeoutNowResponse(core.term + 5, False), 11.0)
    assert core.role is Role.FOLLOWER and core.term == 7


def test_append_entries_from_a_stranger_is_followed_and_warned_once_per_interval() -> None:
    # hashicorp/raft does not check who sends AppendEntries (a lagging follower may not know its
    # new leader yet): consim follows it too, and warns (the zombie-server case).
    core: RaftCore = make_core()
    core.ready()
    msg = AppendEntries(3, "zombie", "127.0.0.9:8300", 1, 1, (), 1, 1)
    core.step("zombie", msg, 1.0)
    assert core.leader_id == "zombie" and core.term == 3
    r = core.ready()
    assert [o.to_address for o in r.messages] == ["127.0.0.9:8300"]  # answered as its follower
    warnings = [e for e in r.events if e.kind == "peer_not_in_configuration"]
    assert [(w.level, w.message) for w in warnings] == [
        ("WARN", "AppendEntries from a leader that is not in configuration")
    ]
    assert warnings[0].fields["leader-address"] == "127.0.0.9:8300"
    core.step("zombie", msg, 1.0 + STRANGER_WARN_INTERVAL / 2)
    assert not [e for e in core.ready().events if e.kind == "peer_not_in_configuration"]
    core.step("zombie", msg, 1.0 + STRANGER_WARN_INTERVAL)
    assert [e.kind for e in core.ready().events].count("peer_not_in_configuration") == 1


def test_a_stale_stranger_gets_a_refusal_with_no_address() -> None:
    # The case that crashed live mode: nobody knows where the stranger lives. The driver drops
    # (and counts) an Outbound without an address; it must not reach the network.
    core = make_core()
    core.step("b", AppendEntries(5, "b", "b:8300", 1, 1, (), 1, 1), 1.0)
    core.ready()
    core.step("zombie", AppendEntries(3, "zombie", "127.0.0.9:8300", 1, 1, (), 1, 1), 2.0)
    out = core.ready().messages
    assert [(o.to_id, o.to_address) for o in out] == [("zombie", "")]


def test_no_election_past_the_largest_term() -> None:
    core = make_core()
    core.step("b", AppendEntries(MAX_RAFT_NUMBER, "b", "b:8300", 1, 1, (), 1, 1), 1.0)
    core.ready()
    core.tick(100.0)  # heartbeat timeout long passed
    assert core.term == MAX_RAFT_NUMBER and core.role is Role.FOLLOWER
    events = core.ready().events
    assert any(e.kind == "election_refused" and e.level == "ERROR" for e in events)


def test_a_second_leader_in_the_followed_term_is_refused_not_followed() -> None:
    """Only a manual recovery (peers.json written on both sides of a split) makes two leaders in
    one term. A follower that already follows one refuses the other, as a leader does, instead of
    truncating entries it knows are committed (which stopped the server before)."""
    follower = make_core()
    first = AppendEntries(3, "b", "b:8300", 0, 0, (LogEntry(1, 3, EntryType.NOOP, b""),), 1, 1)
    follower.step("b", first, 1.0)
    assert follower.commit_index == 1 and follower.leader_id == "b"
    # "c" leads term 3 too, with another entry at the committed index 1.
    second = AppendEntries(3, "c", "c:8300", 0, 0, (LogEntry(1, 2, EntryType.NOOP, b"x"),), 1, 1)
    follower.step("c", second, 1.1)
    assert follower.counters["duplicate_leader"] == 1
    assert follower.leader_id == "b" and follower.term_at(1) == 3
    # A newer term is still followed, from anyone.
    third = AppendEntries(4, "c", "c:8300", 1, 3, (LogEntry(2, 4, EntryType.NOOP, b""),), 2, 2)
    follower.step("c", third, 1.2)
    assert follower.leader_id == "c" and follower.commit_index == 2


def test_the_same_leader_named_first_by_address_then_by_id_is_followed() -> None:
    """A server added with no configuration of its own names the leader by its address until
    the configuration entries arrive (the transport's id lookup), then by its id: the same
    leader, not a second one in the term."""
    follower = make_core("d", state=PersistentState(HardState(), None, ()))
    follower.ready()
    configuration = conf("a", "b", "c", "d", nonvoters=("d",))
    entry = LogEntry(1, 2, EntryType.CONFIGURATION, encode_configuration(configuration))
    follower.step("a:8300", AppendEntries(2, "a:8300", "a:8300", 0, 0, (entry,), 1, 1), 0.1)
    follower.ready()
    follower.step("a", AppendEntries(2, "a", "a:8300", 1, 2, (), 1, 2), 0.2)
    answers = [o.message for o in follower.ready().messages]
    assert follower.counters["duplicate_leader"] == 0
    assert follower.leader_id == "a"
    assert [type(m).__name__ for m in answers] == ["AppendEntriesResponse"] and answers[0].success
