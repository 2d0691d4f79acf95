"""Unit tests of the Raft core, driving cores by hand or through the harness without faults."""

import random
import re

import pytest

from consim.golike import format_duration
from consim.raft.config import RaftConfig
from consim.raft.core import (
    NotLeader,
    RaftCore,
    RaftError,
    new_node_id,
)
from consim.raft.harness import Harness
from consim.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from consim.raft.types import (
    EntryType,
    HardState,
    LogEntry,
    PersistentState,
    Role,
    Suffrage,
)

from .conftest import EMPTY, conf, make_core
from .snapshots import leader_snapshotted_past_a_crashed_follower


def cfg_entry(ids=("a", "b", "c")) -> LogEntry:
    from consim.raft.configuration import encode_configuration

    return LogEntry(1, 1, EntryType.CONFIGURATION, encode_configuration(conf(*ids)))


def elect(core: RaftCore, now: float = 10.0) -> None:
    """Make ``core`` (a, with peers b, c) leader by feeding it grants."""
    core.tick(now)
    assert core.role is Role.CANDIDATE
    core.step("b", RequestVoteResponse(core.term + 1, True, True), now)
    core.step("b", RequestVoteResponse(core.term, True, False), now)
    assert core.role is Role.LEADER


def test_config_for_multiplier():
    c = RaftConfig.for_multiplier(1)
    assert (c.heartbeat_timeout, c.election_timeout, c.leader_lease_timeout) == (1.0, 1.0, 0.5)
    assert (c.commit_timeout, c.max_append_entries, c.snapshot_threshold, c.trailing_logs) == (
        0.05,
        64,
        8192,
        10240,
    )
    assert c.snapshot_interval == 30.0  # Consul's SnapshotInterval (hashicorp's own is 120 s)
    d = RaftConfig()
    assert d.heartbeat_timeout == 5.0 and d.leader_lease_timeout == 2.5
    assert RaftConfig.for_multiplier(2, trailing_logs=5).trailing_logs == 5


def test_bootstrap_writes_entry_one_term_one():
    core = RaftCore("a", "a:8300", EMPTY, RaftConfig(), random.Random(1), 0.0)
    core.bootstrap(conf("a", "b"))
    r = core.ready()
    assert r.hard_state == HardState(1, None)
    assert [(e.index, e.term, e.type) for e in r.entries] == [(1, 1, EntryType.CONFIGURATION)]
    assert core.latest_configuration == conf("a", "b") and core.latest_configuration_index == 1
    with pytest.raises(RaftError, match="bootstrap only works on new clusters"):
        core.bootstrap(conf("a", "b"))
    with pytest.raises(RaftError, match="need at least one voter"):
        RaftCore("x", "x", EMPTY, RaftConfig(), random.Random(1), 0.0).bootstrap(
            conf("a", nonvoters=("a",))
        )


def test_follower_timeout_is_uniform_in_x_2x():
    seen = []
    for seed in range(50):
        core = make_core(seed=seed, now=3.0)
        seen.append(core.next_deadline() - 3.0)
    assert all(1.0 <= d <= 2.0 for d in seen)
    assert max(seen) - min(seen) > 0.5


@pytest.mark.pre_vote(False)
def test_without_pre_vote_a_timeout_starts_a_real_election():
    """The setting for clusters with hashicorp/raft 1.1.2 nodes: no pre-vote round."""
    core = make_core()
    assert not core.cfg.pre_vote
    core.tick(5.0)
    r = core.ready()
    assert core.role is Role.CANDIDATE and core.term == 2 and r.hard_state == HardState(2, "a")
    rvs = [o.message for o in r.messages]
    assert rvs and all(isinstance(m, RequestVote) and not m.pre_vote and m.term == 2 for m in rvs)
    core.step("b", RequestVoteResponse(2, True, False), 5.1)
    assert core.role is Role.LEADER


