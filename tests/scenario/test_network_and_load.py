"""``[cluster.network]`` in scenario files, link faults on a whole datacenter, and the latency a
``load`` step records (detail line, results JSON, report charts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from consim.scenario.model import ScenarioError, load_scenario
from consim.scenario.report import render_report
from consim.scenario.runner import run_scenario

TWO_DCS = """seed = 2
[cluster]
datacenters = { dc1 = 3, dc2 = 1 }
raft_multiplier = 1
[cluster.network]
lan_latency = "5ms"
wan_latency = "40ms"
wan = { "dc1:dc2" = "30ms" }
[[step]]
wait = "leader"
[[step]]
load = { op = "write", rate = 20, duration = "1s", on = "leader", key = "k" }
[[step]]
delay = { from = "dc1", to = "dc2", seconds = "100ms" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_network_table_is_read(tmp_path):
    s = load_scenario(write(tmp_path, TWO_DCS))
    net = s.cluster.network
    assert net is not None
    assert (net.lan_latency, net.wan_latency, net.wan) == (0.005, 0.04, (("dc1", "dc2", 0.03),))
    assert net.bandwidth == 0.0
    text = TWO_DCS.replace('wan_latency = "40ms"', 'bandwidth = "8Mbit/s"')
    assert load_scenario(write(tmp_path, text)).cluster.network.bandwidth == 1e6


@pytest.mark.parametrize(
    "table, error",
    [
        ("wan_jitter = 5", "field 'network.wan_jitter': expected a duration"),
        ('speed = "1ms"', "field 'network.speed': unknown field"),
        ('wan = { "dc1:dc9" = "1ms" }', "field 'network.wan.dc1:dc9': expected two datacenters"),
        ("loss = 2", "field 'network.loss': expected a number between 0 and 0.99"),
        ('bandwidth = "fast"', "field 'network.bandwidth': expected a rate like \"100Mbit/s\""),
    ],
)
def test_network_table_errors(tmp_path, table, error):
    # The line replaces the table's own wan line (TOML refuses a key twice).
    text = TWO_DCS.replace('wan = { "dc1:dc2" = "30ms" }', table)
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, text))
    assert error in str(info.value)


def test_load_records_latency_from_the_model_and_delay_takes_a_datacenter(tmp_path):
    result = run_scenario(load_scenario(write(tmp_path, TWO_DCS)))
    assert result.ok, result.failure
    load = result.steps[1]
    # A write on the leader commits after one LAN round trip to a follower: 2 x 5 ms.
    assert load.load is not None and load.load["requests"] == 20
    assert 10.0 <= load.load["p50_ms"] <= 11.0, load.load
    assert load.load["p50_ms"] <= load.load["p90_ms"] <= load.load["p99_ms"] <= load.load["max_ms"]
    assert 19 <= load.load["rps"] <= 22
    assert "latency p50 10." in load.detail and "p99" in load.detail
    step_json = result.to_json()["steps"][1]
    assert step_json["load"]["p50_ms"] == load.load["p50_ms"] and "samples" not in step_json["load"]
    # The datacenter delay is one rule per dc1 host towards the dc2 host.
    delays = [e.fields for e in result.events.events if e.kind == "delay"]
    assert sorted(f["src"] for f in delays) == ["dc1-s1", "dc1-s2", "dc1-s3"]
    assert {f["dst"] for f in delays} == {"dc2-s1"}
    page = render_report(result)
    section = page[page.index('id="load-step-2"') :]
    assert section.count("<svg") == 2 and "latency histogram" in section


def test_same_seed_same_trace_with_a_model(tmp_path):
    path = write(tmp_path, TWO_DCS.replace("wan_latency", 'lan_jitter = "1ms"\nwan_latency'))
    a, b = run_scenario(load_scenario(path)), run_scenario(load_scenario(path))
    assert a.trace_hash == b.trace_hash
    assert a.steps[1].load == b.steps[1].load


def test_the_readme_network_example_runs_and_passes():
    result = run_scenario(load_scenario(Path(__file__).parents[2] / "docs/examples/network.toml"))
    assert result.ok, result.failure
    assert 4.0 <= result.steps[2].load["p50_ms"] <= 5.0  # one LAN round trip, 2 x (2-2.5 ms)
