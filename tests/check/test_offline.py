"""Checking a history file on its own: verdict, exit code, JSON and report."""

from __future__ import annotations

import io
import json

from consim.check.offline import check_history_file

from .helpers import history


def test_exit_codes_json_and_report(tmp_path):
    stale = history(
        (0, "write", "k", "a", 0, 1, "ok"),
        (0, "write", "k", "b", 2, 3, "ok"),
        (1, "read", "k", None, 4, 5, "ok", "a"),
    )
    path = tmp_path / "h.jsonl"
    stale.write_jsonl(path)
    out = io.StringIO()
    code = check_history_file(
        path, json_path=tmp_path / "r.json", report_path=tmp_path / "r.html", out=out
    )
    assert code == 1
    assert (
        "linearizability: invalid" in out.getvalue() and "#2 p1 k read -> 'a' ok" in out.getvalue()
    )
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["verdict"] == "invalid" and data["history_hash"] == stale.hash()
    assert len(data["linearizability"]["window"]) == 3
    assert 'id="window"' in (tmp_path / "r.html").read_text()

    history((0, "write", "k", "a", 0, 1, "ok")).write_jsonl(path)
    assert check_history_file(path, out=io.StringIO()) == 0
    ops = [(p, "write", "k", f"v{p}", 0, 10, "ok") for p in range(6)]
    history(*ops, (9, "read", "k", None, 11, 12, "ok", "v3")).write_jsonl(path)
    assert check_history_file(path, budget=2, out=io.StringIO()) == 3


def test_a_bad_file_is_exit_2_with_file_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"process": 0, "type": "invoke", "f": "write", "key": "k", "time": 0}\n')
    err = io.StringIO()
    assert check_history_file(path, out=io.StringIO(), err=err) == 2
    assert err.getvalue() == (
        f"consim check: error: {path}:1: field 'value': expected a value (null is allowed), "
        "got nothing\n"
    )
    assert check_history_file(tmp_path / "missing.jsonl", out=io.StringIO(), err=err) == 2