@pytest.mark.pre_vote(True)
def test_pre_vote_then_election_then_leader():
    core = make_core()
    core.tick(5.0)
    r = core.ready()
    assert core.role is Role.CANDIDATE and core.term == 1  # no term bump for pre-vote
    assert r.hard_state is None
    assert any(e.message == "heartbeat timeout reached, starting election" for e in r.events)
    assert any(e.message == "entering candidate state" for e in r.events)
    rvs = [o.message for o in r.messages]
    assert {o.to_id for o in r.messages} == {"b", "c"}
    assert all(isinstance(m, RequestVote) and m.pre_vote and m.term == 2 for m in rvs)
    core.step("b", RequestVoteResponse(2, True, True), 5.1)
    r = core.ready()
    assert core.term == 2 and r.hard_state == HardState(2, "a")
    assert all(not o.message.pre_vote for o in r.messages)
    core.step("c", RequestVoteResponse(2, True, False), 5.2)
    r = core.ready()
    assert core.role is Role.LEADER and core.leader_id == "a"
    ev = [e for e in r.events if e.kind == "role_change"][0]
    assert ev.message == "entering leader state"
    assert ev.fields == {"leader": "Node at a:8300 [Leader]"}
    assert r.entries[-1].type is EntryType.NOOP and r.entries[-1].term == 2
    assert {o.to_id for o in r.messages if isinstance(o.message, AppendEntries)} == {"b", "c"}


def test_candidate_restarts_election_after_timeout():
    core = make_core()
    core.tick(5.0)
    core.ready()
    core.tick(core.next_deadline())
    r = core.ready()
    assert any(e.message == "Election timeout reached, restarting election" for e in r.events)


def test_vote_is_persisted_in_same_ready_as_response():
    core = make_core("b")
    core.step("a", RequestVote(2, "a", 1, 1, False, False), 0.5)
    r = core.ready()
    assert r.hard_state == HardState(2, "a")
    assert r.messages[0].message == RequestVoteResponse(2, True, False)
    # Second candidate in the same term is refused.
    core.step("c", RequestVote(2, "c", 1, 1, False, False), 0.6)
    assert core.ready().messages[0].message.granted is False


def test_vote_refused_for_stale_log():
    state = PersistentState(HardState(3, None), None, (cfg_entry(), LogEntry(2, 3, EntryType.NOOP)))
    core = make_core("b", state=state)
    core.step("a", RequestVote(4, "a", 5, 2, False, False), 0.5)
    assert core.ready().messages[0].message.granted is False
    core.step("c", RequestVote(4, "c", 2, 3, False, False), 0.5)
    assert core.ready().messages[0].message.granted is True


def _follower_with_leader(now=0.5):
    core = make_core("b")
    core.step("a", AppendEntries(2, "a", "a:8300", 1, 1, (), 0, 1), now)
    core.ready()
    return core


def test_pre_vote_refusals():
    core = _follower_with_leader()
    # Has a leader it heard from recently.
    core.step("c", RequestVote(3, "c", 5, 2, True, False), 0.6)
    assert core.ready().messages[0].message.granted is False
    assert core.term == 2
    # After the leader goes quiet, granted; and the pre-vote changes no state.
    core.step("c", RequestVote(3, "c", 5, 2, True, False), 5.0)
    r = core.ready()
    assert r.messages[0].message.granted is True and r.hard_state is None and core.term == 2
    # Its own log is newer.
    core.step("c", RequestVote(3, "c", 0, 0, True, False), 5.0)
    assert core.ready().messages[0].message.granted is False
    # Candidate is not a voter.
    core2 = make_core("b", nonvoters=("c",))
    core2.step("c", RequestVote(3, "c", 5, 2, True, False), 5.0)
    assert core2.ready().messages[0].message.granted is False


def test_leadership_transfer_vote_ignores_leader_stickiness():
    core = _follower_with_leader()
    core.step("c", RequestVote(3, "c", 5, 2, False, True), 0.6)
    r = core.ready()
    assert r.messages[0].message.granted is True and core.term == 3


