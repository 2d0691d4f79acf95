"""Autopilot on a real cluster: configuration, health/state, dead-server cleanup, re-add."""

from __future__ import annotations

import json

import trio

from .helpers import (
    OTHER,
    call,
    config_ids,
    events_of,
    eventually,
    get_json,
    member_status,
    run,
    set_stored_keyring,
    settled,
)

CONFIG = "/v1/operator/autopilot/configuration"
HEALTH = "/v1/operator/autopilot/health"
DEFAULTS = {
    "CleanupDeadServers": True,
    "LastContactThreshold": "200ms",
    "MaxTrailingLogs": 250,
    "MinQuorum": 0,
    "ServerStabilizationTime": "10s",
    "RedundancyZoneTag": "",
    "DisableUpgradeMigration": False,
    "UpgradeVersionTag": "",
}


def test_configuration_defaults_put_and_cas():
    async def body(c):
        await settled(c)
        leader = await c.wait_for_leader()
        # The leader stores the default configuration (Consul's getOrCreateAutopilotConfig);
        # consim does it in the leader's first reconcile pass.
        await eventually(lambda: leader.fsm.autopilot_create_index > 0)
        conf = await get_json(c, "dc1-s2", CONFIG)
        assert list(conf) == [*DEFAULTS, "CreateIndex", "ModifyIndex"]
        assert {k: conf[k] for k in DEFAULTS} == DEFAULTS
        assert conf["CreateIndex"] == conf["ModifyIndex"] > 0

        new = {**DEFAULTS, "CleanupDeadServers": False, "MaxTrailingLogs": 100}
        # without cas: body `true`
        assert await call(c, "dc1-s2", "PUT", CONFIG, json.dumps(new).encode()) == (200, "true")
        after = await get_json(c, "dc1-s3", CONFIG)
        assert after["CleanupDeadServers"] is False and after["MaxTrailingLogs"] == 100
        assert after["CreateIndex"] == conf["CreateIndex"]
        assert after["ModifyIndex"] > conf["ModifyIndex"]
        # stale cas -> false, nothing changes
        stale = json.dumps({**new, "MaxTrailingLogs": 7}).encode()
        path = f"{CONFIG}?cas={conf['ModifyIndex']}"
        assert await call(c, "dc1-s1", "PUT", path, stale) == (200, "false")
        assert (await get_json(c, "dc1-s1", CONFIG))["MaxTrailingLogs"] == 100
        # current cas -> true
        path = f"{CONFIG}?cas={after['ModifyIndex']}"
        assert await call(c, "dc1-s1", "PUT", path, stale) == (200, "true")
        assert (await get_json(c, "dc1-s1", CONFIG))["MaxTrailingLogs"] == 7
        # A partial body (py-consul sends {"CleanupDeadServers": false}): Consul decodes onto
        # api.NewAutopilotConfiguration(), so every missing field takes autopilot's default,
        # not a zero (which made the health endpoint answer 429 with FailureTolerance 0).
        partial = b'{"CleanupDeadServers": false}'
        assert await call(c, "dc1-s1", "PUT", CONFIG, partial) == (200, "true")
        got = await get_json(c, "dc1-s1", CONFIG)
        assert {k: got[k] for k in DEFAULTS} == {**DEFAULTS, "CleanupDeadServers": False}
        await trio.sleep(3)
        status, health = await _health(c, leader.name)
        assert (status, health["Healthy"], health["FailureTolerance"]) == (200, True, 1)
        assert await call(c, "dc1-s1", "PUT", CONFIG, b"{}") == (200, "true")
        assert {
            k: v for k, v in (await get_json(c, "dc1-s1", CONFIG)).items() if k in DEFAULTS
        } == (DEFAULTS)
        status, text = await call(c, "dc1-s1", "PUT", f"{CONFIG}?cas=x", b"{}")
        assert status == 400 and text.startswith("Error parsing cas value: ")
        status, text = await call(c, "dc1-s1", "PUT", CONFIG, b'{"Bogus": 1}')
        assert (status, text) == (
            400,
            'Error parsing autopilot config: json: unknown field "Bogus"',
        )

    run(body, datacenters=(("dc1", 3),))


async def _health(c, name):
    status, _, raw = await c.http(name, "GET", HEALTH)
    return status, json.loads(raw)


