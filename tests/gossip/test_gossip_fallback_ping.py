"""memberlist's TCP fallback ping: a member that UDP cannot reach but TCP can is not suspected
by the prober, which warns that the network may be misconfigured (memberlist probeNode)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from consim.gossip.harness import Harness

from .helpers import LAN, converged, fail


def run_udp_blocked(seed: int, *, tcp_pings: bool) -> tuple[Harness, list[str], list]:
    h = Harness(seed)
    # Two members: no third one to probe indirectly through, so only TCP can answer.
    cores = h.add_pool(2, config=replace(LAN, tcp_pings=tcp_pings))
    names = [c.name for c in cores]
    assert h.run_until_true(lambda: converged(h, names), 30), fail(h, "pool never converged")
    a, b = names[0], names[1]
    events = []
    h.listeners.append(lambda now, name, ev: events.append((name, ev)) if name == a else None)
    h.udp_blocked.add(frozenset((a, b)))
    h.run_for(40)
    return h, names, events


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_member_reachable_only_over_tcp_is_not_suspected(seed: int) -> None:
    h, names, events = run_udp_blocked(seed, tcp_pings=True)
    a, b = names[0], names[1]
    suspects = [ev for _, ev in events if ev.kind == "member_suspect" and b in ev.message]
    assert not suspects, fail(h, f"{a} suspected {b} although TCP reached it")
    warned = [ev.message for _, ev in events if ev.kind == "fallback_ping_ok"]
    assert warned, fail(h, "no fallback ping answered")
    assert warned[0] == (
        f"Was able to connect to {b} but other probes failed, network may be misconfigured"
    )
    assert h.cores[a].counters["fallback_pings_out"] >= len(warned)
    assert converged(h, names), fail(h, "pool not converged")


def test_without_tcp_pings_the_same_member_is_suspected() -> None:
    h, names, events = run_udp_blocked(1, tcp_pings=False)
    b = names[1]
    assert any(ev.kind == "member_suspect" and b in ev.message for _, ev in events), fail(
        h, "expected a suspicion without the fallback"
    )
    assert h.cores[names[0]].counters["fallback_pings_out"] == 0