def test_append_consistency_check_and_fast_backoff():
    # Follower holds entries of term 2 at 2..4 that the leader (term 3) does not have.
    ents = (cfg_entry(),) + tuple(LogEntry(i, 2, EntryType.COMMAND, b"old") for i in range(2, 5))
    core = make_core("b", state=PersistentState(HardState(2, None), None, ents))
    core.step("a", AppendEntries(3, "a", "a:8300", 4, 3, (), 1, 1), 1.0)
    resp = core.ready().messages[0].message
    assert isinstance(resp, AppendEntriesResponse) and not resp.success
    assert resp.conflict_index == 2  # first index of the conflicting term
    # Beyond our log: hint = last index + 1.
    core.step("a", AppendEntries(3, "a", "a:8300", 9, 3, (), 1, 2), 1.0)
    assert core.ready().messages[0].message.conflict_index == 5
    # Leader retries at prev=1 with its entries: suffix replaced.
    new = (LogEntry(2, 3, EntryType.NOOP),)
    core.step("a", AppendEntries(3, "a", "a:8300", 1, 1, new, 2, 3), 1.1)
    r = core.ready()
    assert r.truncate_from == 2 and r.entries == list(new)
    assert r.messages[0].message.success and r.messages[0].message.last_log_index == 2
    assert core.last_index == 2 and core.commit_index == 2
    assert [e.index for e in r.committed] == [1, 2]


def test_leader_backs_off_using_hint_and_batches_max_append_entries():
    core = make_core()
    elect(core)
    for i in range(150):
        core.propose(b"%d" % i, 10.1)
    r = core.ready()
    to_b = [
        o.message for o in r.messages if o.to_id == "b" and isinstance(o.message, AppendEntries)
    ]
    assert max(len(m.entries) for m in to_b) == 64
    # b rejects: it only has index 1.
    core.step("b", AppendEntriesResponse(core.term, False, 1, 2, to_b[-1].seq), 10.2)
    r = core.ready()
    retry = [o.message for o in r.messages if o.to_id == "b"][0]
    assert retry.prev_log_index == 1 and len(retry.entries) == 64


def test_commit_only_current_term_entries_by_majority_of_voters():
    ents = (cfg_entry(("a", "b", "c", "d")), LogEntry(2, 2, EntryType.COMMAND, b"x"))
    state = PersistentState(HardState(2, None), None, ents)
    core = make_core("a", state=state)
    core.tick(10.0)
    core.step("b", RequestVoteResponse(3, True, True), 10.0)
    core.step("c", RequestVoteResponse(3, True, True), 10.0)
    core.step("b", RequestVoteResponse(3, True, False), 10.0)
    core.step("c", RequestVoteResponse(3, True, False), 10.0)
    assert core.role is Role.LEADER and core.last_index == 3
    core.ready()
    # A majority holds index 2 (previous term): not committed by counting.
    core.step("b", AppendEntriesResponse(3, True, 2, 0, 1), 10.1)
    core.step("c", AppendEntriesResponse(3, True, 2, 0, 1), 10.1)
    assert core.commit_index == 0
    core.step("b", AppendEntriesResponse(3, True, 3, 0, 2), 10.2)
    assert core.commit_index == 0  # 2 of 4 voters is not a majority
    core.step("c", AppendEntriesResponse(3, True, 3, 0, 2), 10.2)
    assert core.commit_index == 3


def test_nonvoters_replicate_but_do_not_count():
    core = make_core(peers=("a", "b", "c"), nonvoters=("c",))
    elect(core)
    r = core.ready()
    assert {o.to_id for o in r.messages} == {"b", "c"}
    core.step("c", AppendEntriesResponse(core.term, True, 2, 0, 1), 10.1)
    assert core.commit_index == 0
    core.step("b", AppendEntriesResponse(core.term, True, 2, 0, 1), 10.1)
    assert core.commit_index == 2


def test_leader_steps_down_without_quorum_contact():
    core = make_core()
    elect(core)
    core.ready()
    t = 10.0
    while core.role is Role.LEADER and t < 20:
        t = core.next_deadline()
        core.tick(t)
    r = core.ready()
    assert core.role is Role.FOLLOWER and t <= 10.0 + 0.5 + 0.01
    assert any(
        e.kind == "leader_lost" and e.message == "failed to contact quorum of nodes, stepping down"
        for e in r.events
    )
    assert any(e.message == "entering follower state" for e in r.events)


