"""Replay of a virtual-time run (consim/ui/replay.py, ``consim run FILE --ui OUT``): recording
changes nothing in the run, the page is self-contained, and its data holds the run's frames,
messages, log lines and the scenario's notes at their steps."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stderr
from pathlib import Path

from consim.scenario.cli import run_files
from consim.scenario.model import load_scenario
from consim.scenario.runner import run_scenario
from consim.ui.replay import ReplayRecorder, render_replay, replay_data

ROOT = Path(__file__).resolve().parents[2]
LEADER_LOSS = ROOT / "scenarios" / "01-leader-loss.toml"


def record(path: Path = LEADER_LOSS):
    box: list[ReplayRecorder] = []
    result = run_scenario(load_scenario(path), observe=lambda c: box.append(ReplayRecorder(c)))
    return result, box[0]


def test_recording_keeps_the_runs_trace_hash():
    plain = run_scenario(load_scenario(LEADER_LOSS))
    recorded, recorder = record()
    assert recorded.ok and plain.ok
    assert recorded.trace_hash == plain.trace_hash
    assert recorder.frames and recorder.messages


def test_frames_follow_the_leader_loss():
    result, recorder = record()
    data = replay_data(result, recorder)
    times = [f["t"] for f in data["frames"]]
    assert times == sorted(times) and len(set(times)) == len(times)
    leaders = [f["state"]["leaders"]["dc1"] for f in data["frames"]]
    first = next(name for name in leaders if name)
    killed = next(e.fields["server"] for e in result.events.of_kind("kill"))
    assert first == killed  # the scenario kills its leader
    assert leaders[-1] not in (None, first)  # and the survivors elect another
    down = [
        s["state"]
        for f in data["frames"]
        for s in f["state"]["servers"]
        if s["name"] == killed and f["t"] > result.events.of_kind("kill")[0].time
    ]
    assert down and set(down) == {"killed"}
    kinds = {m["type"] for m in data["messages"]}
    assert {"PreRequestVote", "RequestVote", "AppendEntries"} <= kinds
    # Each step with its note, at the time it started.
    noted = [n for n in data["notes"] if n["note"]]
    assert noted and all(n["time"] <= data["end"] for n in data["notes"])
    steps = {s.number: s for s in result.steps}
    for n in data["notes"]:
        assert n["time"] == round(steps[n["step"]].started, 6)
        assert n["note"] == (steps[n["step"]].note or "")
    assert any("election won" in line["line"] for line in data["logs"])


def test_page_is_self_contained(tmp_path):
    result, recorder = record()
    page = render_replay(replay_data(result, recorder))
    # Nothing to fetch: every src/href is inline data, no stylesheet or script from elsewhere.
    assert re.findall(r'(?:src|href)="(?!data:)[^"]*"', page) == []
    assert "<style>" in page and "@import" not in page and "url(" not in page
    data = json.loads(re.search(r"window\.CONSIM_REPLAY=(.*?);</script>", page, re.S).group(1))
    assert data["scenario"] == "leader-loss" and data["frames"]


def test_consim_run_ui_writes_html_or_json_and_refuses_live(tmp_path):
    html, js = tmp_path / "r.html", tmp_path / "r.json"
    out = io.StringIO()
    assert run_files([str(LEADER_LOSS)], ui_path=str(html), out=out, err=io.StringIO()) == 0
    assert f"==> replay written to {html} (leader-loss, seed 7" in out.getvalue()
    assert "window.CONSIM_REPLAY=" in html.read_text()
    assert run_files([str(LEADER_LOSS)], ui_path=str(js), out=io.StringIO(), err=io.StringIO()) == 0
    assert json.loads(js.read_text())["mode"] == "replay"
    # With --seeds: the run shown is one of them, recorded again at its seed.
    out = io.StringIO()
    code = run_files([str(LEADER_LOSS)], ui_path=str(js), seeds=range(1, 3), out=out)
    assert code == 0 and "(leader-loss, seed 2," in out.getvalue()
    assert json.loads(js.read_text())["seed"] == 2
    err = io.StringIO()
    code = run_files([str(LEADER_LOSS)], ui_path=str(html), live=True, out=io.StringIO(), err=err)
    assert code == 2 and "--ui replays a virtual-time run (not with --live)" in err.getvalue()


def test_consim_replay_remakes_a_run_from_its_json_and_checks_it_is_that_run(tmp_path):
    from consim.cli import main

    run_json, page = tmp_path / "run.json", tmp_path / "run.html"
    assert run_files([str(LEADER_LOSS)], json_path=str(run_json), out=io.StringIO()) == 0
    assert main(["replay", str(run_json), "--out", str(page)]) == 0
    data = json.loads(
        re.search(r"window\.CONSIM_REPLAY=(.*?);</script>", page.read_text(), re.S).group(1)
    )
    recorded, recorder = record()
    assert data["frames"] == json.loads(json.dumps(replay_data(recorded, recorder)["frames"]))

    doc = json.loads(run_json.read_text())
    doc["runs"][0]["trace_hash"] = "0" * 64  # as if the file or consim had changed since
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(doc))
    doc["runs"][0]["mode"] = "live"
    live = tmp_path / "live.json"
    live.write_text(json.dumps(doc))
    (tmp_path / "other.json").write_text('{"ok": true}')
    for name, message in [
        ("changed.json", "no longer gives that run (trace hash"),
        ("live.json", "was live: only virtual-time runs replay"),
        ("other.json", "not the JSON of 'consim run --json'"),
        ("missing.json", "No such file or directory"),
    ]:
        err = io.StringIO()
        with redirect_stderr(err):
            assert main(["replay", str(tmp_path / name)]) == 2, name
        assert message in err.getvalue(), (name, err.getvalue())


def test_a_failing_recorder_never_fails_the_run(monkeypatch):
    import consim.ui.replay as replay

    def broken(*args, **kwargs):
        raise RuntimeError("snapshot bug")

    plain = run_scenario(load_scenario(LEADER_LOSS))
    monkeypatch.setattr(replay, "cluster_snapshot", broken)
    result, recorder = record()
    assert result.ok and result.trace_hash == plain.trace_hash
    assert recorder.errors > 0 and recorder.frames == []
