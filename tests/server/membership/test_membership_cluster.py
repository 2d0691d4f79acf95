"""/v1/agent/members, force-leave, a server with a foreign key, keyring files (real cluster)."""

from __future__ import annotations

import json

import trio

from .helpers import (
    K1,
    K2,
    OTHER,
    call,
    config_ids,
    events_of,
    eventually,
    get_json,
    key_body,
    member_status,
    run,
    set_stored_keyring,
    settled,
)

MEMBER_KEYS = [
    "Name", "Addr", "Port", "Tags", "Status", "ProtocolMin", "ProtocolMax", "ProtocolCur",
    "DelegateMin", "DelegateMax", "DelegateCur",
]  # fmt: skip


def test_members_lan_and_wan_shapes():
    async def body(c):
        await settled(c)
        lan = await get_json(c, "dc1-s2", "/v1/agent/members")
        assert [m["Name"] for m in lan] == ["dc1-s1", "dc1-s2", "dc1-s3"]
        for m in lan:
            node = c.node(m["Name"])
            assert list(m) == MEMBER_KEYS
            assert m["Addr"] == node.spec.host and m["Port"] == 8301
            assert m["Status"] == 1
            tags = m["Tags"]
            assert list(tags) == sorted(tags)
            assert tags["role"] == "consul" and tags["dc"] == "dc1"
            assert tags["id"] == node.node_id and tags["port"] == "8300"
            assert tags["raft_vsn"] == "3" and tags["vsn"] == "2"
        wan = await get_json(c, "dc1-s2", "/v1/agent/members?wan=1")
        assert [m["Name"] for m in wan] == [
            "dc1-s1.dc1", "dc1-s2.dc1", "dc1-s3.dc1", "dc2-s1.dc2", "dc2-s2.dc2",
        ]  # fmt: skip
        for m in wan:
            node = c.node(m["Name"].split(".")[0])
            assert list(m) == MEMBER_KEYS
            assert m["Port"] == 8302 and m["Addr"] == node.spec.host
            assert m["Tags"]["dc"] == node.datacenter and m["Status"] == 1
        # Consul: ?wan with an empty value is the LAN list.
        assert [m["Name"] for m in await get_json(c, "dc1-s2", "/v1/agent/members?wan")] == [
            "dc1-s1", "dc1-s2", "dc1-s3",
        ]  # fmt: skip
        # dc2's LAN pool holds only dc2's servers.
        assert [m["Name"] for m in await get_json(c, "dc2-s1", "/v1/agent/members")] == [
            "dc2-s1", "dc2-s2",
        ]  # fmt: skip
        # Node names in the raft configuration come from the LAN pool.
        conf = await get_json(c, "dc1-s1", "/v1/operator/raft/configuration")
        lan_by_addr = {f"{m['Addr']}:{m['Tags']['port']}": m["Name"] for m in lan}
        assert [s["Node"] for s in conf["Servers"]] == [
            lan_by_addr[s["Address"]] for s in conf["Servers"]
        ]
        assert sorted(s["Node"] for s in conf["Servers"]) == ["dc1-s1", "dc1-s2", "dc1-s3"]

    run(body, datacenters=(("dc1", 3), ("dc2", 2)))


def test_server_with_a_foreign_key_cannot_join():
    async def body(c):
        await settled(c)
        victim = "dc1-s3"
        c.kill(victim)
        await eventually(lambda: member_status(c, "dc1-s1", victim) == 4)
        set_stored_keyring(c, victim, [OTHER])
        before = {
            n: c.node(n).lan_pool.core.counters["dropped_decrypt"] for n in ("dc1-s1", "dc1-s2")
        }
        wan_before = c.node("dc2-s1").wan_pool.core.counters["dropped_decrypt"]
        await c.restart(victim)
        # It runs with the foreign key...
        assert json.loads(c.node(victim).lan_pool.core.keyring.to_json()) == [OTHER]
        await trio.sleep(15)
        # ...the others cannot open its packets (LAN and WAN) and count the drops...
        for n in ("dc1-s1", "dc1-s2"):
            assert c.node(n).lan_pool.core.counters["dropped_decrypt"] > before[n]
        assert c.node("dc2-s1").wan_pool.core.counters["dropped_decrypt"] > wan_before
        # ...and it never comes back alive for them.
        for observer in ("dc1-s1", "dc1-s2"):
            members = {
                m["Name"]: m["Status"] for m in await get_json(c, observer, "/v1/agent/members")
            }
            assert members == {"dc1-s1": 1, "dc1-s2": 1, "dc1-s3": 4}
        # WAN failure detection is slower (ProbeInterval 5 s, SuspicionMult 6): the suspicion
        # started while the server was down may still be running; it ends failed.
        await eventually(lambda: member_status(c, "dc2-s1", "dc1-s3.dc1", wan=True) == 4, 30)
        wan = {
            m["Name"]: m["Status"] for m in await get_json(c, "dc2-s1", "/v1/agent/members?wan=1")
        }
        assert wan["dc1-s3.dc1"] == 4
        restarted_at = [e.time for e in events_of(c.events, "restart")][-1]
        rejoins = [
            e
            for e in events_of(c.events, "member_join")
            if e.time >= restarted_at
            and e.node != victim
            and e.fields.get("name", "").startswith(victim)
        ]
        assert rejoins == []
        # The drop is logged, with memberlist's text and the sender.
        dropped = [
            e for e in events_of(c.events, "packet_dropped", "dc1-s1") if e.time >= restarted_at
        ]
        assert dropped, "no packet_dropped event on dc1-s1"
        e = dropped[0]
        assert e.level == "ERROR"
        # The first is the join's TCP push-pull (memberlist: "failed to receive: ..."), UDP
        # packets after it are "Decrypt packet failed: ...".
        assert e.message.startswith(
            "failed to receive: no installed keys could decrypt the message"
        ), e.message
        assert c.node(victim).spec.host in e.message
        # The keyring listing no longer counts it.
        listing = await get_json(c, "dc1-s1", "/v1/operator/keyring?local-only=true")
        assert listing[0]["NumNodes"] == 2 and listing[0]["Keys"] == {K1: 2}

    run(body, datacenters=(("dc1", 3), ("dc2", 1)))


