"""One server's failure is never the cluster's (issue 10, item 1).

A failure is injected into each kind of task a server runs: its Raft timer and Raft message
handler (the server is stopped and marked failed: its Ready batch may be half persisted, so it
must not go on; ``restart`` brings it back from storage), its gossip timer and datagram handler,
an RPC handler and the leader's reconcile loop (logged, counted, the server goes on). In every
case the process and the other servers carry on. Then the triggers found by probing a live
cluster (a gossip ``alive`` with an unusable address, ``/v1/agent/join`` of one, a forged
``TimeoutNowResponse`` with term 2^64-1) are replayed against a live cluster.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
import trio

from consim.cluster import Cluster
from consim.gossip import wire
from consim.net.network import RpcError
from consim.net.portmux import RPC_RAFT
from consim.net.sockets import resolve_listen_address
from consim.raft import hashicorp_wire
from consim.server import endpoints
from consim.server import leader as leader_duties
from consim.server.node import ServerNode
from consim.spec import ClusterSpec

from .helpers import (
    describe,
    events_of,
    kv_put,
    live_cluster,
    live_spec,
    local_value,
    virtual,
    wait_converged,
    wait_until,
)

SEEDS = [1, 2, 3]


def _failing_once(real: Callable[..., Any], message: str) -> tuple[Callable[..., Any], list[int]]:
    """``real`` that raises RuntimeError(message) on its first call; the list counts calls."""
    calls = [0]

    def wrapper(*args: Any, **kw: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError(message)
        return real(*args, **kw)

    return wrapper, calls


def _always_failing(message: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kw: Any) -> Any:
        raise RuntimeError(message)

    return wrapper


async def _cluster_carries_on(cluster: Cluster, failed: ServerNode | None, key: str) -> None:
    """A leader among the others takes writes, which reach every running server."""
    exclude = {failed.name} if failed is not None else set()
    leader = await cluster.wait_for_leader(within=10, exclude=exclude)
    reply = await kv_put(leader, key, b"still here")
    assert reply["Result"] is True
    running = [n.name for n in cluster.servers.values() if n.running]
    await wait_converged(cluster, 10, running)
    for name in running:
        assert local_value(cluster.node(name), key) == b"still here", describe(cluster)


# ---- the Raft driver: that server is stopped, the others go on -------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("task", ["raft timer", "raft message handler"])
def test_raft_driver_failure_stops_that_server_only(seed: int, task: str) -> None:
    spec = ClusterSpec(seed=seed, raft_multiplier=1)

    async def body(cluster: Cluster) -> dict[str, Any]:
        await cluster.wait_for_leader(within=10)
        victim = cluster.followers()[0]
        assert victim.core is not None
        method = "tick" if task == "raft timer" else "step"
        setattr(victim.core, method, _always_failing(f"injected {task} failure"))
        await wait_until(lambda: not victim.running, 10, f"{victim.name} to stop")
        status = victim.status()
        await _cluster_carries_on(cluster, victim, "after-failure")
        # Storage survived: a restart brings the server back and it catches up.
        await cluster.restart(victim.name)
        await wait_converged(cluster, 15)
        assert local_value(victim, "after-failure") == b"still here"
        return {"victim": victim.name, "status": status, "after": victim.status()}

    out, log = virtual(spec, body)
    failed = events_of(log, "server_failed")
    assert [(e.node, e.level, e.fields["where"]) for e in failed] == [
        (out["victim"], "ERROR", task)
    ], f"seed={seed}"
    assert "injected" in failed[0].fields["error"]
    assert out["status"]["state"] == "down" and task in out["status"]["failed"]
    assert out["status"]["internal_errors"] == 1
    assert out["after"]["state"] == "follower" and "failed" not in out["after"]


def test_a_write_waiting_on_a_server_that_fails_is_answered_not_left_hanging() -> None:
    """A leader stopped by an internal error while a client's write waits for its commit (the
    followers cut off) answers that client with hashicorp's ErrRaftShutdown text; before, the
    HTTP request waited for good."""
    spec = ClusterSpec(seed=5, raft_multiplier=1)

    async def body(cluster: Cluster) -> Any:
        leader = await cluster.wait_for_leader(within=10)
        cluster.isolate(leader.name)  # the write cannot commit
        answer: list[Any] = []

        async def put() -> None:
            answer.append(await cluster.http(leader.name, "PUT", "/v1/kv/held", body=b"1"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(put)
            await trio.sleep(0.3)
            assert not answer  # waiting for a quorum that cannot answer
            leader.fail_server("raft timer", RuntimeError("injected"))
            with trio.move_on_after(5):
                while not answer:
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        return answer

    answer, _ = virtual(spec, body)
    assert answer, "the write's HTTP request was left hanging"
    status, _, text = answer[0]
    assert (status, text) == (500, b"raft is already shutdown")


# ---- gossip, RPC, reconcile: logged and counted, the server goes on --------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_gossip_timer_and_datagram_failures_are_logged_and_gossip_goes_on(seed: int) -> None:
    spec = ClusterSpec(seed=seed, raft_multiplier=1)

    async def body(cluster: Cluster) -> dict[str, Any]:
        await cluster.wait_for_leader(within=10)
        victim = cluster.followers()[0]
        pool = victim.lan_pool
        assert pool is not None and pool.core is not None
        pool.core.tick, ticks = _failing_once(pool.core.tick, "injected gossip timer failure")
        pool.core.receive, received = _failing_once(pool.core.receive, "injected datagram failure")
        await trio.sleep(5)
        # Both went on after their failure: the timer was re-armed, datagrams still arrive.
        assert ticks[0] >= 3 and received[0] >= 3, (ticks, received)
        assert victim.running
        # And the pool still does its job: it sees another server fail.
        other = next(n for n in cluster.servers.values() if n is not victim and n.running)
        cluster.kill(other.name)
        await wait_until(
            lambda: any(m.name == other.name and m.status == 4 for m in pool.members()),
            30,
            "the LAN pool to notice a failed member",
        )
        await _cluster_carries_on(cluster, other, "after-gossip-failures")
        return {"victim": victim.name, "errors": victim.status()["internal_errors"]}

    out, log = virtual(spec, body)
    errors = events_of(log, "internal_error")
    assert sorted((e.node, e.level, e.fields["where"]) for e in errors) == [
        (out["victim"], "ERROR", "lan datagram handler"),
        (out["victim"], "ERROR", "lan gossip timer"),
    ], f"seed={seed}"
    assert out["errors"] == 2
    assert not events_of(log, "server_failed")


@pytest.mark.parametrize("seed", SEEDS)
def test_rpc_handler_and_reconcile_failures_are_logged_and_the_server_goes_on(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = ClusterSpec(seed=seed, raft_multiplier=1)
    real_peers = endpoints.HANDLERS["Status.Peers"]
    rounds = [0]
    real_reconcile = leader_duties.reconcile

    async def flaky_reconcile(node: ServerNode) -> None:
        rounds[0] += 1
        if rounds[0] == 1:
            raise RuntimeError("injected reconcile failure")
        await real_reconcile(node)

    # Patched before the servers start: the reconcile loop looks the function up once.
    monkeypatch.setattr(leader_duties, "reconcile", flaky_reconcile)

    async def body(cluster: Cluster) -> dict[str, Any]:
        leader = await cluster.wait_for_leader(within=10)
        victim = cluster.followers()[0]
        calls = [0]

        async def flaky(node: ServerNode, args: dict[str, Any]) -> Any:
            calls[0] += 1
            if calls[0] == 1:
                raise KeyError("injected rpc handler failure")
            return await real_peers(node, args)

        monkeypatch.setitem(endpoints.HANDLERS, "Status.Peers", flaky)
        with pytest.raises(RpcError, match="internal error"):
            await leader.call(victim.address, "Status.Peers", {}, 5.0)
        assert await leader.call(victim.address, "Status.Peers", {}, 5.0)
        # The leader's reconcile loop (autopilot) failed once (patched below); rounds go on.
        await wait_until(lambda: rounds[0] >= 3, 10, "later reconcile rounds")
        assert leader.is_leader() and victim.running
        await _cluster_carries_on(cluster, None, "after-rpc-failure")
        return {"victim": victim.name, "leader": leader.name}

    out, log = virtual(spec, body)
    errors = [(e.node, e.fields["where"]) for e in events_of(log, "internal_error")]
    assert (out["victim"], "consul rpc") in errors, errors  # its Consul RPC listener
    assert (out["leader"], "leader reconcile") in errors, errors
    assert not events_of(log, "server_failed")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.20.9:notaport", 'strconv.ParseUint: parsing "notaport": invalid syntax'),
        ("127.0.20.9:99999", 'strconv.ParseUint: parsing "99999": value out of range'),
        ("", "lookup : no such host"),  # an empty host (memberlist then asks DNS)
    ],
)
def test_join_of_a_bad_address_answers_as_consul_and_never_crashes_later(
    address: str, reason: str
) -> None:
    spec = ClusterSpec(seed=4, raft_multiplier=1)

    async def body(cluster: Cluster) -> dict[str, Any]:
        leader = await cluster.wait_for_leader(within=10)
        status, _, text = await cluster.http(leader.name, "PUT", f"/v1/agent/join/{address}")
        # Later rounds (memberlist's join retries, probes, push-pulls) must not trip over it.
        await trio.sleep(30)
        await _cluster_carries_on(cluster, None, "after-join")
        return {"status": status, "text": text.decode(), "running": describe(cluster)}

    out, log = virtual(spec, body)
    assert out["status"] == 500
    assert out["text"] == f"1 error occurred:\n\t* Failed to resolve {address}: {reason}\n\n"
    warned = events_of(log, "join_failed")
    assert [(e.level, e.message) for e in warned] == [("WARN", "(LAN) couldn't join")]
    assert "down" not in out["running"]
    assert not events_of(log, "internal_error") and not events_of(log, "server_failed")


# ---- live: the triggers found on a running `consim up`, replayed -----------------------------
def _udp(node: ServerNode, payload: bytes, src: str) -> None:
    """Raw UDP from ``src``'s host, as memberlist peers send it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((src.rpartition(":")[0], 0))
        s.sendto(payload, resolve_listen_address(node.spec.serf_lan_address))


