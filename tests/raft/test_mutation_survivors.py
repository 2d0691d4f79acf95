"""Tests written for mutants that survived scripts/mutation.py (docs/mutation.md lists them).

Each test pins one rule of the Raft core through its public API: the values of a config
multiplier, counters, the term of an index past the log, when a core has work ready, one
leader_change event per change, the leader named in an election-timeout event, the quorum a
leader's lease needs, and the largest term the wire accepts.
"""

import msgpack
import pytest

from consim.raft.config import RaftConfig
from consim.raft.core import ENTRY_OVERHEAD, encode_configuration
from consim.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    MalformedMessage,
    RequestVoteResponse,
    message_from_wire,
    message_to_wire,
)
from consim.raft.recovery import RecoveryError, parse_peers_json, recover_state
from consim.raft.types import (
    EntryType,
    HardState,
    LogEntry,
    PersistentState,
    Role,
    Snapshot,
    SnapshotMeta,
)

from .conftest import conf, make_core
from .snapshots import leader_snapshotted_past_a_crashed_follower


def _follower_b_with_leader_a(now: float = 0.5):
    core = make_core("b")
    core.step("a", AppendEntries(2, "a", "a:8300", 1, 1, (), 0, 1), now)
    return core


def test_timeouts_scale_with_the_multiplier() -> None:
    c = RaftConfig.for_multiplier(5)
    assert (c.heartbeat_timeout, c.election_timeout, c.leader_lease_timeout) == (5.0, 5.0, 2.5)


def test_ignored_messages_counter_starts_at_zero_and_counts_one_each() -> None:
    core = make_core("b")
    assert core.counters["ignored_messages"] == 0
    core.step("a", "garbage", 1.0)  # type: ignore[arg-type]
    assert core.counters["ignored_messages"] == 1


def test_term_past_the_last_index_is_unknown() -> None:
    core = make_core()
    assert core.term_at(core.last_index) == 1
    assert core.term_at(core.last_index + 1) is None


def test_no_work_ready_once_drained() -> None:
    core = _follower_b_with_leader_a()
    assert core.has_ready()
    core.ready()
    assert not core.has_ready()


def test_one_leader_change_event_per_change() -> None:
    core = make_core("b")
    events = []
    for i, now in enumerate((0.5, 0.6, 0.7)):
        core.step("a", AppendEntries(2, "a", "a:8300", 1, 1, (), 0, i + 1), now)
        events += [e for e in core.ready().events if e.kind == "leader_change"]
    # A new term from the same leader is no change of leader either.
    core.step("a", AppendEntries(3, "a", "a:8300", 1, 1, (), 0, 9), 0.8)
    events += [e for e in core.ready().events if e.kind == "leader_change"]
    assert [e.fields["leader_id"] for e in events] == ["a"]


def test_election_timeout_without_a_leader_reports_no_leader_change() -> None:
    core = make_core("b")  # has never heard of a leader
    while core.role is Role.FOLLOWER:
        core.tick(core.next_deadline())
    r = core.ready()
    assert any(e.kind == "election_timeout" for e in r.events)
    assert not [e for e in r.events if e.kind == "leader_change"]


def test_election_timeout_names_the_last_leader() -> None:
    core = _follower_b_with_leader_a()
    core.ready()
    timeouts: list = []
    while not timeouts and core.role is Role.FOLLOWER:
        core.tick(core.next_deadline())
        timeouts = [e for e in core.ready().events if e.kind == "election_timeout"]
    assert [e.fields["last-leader-id"] for e in timeouts] == ["a"]
    assert timeouts[0].fields["last-leader-addr"] == "a:8300"


def test_malformed_configuration_entry_counted_once() -> None:
    core = _follower_b_with_leader_a()
    core.ready()
    bad = LogEntry(2, 2, EntryType.CONFIGURATION, b"\xc1 not msgpack")
    core.step("a", AppendEntries(2, "a", "a:8300", 1, 1, (bad,), 0, 2), 0.6)
    assert core.counters["malformed"] == 1
    good = LogEntry(3, 2, EntryType.CONFIGURATION, encode_configuration(conf("a", "b", "c")))
    core.step("a", AppendEntries(2, "a", "a:8300", 2, 2, (good,), 0, 3), 0.7)
    assert core.counters["malformed"] == 1


def test_lease_needs_a_quorum_not_just_one_follower() -> None:
    # Five voters: the leader plus one follower in contact is 2 of 5, short of the quorum of 3.
    peers = ("a", "b", "c", "d", "e")
    core = make_core("a", peers=peers)
    core.tick(10.0)
    assert core.role is Role.CANDIDATE
    for p in ("b", "c"):
        core.step(p, RequestVoteResponse(core.term + 1, True, True), 10.0)
    for p in ("b", "c"):
        core.step(p, RequestVoteResponse(core.term, True, False), 10.0)
    assert core.role is Role.LEADER
    core.ready()
    t = 10.0
    while core.role is Role.LEADER and t < 20:
        t = core.next_deadline()
        core.tick(t)
        core.step("b", AppendEntriesResponse(core.term, True, core.last_index, 0, 0), t)
    assert core.role is Role.FOLLOWER and t <= 10.0 + 0.5 + 0.01, t


