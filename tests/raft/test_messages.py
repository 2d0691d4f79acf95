import msgpack
import pytest

from consim.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
    TimeoutNowResponse,
    message_from_wire,
    message_to_wire,
)
from consim.raft.types import EntryType, LogEntry, MalformedMessage, SnapshotMeta

from .conftest import conf, make_core

SAMPLES = [
    RequestVote(3, "a", 10, 2, True, False),
    RequestVoteResponse(3, True, True),
    AppendEntries(
        4,
        "a",
        "a:8300",
        1,
        1,
        (LogEntry(2, 4, EntryType.COMMAND, b"x"), LogEntry(3, 4, EntryType.NOOP)),
        1,
        7,
    ),
    AppendEntriesResponse(4, False, 9, 5, 7),
    InstallSnapshot(4, "a", "a:8300", SnapshotMeta(10, 3, conf("a", "b"), 1), b"data", 0, 4, True),
    InstallSnapshot(4, "a", "a:8300", SnapshotMeta(10, 3, conf("a", "b"), 1), b"da", 2, 10, False),
    InstallSnapshotResponse(4, True, 10),
    InstallSnapshotResponse(4, True, 10, 2, False),
    TimeoutNow(4, "a"),
    TimeoutNowResponse(4, True),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_roundtrip_through_msgpack(msg):
    wire = msgpack.unpackb(msgpack.packb(message_to_wire(msg), use_bin_type=True), raw=False)
    assert message_from_wire(wire) == msg


def _bad_variants():
    rv = message_to_wire(SAMPLES[0])
    ae = message_to_wire(SAMPLES[2])
    snap = message_to_wire(SAMPLES[4])
    yield "not a dict", [1, 2]
    yield "no tag", {k: v for k, v in rv.items() if k != "type"}
    yield "unknown tag", {**rv, "type": "Bogus"}
    yield "missing field", {k: v for k, v in rv.items() if k != "term"}
    yield "extra field", {**rv, "x": 1}
    yield "negative term", {**rv, "term": -1}
    yield "bool as int", {**rv, "term": True}
    yield "str as int", {**rv, "last_log_index": "3"}
    yield "int as bool", {**rv, "pre_vote": 1}
    yield "int as str", {**rv, "candidate_id": 5}
    yield "entries not list", {**ae, "entries": "x"}
    yield "entry bad shape", {**ae, "entries": [[2, 4, 0]]}
    yield "entry bad type", {**ae, "entries": [[2, 4, 99, b""]]}
    yield "entries gap", {**ae, "entries": [[3, 4, 0, b""]]}
    yield "entry data str", {**ae, "entries": [[2, 4, 0, "x"]]}
    yield "snapshot data str", {**snap, "data": "x"}
    yield "snapshot meta bad", {**snap, "meta": {"index": 1}}
    yield "snapshot meta negative", {**snap, "meta": {**snap["meta"], "index": -5}}
    yield "chunk past size", {**snap, "offset": 3}
    yield "chunk size short", {**snap, "size": 3}
    yield "done before the end", {**snap, "size": 9}
    yield "not done at the end", {**snap, "done": False}
    yield "negative offset", {**snap, "offset": -1}
    yield "chunk offset str", {**snap, "offset": "0"}
    yield "snapshot conf bad", {**snap, "meta": {**snap["meta"], "configuration": [{"id": 1}]}}
    yield "none", None


@pytest.mark.parametrize("label,obj", list(_bad_variants()), ids=[v[0] for v in _bad_variants()])
def test_malformed_rejected(label, obj):
    with pytest.raises(MalformedMessage):
        message_from_wire(obj)


@pytest.mark.parametrize("label,obj", list(_bad_variants()), ids=[v[0] for v in _bad_variants()])
def test_core_counts_malformed(label, obj):
    core = make_core()
    before = core.counters["ignored_messages"]
    core.step_wire("b", obj, 0.1)
    assert core.counters["ignored_messages"] == before + 1
    assert core.counters["malformed"] >= 1
    r = core.ready()
    assert not r.messages and r.hard_state is None
