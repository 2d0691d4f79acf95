"""The network model, checked end to end in virtual time: what ``consim bench forwarding``
measures is what the model's one-way latencies predict for each request path.

Virtual HTTP costs no time, so a direct read on the leader answers at once; a follower forwards
it to the leader (one LAN round trip, 2L); ``?stale`` is answered by the follower itself; ``?dc``
crosses the WAN both ways (2W) and lands on a dc2 server, which forwards to its own leader unless
it is that leader (at most one more LAN round trip)."""

from __future__ import annotations

import pytest

from consim.bench.virtual import run_virtual_bench
from consim.spec import NetworkModel


def p50(result, name: str) -> float:
    return result.target_summary(name)["p50_ms"]


@pytest.mark.parametrize("lan_ms", [1.0, 5.0])
def test_forwarding_costs_one_lan_round_trip(lan_ms):
    lan = lan_ms / 1000
    model = NetworkModel(lan_latency=lan, lan_jitter=lan / 10)
    r = run_virtual_bench(
        model=model, targets=("direct", "forwarded", "stale"), rate=100, duration=1.0, seed=3
    )
    direct, forwarded, stale = p50(r, "direct"), p50(r, "forwarded"), p50(r, "stale")
    print(f"L={lan_ms}ms direct {direct} forwarded {forwarded} stale {stale}")
    assert r.target_summary("forwarded")["requests"] >= 90
    assert abs((forwarded - direct) - 2 * lan_ms) <= 0.1 * 2 * lan_ms
    # ?stale on a follower: answered there, no hop at all.
    assert abs(stale - direct) <= 0.1 * 2 * lan_ms


def test_dc_adds_the_wan_round_trip():
    lan_ms, wan_ms = 2.0, 30.0
    model = NetworkModel(lan_latency=lan_ms / 1000, wan_latency=wan_ms / 1000)
    r = run_virtual_bench(model=model, targets=("direct", "dc"), rate=100, duration=1.0, seed=5)
    extra = p50(r, "dc") - p50(r, "direct")
    print(f"dc - direct p50 {extra} ms (WAN round trip {2 * wan_ms} ms)")
    assert 0.9 * 2 * wan_ms <= extra <= 1.1 * (2 * wan_ms + 2 * lan_ms)
    # Every answer crossed the WAN twice: none is faster than the round trip.
    assert min(r.runs["dc"][0].latencies) >= 2 * wan_ms / 1000 - 1e-9


def test_same_seed_same_figures():
    model = NetworkModel(lan_latency=0.002, lan_jitter=0.001)

    def once():
        r = run_virtual_bench(model=model, targets=("forwarded",), rate=50, duration=0.5, seed=9)
        return r.runs["forwarded"][0].latencies

    first = once()
    assert first == once()
    assert len(set(first)) > 1  # the jitter is drawn per message


def test_forwarding_under_loss_is_late_not_failed():
    # 0.5% loss on every link: a lost RPC segment is retransmitted (200 ms, then 400 ms, ...),
    # so every forwarded read is answered, the unlucky ones (and those queued behind them on
    # the same FIFO link) an RTO or more late.
    model = NetworkModel(lan_latency=0.001, loss=0.005)
    r = run_virtual_bench(model=model, targets=("forwarded",), rate=100, duration=2.0, seed=4)
    s = r.target_summary("forwarded")
    print(s)
    assert s["errors"] == 0 and s["requests"] == 200
    assert s["p50_ms"] == 2.0  # most requests lose nothing
    # Some waited out a 200 ms retransmission timeout, or part of one queued behind it.
    assert s["max_ms"] > 100.0