def test_dead_server_cleanup_health_and_readd():
    async def body(c):
        await settled(c)
        leader = await c.wait_for_leader()
        await trio.sleep(3)
        status, health = await _health(c, leader.name)
        assert status == 200 and health["Healthy"] is True
        assert health["FailureTolerance"] == 1
        assert len(health["Servers"]) == 3
        assert all(s["Healthy"] and s["SerfStatus"] == "alive" for s in health["Servers"])
        state = await get_json(c, leader.name, "/v1/operator/autopilot/state")
        assert state["Healthy"] is True and state["Leader"] == leader.server_id
        assert sorted(state["Voters"]) == sorted(config_ids(c))

        victim = next(n for n in c.datacenter_servers("dc1") if n is not leader)
        full = config_ids(c)
        c.kill(victim.name)
        # while it is down and still configured: 429 with the same body shape
        await trio.sleep(1)
        status, health = await _health(c, leader.name)
        assert status == 429 and health["Healthy"] is False
        assert health["FailureTolerance"] == 0
        down = next(s for s in health["Servers"] if s["ID"] == victim.server_id)
        assert down["Healthy"] is False
        state = await get_json(c, leader.name, "/v1/operator/autopilot/state")
        assert state["Healthy"] is False

        # autopilot's CleanupDeadServers removes it once serf marks it failed
        await eventually(lambda: victim.server_id not in config_ids(c))
        assert member_status(c, leader.name, victim.name) == 4
        removed = events_of(c.events, "autopilot_remove_server", leader.name)
        assert [e.fields["id"] for e in removed] == [victim.server_id]
        assert config_ids(c) == full - {victim.server_id}
        conf = await get_json(c, leader.name, "/v1/operator/raft/configuration")
        assert len(conf["Servers"]) == 2
        await trio.sleep(2)
        status, health = await _health(c, leader.name)
        assert status == 200 and len(health["Servers"]) == 2

        # restarted: it rejoins gossip and the leader adds it back
        await c.restart(victim.name)
        await eventually(lambda: config_ids(c) == full, within=60)
        assert events_of(c.events, "reconcile_add_server", c.leader().name)
        await eventually(lambda: victim.core is not None and victim.core.leader_id is not None)

    run(body)


def test_cleanup_never_removes_a_majority():
    """After one dead server was removed (2 voters left), a second failed server stays:
    1 > (2-1)//2. A killed one would cost the quorum (the leader steps down before serf
    notices), so the second server keeps Raft but loses gossip: restarted with a foreign key."""

    async def body(c):
        await settled(c)
        leader = await c.wait_for_leader()
        first, second = [n for n in c.datacenter_servers("dc1") if n is not leader]
        c.kill(first.name)
        await eventually(lambda: first.server_id not in config_ids(c))
        assert len(config_ids(c)) == 2

        c.kill(second.name)
        set_stored_keyring(c, second.name, [OTHER])
        await c.restart(second.name)
        await eventually(lambda: member_status(c, leader.name, second.name) == 4)
        await eventually(lambda: bool(events_of(c.events, "autopilot_too_many_dead")))
        e = events_of(c.events, "autopilot_too_many_dead")[0]
        assert e.node == c.leader().name and e.level == "WARN"
        assert e.fields == {"failed": 1, "voters": 2}
        assert e.message == "Failed to remove dead servers: too many dead servers: 1/2"
        await trio.sleep(10)
        assert second.server_id in config_ids(c)
        assert [x.fields["id"] for x in events_of(c.events, "autopilot_remove_server")] == [
            first.server_id
        ]

    run(body)


def test_cleanup_disabled_removes_nothing():
    async def body(c):
        await settled(c)
        leader = await c.wait_for_leader()
        body_json = json.dumps({"CleanupDeadServers": False}).encode()
        assert await call(c, leader.name, "PUT", CONFIG, body_json) == (200, "true")
        victim = next(n for n in c.datacenter_servers("dc1") if n is not leader)
        full = config_ids(c)
        c.kill(victim.name)
        await eventually(lambda: member_status(c, leader.name, victim.name) == 4)
        await trio.sleep(20)
        assert config_ids(c) == full
        assert events_of(c.events, "autopilot_remove_server") == []
        status, health = await _health(c, leader.name)
        assert status == 429
        down = next(s for s in health["Servers"] if s["ID"] == victim.server_id)
        assert down["SerfStatus"] == "failed" and down["Healthy"] is False

    run(body)


def test_restart_right_after_kill():
    """Regression: the killed incarnation's teardown (ServerNode.run's finally) must not mark the
    restarted one as not running or close its storage."""

    async def body(c):
        await settled(c)
        c.kill("dc1-s3")
        await c.restart("dc1-s3")
        await trio.sleep(1)
        assert c.node("dc1-s3").running
        assert c.node("dc1-s3").status()["state"] != "down"
        # its gossip pools serve keyring queries again (no stale teardown fails them)
        await settled(c)
        listing = await get_json(c, "dc1-s3", "/v1/operator/keyring?local-only=true")
        assert listing[0]["NumNodes"] == 3

    run(body)
