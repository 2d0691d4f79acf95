"""``consim bench forwarding --live`` end to end, briefly: the cluster and floor processes start,
the built-in load generator (its own process) answers with per-request samples, CPU per request
is measured, and everything is stopped afterwards."""

from __future__ import annotations

from live_hosts import DEFAULT_BASES

from consim.bench.live import choose_block, run_live_bench

PORT = 18791


def test_live_bench_measures_each_target():
    block = choose_block(PORT, 1, DEFAULT_BASES)  # the floors' hosts must be free too
    result = run_live_bench(
        targets=("direct", "forwarded", "floor"),
        connections=2,
        duration=1.0,
        runs=1,
        http_port=PORT,
        host_block=block,
        tool="builtin",
        warmup=0.2,
    )
    for name in ("direct", "forwarded", "floor"):
        s = result.target_summary(name)
        print(
            name, {k: s[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "cpu_us_per_request")}
        )
        assert s["requests"] > 10 and s["errors"] == 0
        assert 0 < s["p50_ms"] <= s["p99_ms"] <= s["max_ms"]
        assert s["cpu_us_per_request"] > 0
        assert result.runs[name][0].samples  # the built-in generator times every request