def test_force_leave_of_a_killed_server():
    async def body(c):
        await settled(c)
        leader = await c.wait_for_leader()
        # Keep autopilot out of it: only the force-leave should remove the server.
        status, text = await call(
            c, leader.name, "PUT", "/v1/operator/autopilot/configuration",
            json.dumps({"CleanupDeadServers": False}).encode(),
        )  # fmt: skip
        assert (status, text) == (200, "true")
        victim = next(n for n in c.datacenter_servers("dc1") if n is not leader)
        other = next(n for n in c.datacenter_servers("dc1") if n not in (leader, victim))
        c.kill(victim.name)
        await eventually(
            lambda: (
                member_status(c, other.name, victim.name) == 4
                and member_status(c, other.name, f"{victim.name}.dc1", wan=True) == 4
            )
        )
        await trio.sleep(5)
        assert victim.server_id in config_ids(c)  # failed, but still configured

        status, text = await call(c, other.name, "PUT", f"/v1/agent/force-leave/{victim.name}")
        assert (status, text) == (200, "")
        members = {
            m["Name"]: m["Status"] for m in await get_json(c, other.name, "/v1/agent/members")
        }
        assert members[victim.name] == 3
        wan = {
            m["Name"]: m["Status"] for m in await get_json(c, other.name, "/v1/agent/members?wan=1")
        }
        assert wan[f"{victim.name}.dc1"] == 3
        # The leave spreads to the leader, whose reconcile removes the server from raft.
        await eventually(lambda: member_status(c, leader.name, victim.name) == 3)
        await eventually(lambda: victim.server_id not in config_ids(c))
        conf = await get_json(c, leader.name, "/v1/operator/raft/configuration")
        assert sorted(s["Node"] for s in conf["Servers"]) == sorted([leader.name, other.name])
        removed = [
            e
            for e in events_of(c.events, "autopilot_remove_server")
            if e.fields["id"] == victim.server_id
        ]
        assert removed

        # ?prune forgets the member entirely.
        status, text = await call(
            c, other.name, "PUT", f"/v1/agent/force-leave/{victim.name}?prune"
        )
        assert (status, text) == (200, "")
        names = [m["Name"] for m in await get_json(c, other.name, "/v1/agent/members")]
        assert victim.name not in names
        wan_names = [m["Name"] for m in await get_json(c, other.name, "/v1/agent/members?wan=1")]
        assert f"{victim.name}.dc1" not in wan_names
        assert events_of(c.events, "member_reap", other.name)

        status, text = await call(c, other.name, "PUT", "/v1/agent/force-leave/nope")
        assert (status, text) == (500, "agent: No node found with name 'nope'")

    run(body)


def test_keyring_files_persist_and_survive_restart(tmp_path):
    async def body(c):
        await settled(c)
        for node in c.servers.values():
            for fname in ("local.keyring", "remote.keyring"):
                path = tmp_path / node.name / "serf" / fname
                assert path.exists(), path
                assert json.loads(path.read_text()) == [K1]
        assert await call(c, "dc1-s1", "POST", "/v1/operator/keyring", key_body(K2)) == (200, "")
        for node in c.servers.values():
            for fname in ("local.keyring", "remote.keyring"):
                assert json.loads((tmp_path / node.name / "serf" / fname).read_text()) == [K1, K2]
        assert await call(c, "dc1-s2", "PUT", "/v1/operator/keyring", key_body(K2)) == (200, "")
        for node in c.servers.values():
            for fname in ("local.keyring", "remote.keyring"):
                # primary first
                assert json.loads((tmp_path / node.name / "serf" / fname).read_text()) == [K2, K1]
        c.kill("dc1-s3")
        await trio.sleep(1)
        await c.restart("dc1-s3")
        node = c.node("dc1-s3")
        assert json.loads(node.lan_pool.core.keyring.to_json()) == [K2, K1]
        assert json.loads(node.wan_pool.core.keyring.to_json()) == [K2, K1]
        # and it rejoins under the new primary key
        await settled(c)
        listing = await get_json(c, "dc1-s3", "/v1/operator/keyring")
        for e in listing:
            n = e["NumNodes"]
            assert n == (4 if e["WAN"] else {"dc1": 3, "dc2": 1}[e["Datacenter"]])
            assert e["Keys"] == {K1: n, K2: n} and e["PrimaryKeys"] == {K2: n}
        # The initial key from the configuration does not override the stored keyring.
        assert c.spec.encrypt == K1

    run(body, datacenters=(("dc1", 3), ("dc2", 1)), data_dir=tmp_path)
