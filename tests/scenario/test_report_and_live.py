"""The HTML report renders in headless Chromium; a scenario runs live on real sockets."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest
from headless_chromium import chromium

from consim.scenario.cli import run_files
from consim.scenario.model import load_scenario
from consim.scenario.report import render_report
from consim.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parents[2]


def test_report_is_self_contained_and_renders_one_lane_per_server(tmp_path):
    result = run_scenario(load_scenario(ROOT / "scenarios" / "04-stale-reads.toml"))
    page = render_report(result)
    # Inline script and data only: nothing fetched (the SVG namespace is a name, not a fetch).
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", page)
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    dom = chromium(tmp_path, "--dump-dom", path.as_uri(), what="the HTML report")
    assert "<svg" in dom and 'id="timeline"' in dom
    lanes = re.findall(r'class="lane" data-server="([^"]+)"', dom)
    assert lanes == [f"dc1-s{k}" for k in range(1, 6)]
    assert dom.count('class="step-result ok"') == len(result.steps)
    assert 'class="fault"' in dom  # the partition is shaded
    assert "leader t" in dom  # role and term labels
    # Each drawn segment carries the term the model derived from term_change events, pre-vote
    # rounds included (they keep the term the server is in: see tests/scenario/test_report.py).
    from consim.scenario.report_model import segments

    drawn = re.findall(r'class="segment ([a-z ]+)"[^>]*data-term="(\d*)"', dom)
    expected = [
        (
            s["role"] + (" prevote" if s["prevote"] else ""),
            "" if s["term"] is None else str(s["term"]),
        )
        for lane in segments(result).values()
        for s in lane
    ]
    assert drawn == expected
    assert any(role == "candidate prevote" for role, _ in drawn) and "pre-vote t" in dom
    png = tmp_path / "shot.png"
    chromium(
        tmp_path,
        "--window-size=1200,900",
        f"--screenshot={png}",
        path.as_uri(),
        what="the HTML report",
    )
    assert png.exists() and png.stat().st_size > 10_000


def test_failed_run_report_shows_failure(tmp_path):
    p = tmp_path / "f.toml"
    p.write_text(
        'name = "f"\n[cluster]\ndatacenters = { dc1 = 3 }\nraft_multiplier = 1\n'
        '[[step]]\nwait = "leader"\n[[step]]\nkill = "leader"\n'
        '[[step]]\nhttp = "GET /v1/kv/x"\non = "old-leader"\nexpect = { status = 200 }\n'
    )
    out = tmp_path / "r.html"
    code = run_files([str(p)], report_path=str(out), out=io.StringIO(), err=io.StringIO())
    assert code == 1
    page = out.read_text()
    assert "FAIL" in page and "no answer" in page and '"kind":"kill"' in page
    dom = chromium(tmp_path, "--dump-dom", out.as_uri(), what="the HTML report")
    assert 'class="marker kill"' in dom and 'class="step-result failed"' in dom


SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))
# Live runs of about 45 s each (Lifeguard's suspicion waits, a 30 s campaign): CI runs them after
# the default suite (CONSIM_LIVE_LONG=1 in .ci/run); their virtual runs are in the default suite.
LONG_LIVE = {"10-force-leave-and-autopilot", "12-is-default-linearizable"}


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_runs_live_on_real_ports(path, tmp_path):
    """Every course scenario passes live too: real sockets, real clock, hypercorn."""
    from live_hosts import free_host_base

    if path.stem in LONG_LIVE and not os.environ.get("CONSIM_LIVE_LONG"):
        pytest.skip("a long live run (about 45 s): set CONSIM_LIVE_LONG=1 (.ci/run does)")

    scenario = load_scenario(path)
    http_port = 28500 + os.getpid() % 1000
    host_block = free_host_base([n for _, n in scenario.cluster.datacenters], http_port)
    out = io.StringIO()
    results = tmp_path / "live.json"
    code = run_files(
        [str(path)],
        live=True,
        http_port=http_port,
        host_block=host_block,
        json_path=str(results),
        out=out,
        err=io.StringIO(),
    )
    assert code == 0, out.getvalue()
    data = json.loads(results.read_text())
    assert data["runs"][0]["mode"] == "live" and data["runs"][0]["ok"]
    assert "live time" in out.getvalue()
