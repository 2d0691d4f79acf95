"""consim check --live: the same campaign on real sockets and the wall clock."""

from __future__ import annotations

from live_hosts import free_host_base

from consim.check.campaign import CheckConfig, run_check


def test_a_short_live_campaign_with_a_kill_is_checked() -> None:
    block = free_host_base([3], 8500, bases=range(200, 250, 3))
    config = CheckConfig(
        live=True,
        duration=4,
        interval=1.5,
        quiet=1,
        nemesis=("kill",),
        consistency="consistent",
        host_block=block,
    )
    run = run_check(config, 1)
    result = run.result
    print(result["command"], result["counts"])
    assert result["verdict"] == "valid", result["linearizability_text"]
    assert result["faults"] == 1 and result["ops"] >= 10
    assert result["trace_hash"] is None  # live: timing differs run to run
    assert {e.kind for e in run.events.events} >= {"applied", "kill", "restart", "nemesis_start"}
    assert "--live" in result["command"]
