"""peers.json parsing (both formats, Consul's exact error texts) and RecoverCluster semantics."""

import msgpack
import pytest

from consim.raft.configuration import encode_configuration
from consim.raft.harness import Harness, fsm_restore, fsm_snapshot
from consim.raft.recovery import RecoveryError, parse_peers_json, recover_state
from consim.raft.types import (
    Configuration,
    EntryType,
    HardState,
    LogEntry,
    PersistentState,
    Role,
    Server,
    Snapshot,
    SnapshotMeta,
    Suffrage,
)

P = "recovery failed to parse peers.json: "


def test_protocol_2_format():
    c = parse_peers_json('["10.1.0.1:8300", "10.1.0.2:8300"]', 2)
    assert c == Configuration(
        (Server("10.1.0.1:8300", "10.1.0.1:8300"), Server("10.1.0.2:8300", "10.1.0.2:8300"))
    )


def test_protocol_3_format():
    text = b"""[
      {"id": "adf4238a-882b-9ddc-4a9d-5b6758e4159e", "address": "10.1.0.1:8300", "non_voter": false},
      {"id": "8b6dda82-3103-11e7-93ae-92361f002671", "address": "10.1.0.2:8300", "non_voter": true},
      {"id": "97e17742-3103-11e7-93ae-92361f002671", "address": "10.1.0.3:8300"}
    ]"""
    c = parse_peers_json(text, 3)
    assert [s.suffrage for s in c.servers] == [Suffrage.VOTER, Suffrage.NONVOTER, Suffrage.VOTER]
    assert c.servers[0].id == "adf4238a-882b-9ddc-4a9d-5b6758e4159e"


@pytest.mark.parametrize(
    "text,version,expected",
    [
        ('["a:1", ""]', 2, P + "empty ID in configuration: {[{Voter a:1 a:1} {Voter  }]}"),
        ('[{"id": "", "address": "a:1"}]', 3, P + "empty ID in configuration: {[{Voter  a:1}]}"),
        ('[{"id": "x", "address": ""}]', 3, P + "empty address in configuration: {Voter x }"),
        (
            '[{"id": "x", "address": "a:1"}, {"id": "x", "address": "a:2"}]',
            3,
            P + "found duplicate ID in configuration: x",
        ),
        (
            '[{"id": "x", "address": "a:1"}, {"id": "y", "address": "a:1"}]',
            3,
            P + "found duplicate address in configuration: a:1",
        ),
        ('["a:1", "a:1"]', 2, P + "found duplicate ID in configuration: a:1"),
        (
            '[{"id": "x", "address": "a:1", "non_voter": true}]',
            3,
            P + "need at least one voter in configuration: {[{Nonvoter x a:1}]}",
        ),
        ("[]", 3, P + "need at least one voter in configuration: {[]}"),
        ("[]", 2, P + "need at least one voter in configuration: {[]}"),
    ],
)
def test_validation_errors_have_consul_texts(text, version, expected):
    with pytest.raises(RecoveryError) as ei:
        parse_peers_json(text, version)
    assert str(ei.value) == expected


@pytest.mark.parametrize(
    "text,version",
    [("[", 3), ("not json", 2), ('{"id": "x"}', 3), ("[1]", 2), ('[{"id": 5}]', 3), (b"\xff", 3)],
)
def test_parse_failures(text, version):
    with pytest.raises(RecoveryError) as ei:
        parse_peers_json(text, version)
    assert str(ei.value).startswith(P)


def _state():
    cfg = Configuration((Server("a", "a:1"), Server("b", "b:1"), Server("c", "c:1")))
    snap = Snapshot(SnapshotMeta(3, 2, cfg, 1), fsm_snapshot([b"x", b"y"]))
    entries = (
        LogEntry(4, 2, EntryType.COMMAND, b"z"),
        LogEntry(5, 3, EntryType.CONFIGURATION, encode_configuration(cfg)),
        LogEntry(6, 3, EntryType.COMMAND, b"uncommitted"),
    )
    return PersistentState(HardState(3, "b"), snap, entries)


def apply_all(state: PersistentState) -> bytes:
    fsm = fsm_restore(state.snapshot.data) if state.snapshot else []
    fsm += [e.data for e in state.entries if e.type is EntryType.COMMAND]
    return fsm_snapshot(fsm)


def test_recover_state_applies_everything_and_snapshots_new_configuration():
    new = parse_peers_json('[{"id": "a", "address": "a:1", "non_voter": false}]', 3)
    state = _state()
    out = recover_state(state, new, apply_all)
    assert out.entries == ()
    assert out.hard_state == HardState(3, "b")
    meta = out.snapshot.meta
    assert (meta.index, meta.term, meta.configuration, meta.configuration_index) == (6, 3, new, 1)
    assert msgpack.unpackb(out.snapshot.data) == [b"x", b"y", b"z", b"uncommitted"]


def test_recover_state_refuses_bad_input_without_half_applying():
    state = _state()
    bad = Configuration((Server("a", "a:1", Suffrage.NONVOTER),))
    with pytest.raises(RecoveryError, match="need at least one voter"):
        recover_state(state, bad, apply_all)
    calls = []

    def boom(s):
        calls.append(s)
        raise RuntimeError("fsm exploded")

    with pytest.raises(RuntimeError):
        recover_state(state, Configuration((Server("a", "a:1"),)), boom)
    assert state == _state()  # input untouched: nothing half applied
    empty = PersistentState(HardState(), None, ())
    with pytest.raises(RecoveryError, match="refused to recover cluster with no initial state"):
        recover_state(empty, Configuration((Server("a", "a:1"),)), apply_all)


def test_single_survivor_recovers_and_leads():
    h = Harness(3, seed=4)
    h.run_for(5)
    for i in range(10):
        h.propose(b"%d" % i)
    h.run_for(1)
    survivor = h.ids[0]
    for nid in h.ids:
        h.crash(nid)
    node = h.nodes[survivor]
    text = f'[{{"id": "{survivor}", "address": "{node.address}", "non_voter": false}}]'
    new = parse_peers_json(text, 3)
    recovered = recover_state(node.storage.load(), new, apply_all)
    node.storage.hard_state = recovered.hard_state
    node.storage.snapshot = recovered.snapshot
    node.storage.entries = []
    h.restart(survivor)
    h.run_for(5)
    assert node.core.role is Role.LEADER
    assert node.core.configuration == new
    assert node.fsm == [b"%d" % i for i in range(10)]
    node.core.propose(b"after", h.now)
    h._after(node)
    assert node.fsm[-1] == b"after"
