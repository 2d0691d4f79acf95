"""Every shipped scenario passes in virtual time; runs are reproducible; bad files are rejected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from consim.scenario.cli import run_files
from consim.scenario.model import ScenarioError, load_scenario
from consim.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))


def test_course_is_present():
    names = [p.name for p in SCENARIOS]
    assert len(names) >= 8
    assert names[0].startswith("01-")


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_passes_in_virtual_time(path):
    scenario = load_scenario(path)
    assert scenario.summary and any(s.note for s in scenario.steps)
    result = run_scenario(scenario)
    assert result.ok, result.failure
    assert all(s.status == "ok" for s in result.steps)
    # Every step left its result in the event log: the timeline and report read it from there.
    assert len(result.events.of_kind("step")) == len(scenario.steps)


def test_same_seed_same_trace_in_fresh_processes(tmp_path):
    hashes = set()
    for hashseed in ("0", "1"):
        out = tmp_path / f"r{hashseed}.json"
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        proc = subprocess.run(
            [sys.executable, "-m", "consim.cli", "run", str(SCENARIOS[0]), "--json", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        hashes.add(json.loads(out.read_text())["runs"][0]["trace_hash"])
    assert len(hashes) == 1


def test_seed_changes_the_trace():
    scenario = load_scenario(SCENARIOS[0])
    a = run_scenario(scenario, seed=1)
    b = run_scenario(scenario, seed=2)
    assert a.ok and b.ok
    assert a.trace_hash != b.trace_hash


def test_timeline_shows_notes_steps_and_no_debug_noise(capsys):
    import io

    out = io.StringIO()
    code = run_files([str(SCENARIOS[0])], out=out, err=io.StringIO())
    text = out.getvalue()
    assert code == 0
    assert "# The leader crashes." in text
    assert "[ok] kill leader" in text
    assert "entering leader state" in text
    assert "term changed" not in text  # DEBUG stays out by default
    assert "==> PASS leader-loss" in text
    assert "$ consul operator raft list-peers" in text


def test_seeds_range_summarizes_and_reports_failing_seed(tmp_path):
    import io

    bad = tmp_path / "fast-leader.toml"
    # 100ms is too short for a first election with raft_multiplier 1 for every seed.
    bad.write_text(
        'name = "too-fast"\n[cluster]\ndatacenters = { dc1 = 3 }\nraft_multiplier = 1\n'
        '[[step]]\nwait = "leader"\nwithin = "1100ms"\n'
    )
    out, err = io.StringIO(), io.StringIO()
    report = tmp_path / "r.html"
    code = run_files(
        [str(bad)],
        seeds=range(1, 9),
        out=out,
        err=err,
        json_path=str(tmp_path / "r.json"),
        report_path=str(report),
    )
    data = json.loads((tmp_path / "r.json").read_text())
    failed = [r["seed"] for r in data["runs"] if not r["ok"]]
    assert len(data["runs"]) == 8
    assert "/8 seeds passed (1..8)" in out.getvalue()
    assert "[#" not in err.getvalue() and "\r" not in err.getvalue()  # err is no terminal
    if failed:
        assert code == 1
        assert f"seed {failed[0]} FAILED" in out.getvalue()
        assert f"--seed {failed[0]}" in out.getvalue()
    else:
        assert code == 0
    assert report.exists()


# ---- validation ------------------------------------------------------------------------------
def _write(tmp_path, body: str) -> Path:
    p = tmp_path / "x.toml"
    p.write_text('name = "x"\n[cluster]\ndatacenters = { dc1 = 3 }\n' + body)
    return p


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[[step]]\nwait = "leader"\n[[step]]\nnote = "n"\n[[step]]\nwait = "leader"\nwithin = 5\n',
            "x.toml: step 3: field 'within': expected a duration like \"5s\", got 5",
        ),
        (
            '[[step]]\nkill = "dc9-s1"\n',
            "step 1: field 'kill': expected a server name (dc1-s1, dc1-s2, dc1-s3)",
        ),
        (
            '[[step]]\nkill = "leader"\nrestart = "leader"\n',
            "step 1: expected exactly one action, got kill and restart",
        ),
        ('[[step]]\nwithin = "5s"\n', "step 1: expected exactly one action"),
        (
            '[[step]]\nkill = "leader"\nwithin = "1s"\n',
            "step 1: field 'within': not allowed in a 'kill' step",
        ),
        ('[[step]]\nhttp = "FETCH /x"\n', "step 1: field 'http': expected a request like"),
        ('[[step]]\nwait = "voters"\n', "step 1: field 'count': required"),
        ('[[step]]\nwait = "soon"\n', "field 'wait': expected one of"),
        (
            '[[step]]\npeers_json = { on = "leader", servers = "all-running" }\n',
            'needs a data directory: set [cluster] data_dir = "tmp"',
        ),
        ('[[step]]\nconsul = "monitor"\n', "field 'consul': expected one of"),
        (
            '[[step]]\nwait = "member-status"\nmember = "dc1-s2"\nstatus = "gone"\n',
            'step 1: field \'status\': expected "alive", "failed" or "left", got "gone"',
        ),
        (
            '[[step]]\nwait = "member-status"\nmember = "dc1-s2"\nstatus = "alive"\npool = "x"\n',
            'step 1: field \'pool\': expected "lan" or "wan"',
        ),
        (
            '[[step]]\nwait = "member-status"\nstatus = "alive"\n',
            "step 1: field 'member': required",
        ),
        (
            '[[step]]\nwait = "keyring-converged"\nkey = "short"\n',
            "step 1: field 'key': expected a base64 gossip key",
        ),
        ('[[step]]\nwait = "leader"\nkey = "AAAA"\n', "field 'key': only allowed with"),
        (
            '[[step]]\nload = { rate = 5, background = "yes" }\n',
            "step 1: field 'load.background': expected true or false",
        ),
        (
            '[[step]]\nconsul = "operator raft remove-peer -address={rpc:dc1-s9}"\n',
            "step 1: field 'consul': {rpc:dc1-s9} names no server",
        ),
        (
            '[[step]]\nload = { rate = 5, op = "write", consistency = "stale" }\n',
            "field 'load.consistency'",
        ),
        (
            '[[step]]\nassert = { leader = "leader", bogus = true }\n',
            "field 'assert.bogus': unknown assertion",
        ),
        (
            '[[step]]\npartition = [["dc1-s1"], ["dc1-s1", "dc1-s2"]]\n',
            "a server appears in more than one group",
        ),
    ],
)
def test_validation_errors_name_file_step_and_field(tmp_path, body, message):
    with pytest.raises(ScenarioError) as info:
        load_scenario(_write(tmp_path, body))
    assert message in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "x.toml"))


def test_cluster_table_errors(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[cluster]\nraft_multiplier = "fast"\n[[step]]\nsleep = "1s"\n')
    with pytest.raises(
        ScenarioError, match=r"\[cluster\]: field 'raft_multiplier': expected a number"
    ):
        load_scenario(p)
    p.write_text('[cluster]\n[cluster.acl]\nenabled = "yes"\n[[step]]\nsleep = "1s"\n')
    with pytest.raises(ScenarioError, match="acl.enabled: must be true or false"):
        load_scenario(p)


def test_invalid_file_exits_2_before_anything_runs(tmp_path):
    bad = _write(tmp_path, "[[step]]\nsleep = 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "consim.cli", "run", str(SCENARIOS[0]), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""  # the valid first file did not run either
    assert "step 1: field 'sleep': expected a duration" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "consim.cli", "validate", *map(str, SCENARIOS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(": ok (") == len(SCENARIOS)


def test_failing_step_reports_and_skips_the_rest(tmp_path):
    p = _write(
        tmp_path,
        '[[step]]\nwait = "leader"\n[[step]]\nhttp = "GET /v1/kv/missing"\n'
        'on = "leader"\nexpect = { status = 200 }\n[[step]]\nkill = "leader"\n',
    )
    result = run_scenario(load_scenario(p))
    assert not result.ok
    assert [s.status for s in result.steps] == ["ok", "failed", "skipped"]
    assert result.steps[1].detail == "status 404, expected 200"
    assert result.failure == "step 2 (GET /v1/kv/missing on leader): status 404, expected 200"


def test_background_load_runs_across_later_steps_and_reports(tmp_path):
    p = _write(
        tmp_path,
        '[[step]]\nwait = "leader"\n'
        '[[step]]\nload = { op = "write", rate = 20, duration = "3s", on = "leader", background = true }\n'
        "expect = { min_ok = 0.5 }\n"
        '[[step]]\nkill = "follower"\n[[step]]\nsleep = "1s"\n'
        '[[step]]\nassert = { kv = { key = "load", value = "59" } }\nwithin = "5s"\n',
    )
    result = run_scenario(load_scenario(p))
    assert result.ok, result.failure
    load = result.steps[1]
    assert load.background and load.status == "ok"
    assert load.detail.startswith("60/60 answered on dc1-")
    # it ran while steps 3 and 4 did: it started before the kill and finished after the sleep
    assert load.started <= result.steps[2].started and load.finished >= result.steps[3].finished
    assert load.to_json()["background"] is True
    assert [e.fields["step"] for e in result.events.of_kind("step")] == [1, 3, 4, 2, 5]
    assert len(result.events.of_kind("load_started")) == 1


def test_background_load_is_skipped_when_the_run_fails(tmp_path):
    p = _write(
        tmp_path,
        '[[step]]\nwait = "leader"\n'
        '[[step]]\nload = { op = "read", rate = 10, duration = "30s", background = true }\n'
        '[[step]]\nhttp = "GET /v1/kv/nothing"\non = "leader"\nexpect = { status = 200 }\n',
    )
    result = run_scenario(load_scenario(p))
    assert [s.status for s in result.steps] == ["ok", "skipped", "failed"]
    assert result.steps[1].detail.startswith("stopped early, the run ended: ")
    assert result.failure.startswith("step 3 ")


def test_member_status_and_keyring_waits(tmp_path):
    p = tmp_path / "g.toml"
    key2 = "F7/pxo9AkvP7GPjhmuRFKWLlDbO5EZyrD2KpD/LWzeU="
    p.write_text(
        'name = "g"\n[cluster]\ndatacenters = { dc1 = 3 }\nraft_multiplier = 1\n'
        'encrypt = "0GMr/ynjxnKCWKTXeDbLcA=="\n'
        '[[step]]\nwait = "keyring-converged"\nkey = "0GMr/ynjxnKCWKTXeDbLcA=="\n'
        '[[step]]\nwait = "member-status"\nmember = "dc1-s3"\nstatus = "alive"\npool = "wan"\n'
        '[[step]]\nkill = "dc1-s3"\n'
        '[[step]]\nwait = "member-status"\nmember = "dc1-s3"\nstatus = "failed"\nwithin = "20s"\n'
        # the WAN pool (30 s suspicion timeout for 3 members) still counts dc1-s3
        f'[[step]]\nconsul = "keyring -install={key2}"\non = "dc1-s1"\n'
        'expect = { exit = 1, stderr_contains = "WAN error: 2/3 nodes reported success" }\n'
        '[[step]]\nwait = "keyring-converged"\nwithin = "1s"\n'
        f'[[step]]\nwait = "keyring-converged"\nkey = "{key2}"\nwithin = "1s"\n'
    )
    result = run_scenario(load_scenario(p))
    assert [s.status for s in result.steps] == ["ok"] * 6 + ["failed"]
    assert "dc1-s3.dc1 alive after" in result.steps[1].detail
    assert "dc1-s3 failed after" in result.steps[3].detail
    assert "in the view of dc1-s1, dc1-s2" in result.steps[3].detail
    # the running servers hold both keys, the old one still primary: converged
    assert "every pool holds 2 key(s), primary 0GMr/ynj..." in result.steps[5].detail
    # a primary the cluster never switched to: the failure names every pool's keyring
    detail = result.steps[6].detail
    assert "keyrings did not converge with primary F7/pxo9A... within 1s" in detail
    assert "dc1-s1 LAN: 0GMr/ynj..., F7/pxo9A..." in detail and "dc1-s3" not in detail


def test_readme_scenario_example_validates(tmp_path):
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Scenario files") :]
    example = re.search(r"```toml\n(.*?)```", section, re.S)
    assert example is not None
    p = tmp_path / "readme.toml"
    p.write_text(example.group(1))
    scenario = load_scenario(p)
    kinds = {s.action for s in scenario.steps}
    conditions = {s.args.condition for s in scenario.steps if s.action == "wait"}
    assert {"wait", "kill", "partition", "http", "consul", "load", "assert"} <= kinds
    assert {"member-status", "keyring-converged"} <= conditions
    assert any(s.action == "load" and s.args.background for s in scenario.steps)


@pytest.mark.parametrize("interval", ["0s", "0", "4s"])
def test_snapshot_interval_from_the_cluster_table(tmp_path, interval):
    """``[cluster] snapshot_interval`` reaches the servers: with "0s" a server snapshots while
    the writes that cross the threshold are still coming; with "4s" (Consul's check on a random
    [4s, 8s) timer) not before 4 s after it started, each server at its own time."""
    p = tmp_path / "x.toml"
    p.write_text(
        'name = "x"\n[cluster]\ndatacenters = { dc1 = 3 }\nsnapshot_threshold = 16\n'
        f'snapshot_interval = "{interval}"\n'
        '[[step]]\nwait = "leader"\n'
        '[[step]]\nload = { op = "write", rate = 40, duration = "1s", on = "leader" }\n'
        '[[step]]\nsleep = "9s"\n'
    )
    result = run_scenario(load_scenario(p))
    assert result.ok, result.failure
    load = result.steps[1]
    snapshots = result.events.of_kind("snapshot")
    first = {}
    for e in snapshots:
        first.setdefault(e.node, e.time)
    assert sorted(first) == ["dc1-s1", "dc1-s2", "dc1-s3"], snapshots
    if interval in ("0s", "0"):  # "0": Go's one duration without a unit
        assert min(first.values()) < load.finished
    else:
        assert min(first.values()) >= 4.0
        assert len(set(first.values())) == 3  # the servers' checks are not in step


def test_snapshot_interval_under_hashicorps_floor_is_refused(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text(
        'name = "x"\n[cluster]\ndatacenters = { dc1 = 3 }\nsnapshot_interval = "1ms"\n'
        '[[step]]\nwait = "leader"\n'
    )
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    assert 'field \'snapshot_interval\': expected a duration of "0s" or at least "5ms"' in str(
        exc.value
    )
