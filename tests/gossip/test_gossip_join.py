"""memberlist's Join as the agent calls it (``join(..., once=True)``): one push-pull exchange whose
outcome the core reports - success once the answer merged, memberlist's error on a refused dial
or after TCPTimeout - so a join of a dead address fails instead of counting as joined."""

from __future__ import annotations

from consim.gossip import GossipConfig
from consim.gossip.harness import Harness

DEAD = "10.9.9.9:8301"


def _pair(seed: int = 7) -> tuple[Harness, str, str]:
    h = Harness(seed)
    a, b = h.add_pool(2, prefix="s")
    h.run_for(2.0)
    return h, a.name, b.name


def test_join_of_a_live_member_succeeds_and_merges() -> None:
    h = Harness(7)
    a = h.add_member("a", "10.0.0.1:8301")
    b = h.add_member("b", "10.0.0.2:8301")
    jid = h.join_once("a", b.address)
    h.run_for(0.1)
    when, error = h.join_results[("a", jid)]
    assert error is None and when < 0.1
    assert set(h.members("a")) == {"a", "b"}
    h.run_for(2.0)
    assert set(h.members("b")) == {"a", "b"}  # the join intent spread
    assert a.incarnation == 1


def test_join_of_a_dead_address_fails_with_memberlists_text_at_once() -> None:
    h, a, _ = _pair()
    start = h.now
    jid = h.join_once(a, DEAD)
    h.run_for(0.1)
    when, error = h.join_results[(a, jid)]
    assert error == f"Failed to join {DEAD}: dial tcp {DEAD}: connect: connection refused"
    assert when - start < 0.1  # the reset, not a timeout
    assert set(h.members(a)) == {"s1", "s2"}


def test_join_of_a_silent_member_times_out_after_tcp_timeout() -> None:
    h, a, b = _pair()
    h.crash(b)  # the host is there but never answers
    start = h.now
    jid = h.join_once(a, h.cores[b].address)
    h.run_for(9.9)
    assert (a, jid) not in h.join_results
    h.run_for(0.2)
    when, error = h.join_results[(a, jid)]
    address = h.cores[b].address
    assert error == f"Failed to join {address}: dial tcp {address}: i/o timeout"
    assert abs((when - start) - GossipConfig.lan().tcp_timeout) < 1e-6


def test_wan_tcp_timeout_is_memberlists_30s() -> None:
    assert (GossipConfig.lan().tcp_timeout, GossipConfig.wan().tcp_timeout) == (10.0, 30.0)


def test_several_addresses_count_those_reached() -> None:
    h = Harness(3)
    h.add_member("a", "10.0.0.1:8301")
    h.add_member("b", "10.0.0.2:8301")
    h.add_member("c", "10.0.0.3:8301")
    jids = [h.join_once("a", addr) for addr in ("10.0.0.2:8301", DEAD, "10.0.0.3:8301")]
    h.run_for(0.5)
    outcomes = [h.join_results[("a", jid)][1] for jid in jids]
    assert sum(e is None for e in outcomes) == 2
    assert outcomes[1] is not None and outcomes[1].startswith(f"Failed to join {DEAD}: ")


def test_join_after_leave_fails_as_serf() -> None:
    h = Harness(5)
    h.add_member("a", "10.0.0.1:8301")
    h.leave("a")
    h.run_for(5.0)
    jid = h.join_once("a", "10.0.0.2:8301")
    assert h.join_results[("a", jid)][1] == "Serf can't Join after Leave or Shutdown"


def test_join_outcomes_are_deterministic() -> None:
    def run() -> list[tuple[float, str | None]]:
        h, a, b = _pair(11)
        jids = [h.join_once(a, h.cores[b].address), h.join_once(a, DEAD)]
        h.run_for(1.0)
        return [h.join_results[(a, j)] for j in jids] + [(h.now, h.trace_hash())]

    assert run() == run()
