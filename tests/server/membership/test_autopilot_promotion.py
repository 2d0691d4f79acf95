"""Autopilot's non-voter stage and its health rules, on a real cluster in virtual time.

Issue 10 item 4: gossip members that merely claim ``role=consul`` must not become voters at once
(forged ones made the leader add three voters: six voters, quorum four, three real servers, no
leader). Consul adds a new server as a non-voter and promotes it only after it has been healthy
for ServerStabilizationTime without a break.
Issue 10 item 2 (last part): a follower that is not catching up is unhealthy, judged by how far
its log trails the leader's.
"""

from __future__ import annotations

import json

import trio

from consim import CONSUL_VERSION
from consim.gossip import wire
from consim.storage.memory import MemoryStorage

from .helpers import call, config_ids, events_of, eventually, get_json, member_status, run, settled

HEALTH = "/v1/operator/autopilot/health"
CONFIG = "/v1/operator/autopilot/configuration"


def voter_ids(c) -> set[str]:
    leader = c.leader()
    assert leader is not None and leader.core is not None
    return {s.id for s in leader.core.latest_configuration.servers if s.is_voter}


async def health(c, name: str) -> tuple[int, dict]:
    status, _, raw = await c.http(name, "GET", HEALTH)
    return status, json.loads(raw)


def forged_alive(i: int, incarnation: int) -> bytes:
    """One unencrypted memberlist-style packet announcing a server that does not exist."""
    tags = {
        "role": "consul",
        "dc": "dc1",
        "id": f"00000000-0000-4000-8000-00000000e0{i:02d}",
        "port": "8300",
        "vsn": "2",
        "vsn_min": "2",
        "vsn_max": "3",
        "raft_vsn": "3",
        "build": "1.21.0:evil",
    }
    meta = wire.encode_tags(tags)
    return wire.enc_alive(f"evil-{i}", incarnation, f"127.0.9.{i}:8301", meta)


def test_forged_gossip_servers_never_vote():
    """14 s of forged, unencrypted gossip announcing three servers: they join the Raft
    configuration as non-voters, are never promoted (they never answer), the real three keep
    their quorum and their leader, and autopilot removes the forged ones once gossip says failed."""

    async def body(c):
        await settled(c)
        leader = await c.wait_for_leader()
        real = config_ids(c)
        targets = [n.spec.serf_lan_address for n in c.servers.values()]
        most_voters = 0
        start = trio.current_time()
        incarnation = 0
        while trio.current_time() - start < 14:
            incarnation += 1
            for i in range(1, 4):
                for dst in targets:
                    c.net.send_datagram(f"127.0.9.{i}:8301", dst, forged_alive(i, incarnation))
            most_voters = max(most_voters, len(voter_ids(c)))
            await trio.sleep(0.25)
        added = events_of(c.events, "reconcile_add_server")
        forged_ids = {e.fields["id"] for e in added} - real
        # the forged members did reach the configuration, but only as non-voters
        assert len(forged_ids) == 3, added
        assert all(e.fields["suffrage"] == "nonvoter" for e in added)
        assert most_voters == 3 and voter_ids(c) == real
        assert not events_of(c.events, "autopilot_promote_server")
        status, h = await health(c, leader.name)
        forged = [s for s in h["Servers"] if s["ID"] in forged_ids]
        assert forged and all(not s["Healthy"] and not s["Voter"] for s in forged)
        assert h["FailureTolerance"] == 1  # counted over the three real voters
        # the real cluster still commits
        assert await call(c, leader.name, "PUT", "/v1/kv/still-here", b"1") == (200, "true")
        # no more forged packets: gossip declares them failed and autopilot removes them
        await eventually(lambda: config_ids(c) == real, within=60)
        return leader.name

    run(body, datacenters=(("dc1", 3),), encrypt=None)


