"""consim check campaigns in virtual time: the checkers say "invalid" where Consul's documents say
reads are not linearizable, and "valid" where they are. Each test prints the seeds it ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from consim.check.campaign import CheckConfig, run_campaign, run_check
from consim.cli import main

SCRIPT = Path(__file__).with_name("history_hash_run.py")


def first_invalid(config: CheckConfig, seeds: range) -> dict | None:
    for seed in seeds:
        result = run_check(config, seed).result
        print(f"seed {seed}: {result['verdict']} ({result['ops']} ops)")
        if result["verdict"] == "invalid":
            return result
    return None


def test_stale_reads_with_the_leader_isolated_are_found_invalid_within_20_seeds() -> None:
    config = CheckConfig(consistency="stale", nemesis=("partition:isolate-leader",))
    result = first_invalid(config, range(1, 21))
    assert result is not None, "no invalid history in 20 seeds of ?stale reads"
    lin = result["linearizability"]
    assert lin["verdict"] == "invalid"
    # The window holds a read that returned an overwritten value.
    assert any(op["f"] == "read" for op in lin["window"])
    assert f"--seed {result['seed']}" in result["command"]
    assert "--consistency stale" in result["command"]


def test_consistent_reads_stay_valid_under_every_fault() -> None:
    config = CheckConfig(
        consistency="consistent",
        nemesis=("partition", "kill", "pause", "loss", "delay", "membership"),
        interval=3.0,
    )
    results = run_campaign(config, range(1, 7))
    for r in results:
        print(f"seed {r['seed']}: {r['verdict']}, {r['ops']} ops, {r['faults']} faults")
    assert [r["verdict"] for r in results] == ["valid"] * 6, [
        r["linearizability_text"] for r in results if r["verdict"] != "valid"
    ]
    assert sum(r["faults"] for r in results) >= 18
    assert all(r["counts"]["ok"] > 50 for r in results)
    # Every invariant looked at something (not vacuously valid).
    for r in results:
        for name in ("state_machine_safety", "monotonic_indexes", "acknowledged_writes"):
            assert r["invariants"][name]["checked"] > 0, (r["seed"], name)


def test_default_reads_are_not_linearizable_when_the_old_leader_is_paused() -> None:
    """Consul's documented window: a paused leader, resumed after a new one was elected, answers
    the default-mode reads queued meanwhile from its own stale state before it learns the new
    term. Clients give up after 3 s, the pause lasts 8 s, so reads queue on it after the new
    leader has acknowledged writes."""
    config = CheckConfig(
        consistency="default", nemesis=("pause",), duration=30, interval=8, timeout=3
    )
    result = first_invalid(config, range(1, 6))
    assert result is not None
    window = result["linearizability"]["window"]
    # The stale answer came when the pause ended: find the pause and the read completing at it.
    starts = [e for e in result_history(config, result["seed"]) if e.get("process") == "nemesis"]
    stops = {e["time"] for e in starts if e["f"] == "stop"}
    assert any(op["complete_time"] in stops for op in window if op["f"] in ("read", "cas"))
    # The same seeds with ?consistent reads are valid.
    same = run_check(
        CheckConfig(
            consistency="consistent", nemesis=("pause",), duration=30, interval=8, timeout=3
        ),
        result["seed"],
    ).result
    assert same["verdict"] == "valid", same["linearizability_text"]


def result_history(config: CheckConfig, seed: int) -> list[dict]:
    run = run_check(config, seed)
    return [json.loads(line) for line in run.history.to_jsonl().splitlines()]


def _spawn(seed: int, hashseed: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_same_seed_same_history_hash_in_three_processes() -> None:
    runs = {h: _spawn(4, h) for h in ("0", "1", "777")}
    other = _spawn(5, "0")
    out = {}
    for h, proc in runs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        out[h] = stdout.split()
    assert len({tuple(v) for v in out.values()}) == 1, out
    digest, ops = out["0"]
    assert int(ops) > 50
    stdout, stderr = other.communicate(timeout=120)
    assert other.returncode == 0, stderr
    assert stdout.split()[0] != digest


def test_cli_exit_codes_json_store_and_history(tmp_path: Path, capsys) -> None:
    store = tmp_path / "store"
    out_json = tmp_path / "out.json"
    code = main(
        [
            "check",
            "--seeds",
            "3..4",
            "--jobs",
            "2",
            "--consistency",
            "stale",
            "--nemesis",
            "partition",
            "--store",
            str(store),
            "--json",
            str(out_json),
        ]
    )
    printed = capsys.readouterr().out
    data = json.loads(out_json.read_text())
    verdicts = [s["verdict"] for s in data["seeds"]]
    print(printed)
    assert code == (1 if "invalid" in verdicts else 0)
    assert [s["seed"] for s in data["seeds"]] == [3, 4]
    assert "seed  ops  faults  verdict  wall" in printed
    for s in data["seeds"]:
        folder = store / f"seed-{s['seed']}"
        assert (folder / "report.html").read_text().startswith("<!")
        stored = json.loads((folder / "results.json").read_text())
        assert stored["history_hash"] == s["history_hash"]
        if s["verdict"] == "invalid":
            assert f"reproduce: {s['command']}" in printed
            # The stored history checks to the same verdict on its own (exit 1).
            assert main(["check", "--history", str(folder / "history.jsonl")]) == 1
    assert "invalid" in verdicts  # ?stale under partitions: at least one of two seeds


def test_cli_valid_run_exits_0_and_bad_usage_exits_2(capsys) -> None:
    code = main(["check", "--seed", "2", "--consistency", "consistent", "--duration", "10"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "seed 2: valid" in out
    # The search budget exhausted: unknown, exit 3.
    assert main(["check", "--seed", "2", "--duration", "10", "--budget", "1"]) == 3
    assert "seed 2: unknown" in capsys.readouterr().out
    assert main(["check", "--rate", "0"]) == 2
    assert "rate must be > 0" in capsys.readouterr().err


def test_report_of_a_single_seed(tmp_path: Path, capsys) -> None:
    report = tmp_path / "r.html"
    code = main(
        [
            "check",
            "--seed",
            "3",
            "--consistency",
            "stale",
            "--duration",
            "8",
            "--report",
            str(report),
        ]
    )
    assert code == 1
    assert "report written to" in capsys.readouterr().out
    assert "invalid" in report.read_text()