def test_heartbeats_every_tenth_of_heartbeat_timeout():
    core = make_core()
    elect(core)
    core.ready()
    assert core.next_deadline() == pytest.approx(10.1)


def test_not_leader_errors():
    core = _follower_with_leader()
    with pytest.raises(NotLeader) as ei:
        core.propose(b"x", 1.0)
    assert (ei.value.leader_id, ei.value.leader_address) == ("a", "a:8300")
    for call in (core.barrier, core.verify_leader):
        with pytest.raises(NotLeader):
            call(1.0)
    with pytest.raises(NotLeader):
        core.add_voter("d", "d:8300", 1.0)


def test_one_uncommitted_configuration_change_at_a_time():
    core = make_core()
    elect(core)
    core.step("b", AppendEntriesResponse(core.term, True, 2, 0, 1), 10.1)
    assert core.commit_index == 2
    idx = core.add_voter("d", "d:8300", 10.2)
    assert core.latest_configuration_index == idx and core.configuration_index == 1
    assert core.latest_configuration.has_vote("d")  # effective when appended
    with pytest.raises(RaftError, match=r"configuration changed since 1 \(latest is 3\)"):
        core.remove_server("b", 10.3)
    core.step("b", AppendEntriesResponse(core.term, True, 3, 0, 2), 10.3)
    core.step("c", AppendEntriesResponse(core.term, True, 3, 0, 2), 10.3)
    assert core.configuration_index == 3
    core.demote_voter("d", 10.4)
    assert core.latest_configuration.get("d").suffrage is Suffrage.NONVOTER


def test_membership_changes_in_cluster_and_removed_leader_steps_down():
    h = Harness(3, seed=5, check=True)
    h.run_for(5)
    leader = h.leader()
    # Add a fourth, empty server as a voter.
    from consim.raft.harness import MemoryStorage, SimNode

    new = SimNode("d", "127.0.0.9:8300", MemoryStorage(), None)
    h.nodes["d"] = new
    h.ids.append("d")
    new.core = h._new_core(new)
    h._after(new)
    assert h.call_leader(lambda c: c.add_voter("d", "127.0.0.9:8300", h.now)) is not None
    h.run_for(2)
    assert new.core.latest_configuration.has_vote("d") and new.core.commit_index >= 3
    # Remove the leader itself: it steps down once the change commits; someone else leads.
    old = leader.id
    h.call_leader(lambda c: c.remove_server(old, h.now))
    h.run_for(1)
    assert h.nodes[old].core.role is not Role.LEADER
    assert any("removed ourself" in line for line in h.trace)
    h.run_for(6)
    ldr = h.leader()
    assert ldr is not None and ldr.id != old
    assert ldr.core.configuration.get(old) is None


def test_leadership_transfer():
    h = Harness(3, seed=11)
    h.run_for(5)
    old = h.leader()
    target = [i for i in h.ids if i != old.id][0]
    assert h.call_leader(lambda c: c.transfer_leadership(target, h.now)) == target
    with pytest.raises(RaftError, match="leadership transfer in progress"):
        old.core.propose(b"x", h.now)
    h.run_for(1)
    assert h.leader().id == target
    with pytest.raises(RaftError, match="cannot find peer"):
        h.leader().core.transfer_leadership("nope", h.now)
    solo = Harness(1, seed=1)
    solo.run_for(5)
    with pytest.raises(RaftError, match="^cannot find peer$"):
        solo.leader().core.transfer_leadership(None, solo.now)


def test_timeout_now_starts_election_without_pre_vote():
    core = make_core("b")
    core.step("a", TimeoutNow(1, "a"), 1.0)
    r = core.ready()
    assert core.role is Role.CANDIDATE and core.term == 2
    rvs = [o.message for o in r.messages if isinstance(o.message, RequestVote)]
    assert rvs and all(m.leadership_transfer and not m.pre_vote for m in rvs)


