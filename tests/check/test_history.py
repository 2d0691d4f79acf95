"""history.jsonl: Jepsen's shape, validated line by line."""

from __future__ import annotations

import json

import pytest

from consim.check.history import History, HistoryError


def sample() -> History:
    h = History()
    h.nemesis("start", {"fault": "partition", "groups": [["dc1-s1"], ["dc1-s2", "dc1-s3"]]}, 0.5)
    h.invoke(3, "write", "k1", "v1", 1.0, server="dc1-s2")
    h.invoke(1, "read", "k1", None, 1.1, consistency="stale")
    h.complete(1, "ok", None, 1.2, index=7)
    h.complete(3, "info", "v1", 3.0, error="timeout")
    h.invoke(2, "cas", "k2", [None, "v2"], 3.1)
    h.complete(2, "fail", [None, "v2"], 3.4)
    h.invoke(4, "write", "k2", "v3", 3.5)  # never completes
    h.nemesis("stop", {"fault": "partition"}, 4.0)
    return h


def test_jepsen_shape_with_extra_fields_flattened():
    lines = sample().to_jsonl().splitlines()
    assert json.loads(lines[1]) == {
        "process": 3,
        "type": "invoke",
        "f": "write",
        "key": "k1",
        "value": "v1",
        "time": 1.0,
        "server": "dc1-s2",
    }
    assert json.loads(lines[3])["type"] == "ok" and json.loads(lines[3])["f"] == "read"
    assert json.loads(lines[0])["process"] == "nemesis"


def test_round_trip_and_hash(tmp_path):
    h = sample()
    path = tmp_path / "history.jsonl"
    h.write_jsonl(path)
    again = History.read_jsonl(path)
    assert again.to_jsonl() == h.to_jsonl()
    assert again.hash() == h.hash()
    h.invoke(9, "read", "k1", None, 5.0)
    assert h.hash() != again.hash()


def test_operations_pair_invokes_and_completions():
    ops = sample().operations()
    assert [(op.process, op.f, op.type) for op in ops] == [
        (3, "write", "info"),
        (1, "read", "ok"),
        (2, "cas", "fail"),
        (4, "write", "info"),
    ]
    read = ops[1]
    assert read.output is None and (read.invoke_time, read.complete_time) == (1.1, 1.2)
    assert read.extra == {"consistency": "stale", "index": 7}
    assert ops[3].complete_time is None  # still open at the end: unknown outcome
    assert ops[0].end == float("inf")
    assert "p1 k1 read -> absent ok" in read.describe()
    assert len(sample().nemesis_events()) == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"process": 1, "type": "invoke", "f": "read", "key": "k", "value": null}',
            "field 'time'",
        ),
        (
            '{"process": -1, "type": "invoke", "f": "read", "key": "k", "value": null, "time": 1}',
            "field 'process'",
        ),
        (
            '{"process": 1, "type": "done", "f": "read", "key": "k", "value": null, "time": 1}',
            "field 'type'",
        ),
        (
            '{"process": 1, "type": "invoke", "f": "delete", "key": "k", "value": null, "time": 1}',
            "field 'f'",
        ),
        (
            '{"process": 1, "type": "invoke", "f": "read", "key": 5, "value": null, "time": 1}',
            "field 'key'",
        ),
        (
            '{"process": 1, "type": "invoke", "f": "cas", "key": "k", "value": "x", "time": 1}',
            "field 'value'",
        ),
        ('{"process": 1, "type": "invoke", "f": "write", "key": "k", "time": 1}', "field 'value'"),
        (
            '{"process": 1, "type": "ok", "f": "read", "key": "k", "value": null, "time": 1}',
            "no open invoke",
        ),
        ("[1, 2]", "expected a JSON object"),
        ('{"process": 1,', "not JSON"),
    ],
)
def test_a_bad_line_is_named_by_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "h.jsonl"
    good = '{"process": 0, "type": "invoke", "f": "write", "key": "k", "value": "a", "time": 0}'
    path.write_text(good + "\n\n" + line + "\n")
    with pytest.raises(HistoryError) as err:
        History.read_jsonl(path)
    assert str(err.value).startswith(f"{path}:3: "), str(err.value)
    assert message in str(err.value)


def test_completions_must_match_their_invoke(tmp_path):
    lines = [
        {"process": 0, "type": "invoke", "f": "write", "key": "k", "value": "a", "time": 1},
        {"process": 0, "type": "ok", "f": "write", "key": "other", "value": "a", "time": 2},
    ]
    text = "\n".join(json.dumps(x) for x in lines)
    with pytest.raises(HistoryError, match=r"h:2: field 'key'"):
        History.from_jsonl(text, name="h")
    lines[1]["key"] = "k"
    lines[1]["time"] = 0.5
    with pytest.raises(HistoryError, match=r"h:2: field 'time': 0.5 is before its invoke"):
        History.from_jsonl("\n".join(json.dumps(x) for x in lines), name="h")
    lines[1] = dict(lines[0], time=1.5)
    with pytest.raises(HistoryError, match=r"h:2: field 'process': process 0 invokes again"):
        History.from_jsonl("\n".join(json.dumps(x) for x in lines), name="h")


def test_a_missing_file_is_a_history_error(tmp_path):
    with pytest.raises(HistoryError, match="cannot read"):
        History.read_jsonl(tmp_path / "nope.jsonl")


def test_recording_api_refuses_misuse():
    h = History()
    with pytest.raises(HistoryError, match="no open invoke"):
        h.complete(1, "ok", None, 1.0)
    h.invoke(1, "read", "k", None, 1.0)
    with pytest.raises(HistoryError, match="invokes again"):
        h.invoke(1, "read", "k", None, 1.5)
    with pytest.raises(HistoryError, match="ok, fail or info"):
        h.complete(1, "maybe", None, 2.0)