def test_returning_server_is_promoted_only_after_stabilization_time():
    """A server removed by dead-server cleanup and restarted comes back as a non-voter; autopilot
    promotes it once it has been healthy for ServerStabilizationTime (10 s) without a break: a
    pause in the middle starts the clock again."""

    async def body(c):
        await settled(c)
        leader = await c.wait_for_leader()
        victim = next(n for n in c.datacenter_servers("dc1") if n is not leader)
        c.kill(victim.name)
        await eventually(lambda: victim.server_id not in config_ids(c), within=60)
        await c.restart(victim.name)
        await eventually(lambda: victim.server_id in config_ids(c), within=60)
        [added] = [
            e
            for e in events_of(c.events, "reconcile_add_server")
            if e.fields["id"] == victim.server_id
        ]
        assert added.fields["suffrage"] == "nonvoter"
        assert victim.server_id not in voter_ids(c)

        # healthy as a non-voter for a few seconds, then a break in its health
        await trio.sleep(5)
        _, h = await health(c, leader.name)
        me = next(s for s in h["Servers"] if s["ID"] == victim.server_id)
        assert me["Healthy"] is True and me["Voter"] is False
        assert victim.server_id not in voter_ids(c)
        c.pause(victim.name)
        await eventually(
            lambda: (
                c.leader().core.follower_last_contact()[victim.server_id] < trio.current_time() - 1
            ),
            within=5,
        )
        await trio.sleep(1)
        _, h = await health(c, leader.name)
        assert next(s for s in h["Servers"] if s["ID"] == victim.server_id)["Healthy"] is False
        c.resume(victim.name)
        resumed = trio.current_time()
        await eventually(lambda: victim.server_id in voter_ids(c), within=60)
        [promoted] = [
            e
            for e in events_of(c.events, "autopilot_promote_server")
            if e.fields["id"] == victim.server_id
        ]
        assert promoted.message == "Promoting server"
        # 10 s of health counted from after the pause, not from when it was added
        assert promoted.time - resumed >= 10, (promoted.time, resumed)
        _, h = await health(c, leader.name)
        assert all(s["Voter"] and s["Healthy"] for s in h["Servers"])

    run(body)


def test_stabilization_time_is_autopilots_configuration():
    async def body(c):
        await settled(c)
        leader = await c.wait_for_leader()
        assert await call(c, leader.name, "PUT", CONFIG, b'{"ServerStabilizationTime": "3s"}') == (
            200,
            "true",
        )
        victim = next(n for n in c.datacenter_servers("dc1") if n is not leader)
        c.kill(victim.name)
        await eventually(lambda: victim.server_id not in config_ids(c), within=60)
        await c.restart(victim.name)
        await eventually(lambda: victim.server_id in config_ids(c), within=60)
        added = events_of(c.events, "reconcile_add_server")[-1]
        await eventually(lambda: victim.server_id in voter_ids(c), within=30)
        promoted = events_of(c.events, "autopilot_promote_server")[-1]
        assert 3 <= promoted.time - added.time < 10

    run(body)


def test_follower_with_wiped_data_is_unhealthy_while_it_trails():
    """A follower restarted with an empty data dir is at index ~0 while the leader is far ahead:
    autopilot health must call it unhealthy (its LastIndex trails by more than MaxTrailingLogs),
    even though the leader's match index still remembers the old log."""

    async def body(c):
        await settled(c)
        leader = await c.wait_for_leader()
        assert await call(c, leader.name, "PUT", CONFIG, b'{"MaxTrailingLogs": 20}') == (
            200,
            "true",
        )
        for i in range(60):
            assert await call(c, leader.name, "PUT", f"/v1/kv/k{i}", b"v") == (200, "true")
        await trio.sleep(2)
        status, h = await health(c, leader.name)
        assert status == 200 and h["Healthy"] is True
        victim = next(n for n in c.datacenter_servers("dc1") if n is not leader)
        c.kill(victim.name)
        MemoryStorage.__init__(c._memory[victim.name])  # the data dir is wiped
        await c.restart(victim.name)
        trailing = []
        for _ in range(20):
            status, h = await health(c, leader.name)
            me = next(s for s in h["Servers"] if s["ID"] == victim.server_id)
            actual = victim.core.last_index
            ahead = c.leader().core.last_index
            assert me["LastIndex"] <= actual, (me, actual)
            if ahead - actual > 20:
                trailing.append(me)
                assert me["Healthy"] is False and status == 429, me
            await trio.sleep(0.1)
        assert trailing, "the wiped follower was never observed behind"
        assert member_status(c, leader.name, victim.name) == 1  # gossip alone says all is well

    run(body)


