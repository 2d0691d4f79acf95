"""A join's HTTP request is answered even when something else in the same gossip batch fails
(the failure is contained; the core has already forgotten the join, so nothing else would)."""

from __future__ import annotations

import trio

from consim.runtime import run_virtual
from consim.spec import ClusterSpec

SPEC = ClusterSpec(datacenters=(("dc1", 3), ("dc2", 1)), seed=3, raft_multiplier=1)


def test_join_is_answered_when_an_event_handler_fails_in_its_batch() -> None:
    async def body(cluster):
        await cluster.wait_for_leader()
        s1 = cluster.servers["dc1-s1"]
        other = cluster.servers["dc2-s1"]  # a member dc1's LAN pool has never seen
        pool = s1.lan_pool
        original = pool.on_event
        fired: list[str] = []

        def flaky(p, event):
            if not fired:
                fired.append(event.kind)
                raise RuntimeError("handler failed once")
            return original(p, event)

        pool.on_event = flaky
        start = trio.current_time()
        with trio.move_on_after(60):
            status, _, _ = await cluster.http(
                s1.name, "PUT", f"/v1/agent/join/{other.spec.serf_lan_address}"
            )
            return {"status": status, "took": trio.current_time() - start, "fired": fired}
        return {"status": None, "took": trio.current_time() - start, "fired": fired}

    out, log = run_virtual(SPEC, body)
    assert out["fired"], "the handler never ran: the test shows nothing"
    assert out["status"] == 200 and out["took"] < 1.0, out
    assert log.of_kind("internal_error")  # the failure was logged and contained