def _wire(msg: AppendEntries) -> object:
    return msgpack.unpackb(msgpack.packb(message_to_wire(msg), use_bin_type=True), raw=False)


def test_wire_accepts_the_largest_raft_number_and_no_larger() -> None:
    top = (1 << 63) - 1  # Go's max int64: hashicorp/raft's terms and indexes are uint64/int64
    entry = LogEntry(2, top, EntryType.COMMAND, b"x")
    msg = AppendEntries(top, "a", "a:8300", 1, 1, (entry,), 0, 1)
    assert message_from_wire(_wire(msg)) == msg
    over = AppendEntries(top, "a", "a:8300", 1, 1, (LogEntry(2, top + 1, EntryType.COMMAND),), 0, 1)
    try:
        message_from_wire(_wire(over))
    except MalformedMessage:
        pass
    else:
        raise AssertionError("an entry term past 2**63-1 was accepted")


def test_entry_overhead_counts_against_the_append_budget() -> None:
    # 2 x 490 bytes of data fit in 1000, but not with ENTRY_OVERHEAD per entry: one per message.
    cfg = RaftConfig.for_multiplier(1, max_append_bytes=1000)
    core = make_core(cfg=cfg)
    core.tick(10.0)
    core.step("b", RequestVoteResponse(core.term + 1, True, True), 10.0)
    core.step("b", RequestVoteResponse(core.term, True, False), 10.0)
    core.ready()
    first = core.propose(b"x" * 490, 10.1)
    core.propose(b"y" * 490, 10.1)
    sent = [
        o.message
        for o in core.ready().messages
        if o.to_id == "b" and isinstance(o.message, AppendEntries) and o.message.entries
    ]
    assert [[e.index for e in m.entries] for m in sent] == [[first], [first + 1]]
    assert all(sum(len(e.data) + ENTRY_OVERHEAD for e in m.entries) <= 1000 for m in sent)


def test_protocol_2_peers_json_must_be_a_list_and_null_is_empty() -> None:
    with pytest.raises(RecoveryError) as err:
        parse_peers_json('{"a": 1}', 2)
    assert str(err.value).endswith("json: cannot unmarshal object into Go value of type []string")
    # Go decodes null into a nil slice: no servers, so the voter check answers.
    with pytest.raises(RecoveryError, match="need at least one voter in configuration"):
        parse_peers_json("null", 2)


def test_recovery_of_a_term_without_entries_snapshots_at_index_and_term_zero() -> None:
    state = PersistentState(HardState(3, None), None, ())
    out = recover_state(state, conf("a", "b", "c"), lambda _s: b"")
    assert out.snapshot is not None
    assert (out.snapshot.meta.index, out.snapshot.meta.term) == (0, 0)
    assert out.hard_state == HardState(3, None) and out.entries == ()


def test_follower_replication_shows_when_a_snapshot_transfer_started() -> None:
    h, ldr, lagger = leader_snapshotted_past_a_crashed_follower()
    h.restart(lagger)
    views = []
    for _ in range(300):
        h.run_for(0.01)
        view = ldr.core.follower_replication()[lagger]
        if view.snapshot_index:
            views.append((h.now, view))
    assert views, "no snapshot transfer seen"
    for now, view in views:
        assert view.snapshot_started_at is not None and view.snapshot_started_at <= now
        assert view.snapshot_size > 0
    assert h.nodes[lagger].fsm == ldr.fsm


def test_conflicting_suffix_after_a_snapshot_is_replaced() -> None:
    # Entries 1..5 live in a snapshot; 6..8 of term 1 follow in the log. The leader of term 2
    # agrees up to 6 and sends a different 7: 7 and 8 go, the new 7 stays.
    snap = Snapshot(SnapshotMeta(5, 1, conf("a", "b", "c"), 1), b"")
    ents = tuple(LogEntry(i, 1, EntryType.COMMAND, b"old") for i in (6, 7, 8))
    core = make_core("b", state=PersistentState(HardState(1, None), snap, ents))
    core.step(
        "a", AppendEntries(2, "a", "a:8300", 6, 1, (LogEntry(7, 2, EntryType.NOOP),), 0, 1), 1.0
    )
    r = core.ready()
    assert r.truncate_from == 7
    assert r.messages[-1].message.success
    assert core.last_index == 7
    assert [core.term_at(i) for i in (5, 6, 7, 8)] == [1, 1, 2, None]