async def _raft_request(node: ServerNode, src: str, request: bytes) -> None:
    """One hashicorp/raft transport request (byte 1 on the server port) from ``src``'s host."""
    host, port = resolve_listen_address(node.address)
    stream = await trio.open_tcp_stream(host, port, local_address=src.rpartition(":")[0])
    async with stream:
        await stream.send_all(bytes([RPC_RAFT]) + request)
        await trio.sleep(0.2)


async def test_live_triggers_and_injected_failures_stay_contained() -> None:
    from live_hosts import free_host_base

    block = free_host_base([3], 28541)
    spec = live_spec(block, http_port=28541, seed=51)
    async with live_cluster(spec) as cluster:
        leader = await cluster.wait_for_leader(within=15)
        await wait_until(lambda: len(cluster.followers()) == 2, 5, "two followers")
        stranger = f"127.0.{block}.9"
        # A gossip alive whose address no socket accepts (ValueError / OverflowError before).
        for ip, port in ((b"\x7f\x00\x14\x09", 99999), (b"\x7f\x00\x14\x09", 0), (b"", 8301)):
            body = {"Addr": ip, "Incarnation": 1, "Meta": b"", "Node": f"evil{port}", "Port": port}
            _udp(leader, bytes([wire.ALIVE]) + wire.pack(body), f"{stranger}:8301")
        # /v1/agent/join of one (500, then the retry 3 s later ended the process before).
        status, _, text = await cluster.http(
            leader.name, "PUT", "/v1/agent/join/127.0.20.9:notaport"
        )
        assert status == 500 and b"Failed to resolve 127.0.20.9:notaport" in text, text
        # A join is memberlist's synchronous push/pull: nobody on the address -> Consul's 500
        # with the dial's error; a live server -> 200.
        dead = f"{stranger}:8301"
        status, _, text = await cluster.http(leader.name, "PUT", f"/v1/agent/join/{dead}")
        refused = f"dial tcp {dead}: connect: connection refused"
        assert (status, text.decode()) == (
            500,
            f"1 error occurred:\n\t* Failed to join {dead}: {refused}\n\n",
        )
        live = cluster.followers()[0].spec.serf_lan_address
        assert (await cluster.http(leader.name, "PUT", f"/v1/agent/join/{live}"))[0] == 200
        # An AppendEntries with term 2^64-1 (more than storage holds), and a vote request in
        # term 2^62 from a server in no configuration.
        huge = hashicorp_wire.append_entries_request(2**64 - 1, f"{stranger}:8300", 0, 0, [], 0)
        await _raft_request(leader, f"{stranger}:8300", huge)
        big = hashicorp_wire.request_vote_request(2**62, f"{stranger}:8300", 0, 0, True)
        await _raft_request(leader, f"{stranger}:8300", big)
        # And a Raft timer failure on one follower, a gossip timer failure on the other.
        first, second = cluster.followers()
        assert first.core is not None and second.lan_pool and second.lan_pool.core
        first.core.tick = _always_failing("injected raft timer failure")  # type: ignore[method-assign]
        core = second.lan_pool.core
        core.tick, _ticks = _failing_once(core.tick, "injected gossip timer failure")  # type: ignore[method-assign]
        await wait_until(lambda: not first.running, 10, f"{first.name} to stop")
        await trio.sleep(5)  # past the join retry and a few gossip rounds
        assert leader.is_leader() and leader.core is not None and leader.core.term < 2**62
        assert second.running, describe(cluster)
        await _cluster_carries_on(cluster, first, "live-after")
        assert leader.counters["raft_wire_dropped"] >= 1
        assert leader.lan_pool is not None and leader.lan_pool.core is not None
        assert leader.lan_pool.core.counters["dropped_malformed"] >= 1
        assert not any(m.name.startswith("evil") for m in leader.lan_pool.members())
        events = cluster.events
        assert [e.node for e in events_of(events, "server_failed")] == [first.name]
        assert (second.name, "lan gossip timer") in [
            (e.node, e.fields["where"]) for e in events_of(events, "internal_error")
        ]
        assert any(
            e.fields.get("from") == f"{stranger}:8300"
            for e in events_of(events, "peer_not_in_configuration")
        )
        # The control API's status shows the failure (what `consim ctl status` prints).
        status_rows = {s["name"]: s for s in cluster.status()}
        assert status_rows[first.name]["state"] == "down"
        assert "injected raft timer failure" in status_rows[first.name]["failed"]
        assert json.dumps(status_rows)  # JSON-serialisable for the control API