def test_verify_leader():
    h = Harness(3, seed=2)
    h.run_for(5)
    ldr = h.leader()
    req = h.call_leader(lambda c: c.verify_leader(h.now))
    h.run_for(0.2)
    assert (req, True) in ldr.verifications
    # Cut the leader off: the round fails when it steps down.
    others = [i for i in h.ids if i != ldr.id]
    h.partition([[ldr.id], others])
    req2 = h.call_leader(lambda c: c.verify_leader(h.now))
    h.run_for(2)
    assert (req2, False) in ldr.verifications
    solo = make_core("a", peers=("a",))
    solo.tick(5.0)
    assert solo.role is Role.LEADER
    req3 = solo.verify_leader(5.0)
    assert (req3, True) in solo.ready().verifications


def test_snapshot_and_install_snapshot():
    h, ldr, lagger = leader_snapshotted_past_a_crashed_follower()
    assert ldr.core.snapshot is not None and ldr.core.first_index > 2
    assert ldr.storage.snapshot is not None
    assert any(" snapshot " in line for line in h.trace)
    h.restart(lagger)
    h.run_for(3)
    assert any("install_snapshot" in line for line in h.trace)
    lag = h.nodes[lagger]
    assert lag.fsm == ldr.fsm and len(lag.fsm) == 60
    assert lag.storage.snapshot is not None


def test_should_snapshot_and_local_snapshot_field():
    cfg = RaftConfig.for_multiplier(1, snapshot_threshold=3, trailing_logs=1, snapshot_interval=0)
    core = make_core("a", peers=("a",), cfg=cfg)
    core.tick(5.0)
    for i in range(3):
        core.propose(b"%d" % i, 5.0)
    r = core.ready()
    assert [e.index for e in r.committed] == [1, 2, 3, 4, 5]
    assert core.should_snapshot()
    core.snapshot_taken(5, b"fsm")
    r = core.ready()
    assert r.snapshot is None and r.local_snapshot.meta.index == 5
    assert r.local_snapshot.meta.configuration == conf("a") and r.compact_through == 4
    assert not core.should_snapshot()


def _single_server_with_writes(interval: float, writes: int, seed: int = 1):
    cfg = RaftConfig.for_multiplier(
        1, snapshot_threshold=3, trailing_logs=1, snapshot_interval=interval
    )
    core = make_core("a", peers=("a",), cfg=cfg, seed=seed)
    core.tick(5.0)  # elected alone
    for i in range(writes):
        core.propose(b"%d" % i, 5.0)
    core.ready()
    return core


def test_the_snapshot_threshold_is_checked_on_the_interval_timer():
    """hashicorp/raft's runSnapshots: crossing the threshold does not snapshot; the next check,
    a random [I, 2I) after the last one, does."""
    core = _single_server_with_writes(interval=10.0, writes=3)
    assert core.applied_index == 5 and not core.should_snapshot()
    first_check = core.next_deadline()  # the leader's lease check comes sooner: read it off
    checks = []
    now = 5.0
    while not core.should_snapshot():
        assert now < 100, "the threshold was never checked"
        now = min(core.next_deadline(), now + 1.0)
        core.tick(now)
        core.ready()
        checks.append(now)
    # The first check fired at a time in [10, 20) after the core was made (at 0).
    assert 10.0 <= now < 20.0, (first_check, now)
    core.snapshot_taken(5, b"fsm")
    assert core.ready().local_snapshot.meta.index == 5
    assert not core.should_snapshot()
    # The next check finds fewer than 3 new entries: no snapshot, and none until a later check.
    core.propose(b"x", now)
    core.ready()
    later = now + 25.0
    core.tick(later)
    assert not core.should_snapshot()


def test_a_check_below_the_threshold_waits_for_the_next_check():
    core = _single_server_with_writes(interval=10.0, writes=0)  # 2 entries: noop + configuration
    core.tick(19.999)
    core.tick(20.0)  # past any first check in [10, 20): it found 2 < 3 entries
    core.propose(b"y", 20.0)
    core.ready()
    assert core.applied_index == 3 and not core.should_snapshot()
    core.tick(40.0)  # past the second check (at most 20 + 20)
    assert core.should_snapshot()