def test_stable_since_is_when_health_last_changed():
    async def body(c):
        await settled(c)
        leader = await c.wait_for_leader()
        await trio.sleep(3)
        _, h1 = await health(c, leader.name)
        await trio.sleep(3)
        _, h2 = await health(c, leader.name)
        # unchanged health: the same StableSince on both reads (on the run's virtual epoch)
        assert [s["StableSince"] for s in h1["Servers"]] == [
            s["StableSince"] for s in h2["Servers"]
        ]
        assert all(s["StableSince"].startswith("2026-11-27T12:00:") for s in h1["Servers"])
        assert all(s["Version"] == CONSUL_VERSION for s in h1["Servers"])  # the serf build tag
        victim = next(n for n in c.datacenter_servers("dc1") if n is not leader)
        c.pause(victim.name)
        await trio.sleep(1)
        _, h3 = await health(c, leader.name)
        before = next(s for s in h2["Servers"] if s["ID"] == victim.server_id)["StableSince"]
        after = next(s for s in h3["Servers"] if s["ID"] == victim.server_id)
        assert after["Healthy"] is False and after["StableSince"] > before
        conf = await get_json(c, leader.name, "/v1/operator/autopilot/state")
        assert conf["Servers"][victim.server_id]["StableSince"] == after["StableSince"]
        c.resume(victim.name)

    run(body)


def test_forged_gossip_is_dropped_with_gossip_encryption():
    """With gossip encryption (the cluster's default in these tests) the same forged packets are
    dropped before they are read: no member is announced, nothing reaches Raft."""

    async def body(c):
        await settled(c)
        await c.wait_for_leader()
        real = config_ids(c)
        targets = [n.spec.serf_lan_address for n in c.servers.values()]
        for incarnation in range(1, 20):
            for dst in targets:
                c.net.send_datagram("127.0.9.1:8301", dst, forged_alive(1, incarnation))
            await trio.sleep(0.25)
        await trio.sleep(5)
        assert config_ids(c) == real
        assert all(
            "evil-1" not in {m.name for m in n.lan_pool.members()} for n in c.servers.values()
        )
        assert all(n.lan_pool.core.counters["dropped_plaintext"] > 0 for n in c.servers.values())

    run(body)


def test_promotion_at_the_default_raft_multiplier():
    """At raft_multiplier 5 (consim up's default, as Consul's) the leader hears from an idle
    follower only every 500 ms; the returning server must still be promoted."""

    async def body(c):
        await settled(c)
        leader = await c.wait_for_leader(within=60)
        await trio.sleep(5)
        # an idle, healthy cluster is healthy whenever it is asked (polls off the heartbeat's
        # phase: up to 500 ms since the last answer is normal here)
        for _ in range(30):
            status, h = await health(c, leader.name)
            assert status == 200, [s["LastContact"] for s in h["Servers"]]
            await trio.sleep(0.37)
        victim = next(n for n in c.datacenter_servers("dc1") if n is not leader)
        c.kill(victim.name)
        await eventually(lambda: victim.server_id not in config_ids(c), within=120)
        await c.restart(victim.name)
        await eventually(lambda: victim.server_id in config_ids(c), within=60)
        assert victim.server_id not in voter_ids(c)
        await eventually(lambda: victim.server_id in voter_ids(c), within=60)
        _, h = await health(c, c.leader().name)
        assert h["Healthy"] is True and all(s["Voter"] for s in h["Servers"])

    run(body, raft_multiplier=5)
