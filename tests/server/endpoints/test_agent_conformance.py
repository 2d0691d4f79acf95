"""Consul conformance of the agent and KV endpoints through the HTTP API (issue 11 items 2, 3, 5):
/v1/agent/self's Member, PUT /v1/agent/leave, transfer-leader to the leader itself, ?acquire
without sessions. Virtual time; the live half (StableSince on the wall clock, leave over real
sockets) is tests/runtime/test_live_agent.py."""

from __future__ import annotations

import json

import trio

from .helpers import eventually, get_json, http, ready, run


def test_agent_self_member_is_its_members_entry():
    async def body(c):
        await ready(c)
        for n in c.datacenter_servers("dc1"):
            lan = n.lan_pool
            await eventually(lambda lan=lan: sum(m.status == 1 for m in lan.members()) == 3, 30)
        out = {}
        for n in c.datacenter_servers("dc1"):
            _, _, me = await get_json(c, n.name, "/v1/agent/self")
            _, _, members = await get_json(c, n.name, "/v1/agent/members")
            out[n.name] = (me, members)
        return out

    for name, (me, members) in run(body).items():
        [entry] = [m for m in members if m["Name"] == name]
        assert me["Member"] == entry
        tags = me["Member"]["Tags"]
        # serf's build tag is "version:revision" of the same Config.Version
        assert tags["build"] == f"{me['Config']['Version']}:{me['Config']['Revision']}"
        assert "expect" not in tags  # Consul sets it only with bootstrap_expect
        assert tags["id"] == me["Config"]["NodeID"] and tags["dc"] == me["Config"]["Datacenter"]


def test_agent_leave_leaves_and_shuts_the_agent_down():
    """PUT /v1/agent/leave answers 200, then the server is out of the Raft configuration, gossip
    sees it 'left' (not 'failed'), and it no longer serves: what `consim ctl stop` does."""

    async def body(c):
        leader, (f1, f2) = await ready(c)
        for n in (leader, f1, f2):
            lan = n.lan_pool
            await eventually(lambda lan=lan: sum(m.status == 1 for m in lan.members()) == 3, 30)
        status, _, raw = await http(c, f1.name, "PUT", "/v1/agent/leave")
        assert (status, raw) == (200, b"")
        await eventually(lambda: not f1.running, 5)
        ids = {s.id for s in leader.core.latest_configuration.servers}
        assert f1.server_id not in ids and len(ids) == 2
        statuses = {m.name: m.status for m in f2.lan_pool.members()}
        assert statuses[f1.name] == 3  # left
        try:
            await http(c, f1.name, "GET", "/v1/status/leader")
        except Exception as exc:  # virtual time: the in-process app refuses like a closed port
            refused = str(exc)
        else:
            refused = ""
        assert "not running" in refused
        # the two that remain still have a leader and commit
        status, _, raw = await http(c, leader.name, "PUT", "/v1/kv/after-leave", body=b"1")
        assert (status, raw) == (200, b"true")
        await trio.sleep(5)
        assert not f1.running  # not restarted by anything

    run(body)


def test_transfer_leader_to_itself():
    async def body(c):
        leader, (f1, _) = await ready(c)
        # asked through a follower: forwarded to the leader, which refuses to pick itself
        path = f"/v1/operator/raft/transfer-leader?id={leader.server_id}"
        status, _, raw = await http(c, f1.name, "POST", path)
        return status, raw, c.leader() is leader

    status, raw, same = run(body)
    assert (status, raw) == (500, b"cannot transfer leadership to itself")
    assert same


def test_acquire_and_release_without_sessions():
    async def body(c):
        leader, (f1, _) = await ready(c)
        r = {}
        r["acquire"] = await http(c, f1.name, "PUT", "/v1/kv/lock?acquire=abc", body=b"x")
        r["acquire-empty"] = await http(c, f1.name, "PUT", "/v1/kv/lock?acquire=", body=b"x")
        r["release"] = await http(c, f1.name, "PUT", "/v1/kv/lock?release=abc", body=b"x")
        r["get"] = await http(c, leader.name, "GET", "/v1/kv/lock")
        return r

    r = run(body)
    assert (r["acquire"][0], r["acquire"][2]) == (500, b'invalid session "abc"')
    assert (r["acquire-empty"][0], r["acquire-empty"][2]) == (500, b"missing session")
    # not the lock holder: Consul's state store answers false, nothing is written
    assert (r["release"][0], r["release"][2]) == (200, b"false")
    assert r["get"][0] == 404


def test_acquire_checks_key_write_before_the_session():
    from consim.acl import ACLConfig

    acl = ACLConfig.from_dict({"enabled": True, "default_policy": "deny"})

    async def body(c):
        await ready(c)
        return await http(c, "dc1-s1", "PUT", "/v1/kv/lock?acquire=abc", body=b"x")

    status, _, raw = run(body, acl=acl)
    assert status == 403 and json.dumps(raw.decode()).startswith('"Permission denied')