def test_snapshot_interval_draws_do_not_move_elections():
    """The interval has an RNG of its own (seeded by the server id): the election timers of a
    core with the interval on are those of one with it off, for the same seed."""
    for seed in range(20):
        timers = []
        for interval in (0.0, 30.0, 0.5):
            cfg = RaftConfig.for_multiplier(1, snapshot_interval=interval)
            core = make_core("b", cfg=cfg, seed=seed)
            t = core._timer
            core.tick(t)  # pre-vote round starts; a new random election timer is drawn
            timers.append((t, core._timer))
        assert timers[0] == timers[1] == timers[2], f"seed={seed}: {timers}"


def test_snapshot_interval_checks_are_deterministic_and_spread():
    def check_times(server_id: str) -> list[float]:
        cfg = RaftConfig.for_multiplier(1, snapshot_interval=1.0)
        core = make_core(server_id, cfg=cfg)
        out, now = [], 0.0
        for _ in range(50):
            now = core._snapshot_check_at
            out.append(now)
            core.tick(now)
            core.ready()
        return out

    a = check_times("a")
    assert a == check_times("a")
    gaps = [y - x for x, y in zip([0.0, *a], a, strict=False)]
    assert all(1.0 <= g < 2.0 for g in gaps), gaps
    assert max(gaps) - min(gaps) > 0.5  # randomized, not a fixed period
    assert a != check_times("b")  # servers do not check (and snapshot) in step


def test_stale_unknown_and_self_messages_are_ignored_and_counted():
    core = _follower_with_leader()
    n = core.counters["ignored_messages"]
    core.step("zz", RequestVote(9, "zz", 9, 9, False, False), 1.0)  # unknown candidate
    core.step("b", AppendEntries(2, "b", "b:8300", 1, 1, (), 0, 1), 1.0)  # from self
    core.step("a", AppendEntries(2, "x", "a:8300", 1, 1, (), 0, 1), 1.0)  # id mismatch
    core.step("a", "garbage", 1.0)  # type: ignore[arg-type]
    core.step("c", AppendEntriesResponse(2, True, 5, 0, 1), 1.0)  # response to a non-leader
    assert core.counters["ignored_messages"] == n + 5
    assert core.term == 2
    core.step("a", AppendEntries(1, "a", "a:8300", 1, 1, (), 0, 1), 1.0)  # stale term
    assert core.counters["stale_term"] >= 1
    assert core.ready().messages[-1].message == AppendEntriesResponse(2, False, 1, 0, 1)


def test_stats_and_helpers():
    core = _follower_with_leader(now=1.0)
    s = core.stats(1.012345)
    for key in (
        "state",
        "term",
        "last_log_index",
        "last_log_term",
        "commit_index",
        "applied_index",
        "last_snapshot_index",
        "num_peers",
        "last_contact",
        "protocol_version",
    ):
        assert isinstance(s[key], str)
    assert s["state"] == "Follower" and s["num_peers"] == "2" and s["protocol_version"] == "3"
    assert s["last_contact"] == "12.345ms"
    assert make_core().stats(0)["last_contact"] == "never"
    leader = make_core("a", peers=("a",))
    leader.tick(5)
    assert leader.stats(6)["last_contact"] == "0"
    assert format_duration(1.5) == "1.5s" and format_duration(123.5) == "2m3.5s"
    assert format_duration(0.000002) == "2µs"
    nid = new_node_id(random.Random(4))
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", nid)
    assert nid == new_node_id(random.Random(4))


def test_restart_from_persisted_state_keeps_term_vote_and_log():
    h = Harness(3, seed=9)
    h.run_for(5)
    for i in range(5):
        h.propose(b"%d" % i)
    h.run_for(1)
    for nid in h.ids:
        h.crash(nid)
    for nid in h.ids:
        h.restart(nid)
    h.await_convergence(20)
    assert all(n.fsm == [b"%d" % i for i in range(5)] for n in h.live())


def test_protocol_2_ids_are_addresses():
    h = Harness(3, seed=1, protocol_version=2)
    assert h.ids == ["127.0.0.1:8300", "127.0.0.2:8300", "127.0.0.3:8300"]
    h.run_for(5)
    assert h.leader() is not None
