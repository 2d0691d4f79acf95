"""``consim bench forwarding`` from the command line (virtual time: fast and deterministic)."""

from __future__ import annotations

import json

from consim.cli import main


def test_virtual_bench_writes_json_and_plots(tmp_path, capsys):
    out = tmp_path / "b.json"
    code = main(
        ["bench", "forwarding", "--targets", "direct,forwarded,stale", "--lan-latency", "3ms",
         "--duration", "0.5s", "--rate", "40", "--json", str(out), "--plots", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "forwarded - direct p50_ms: +6.000 ms" in text
    assert "run 1" not in text  # progress only on a terminal
    data = json.loads(out.read_text())
    assert set(data["targets"]) == {"direct", "forwarded", "stale"}
    fwd = data["targets"]["forwarded"]
    for key in ("requests", "rps", "p50_ms", "p90_ms", "p99_ms", "max_ms"):
        assert key in fwd
    assert fwd["requests"] == 20 and fwd["p50_ms"] == 6.0
    assert (tmp_path / "forwarding-cdf.svg").read_text().startswith("<svg")
    assert "<circle" in (tmp_path / "forwarding-over-time.svg").read_text()


def test_floor_is_live_only(capsys):
    assert main(["bench", "forwarding", "--targets", "floor"]) == 2
    assert "the floor is live only" in capsys.readouterr().err
