"""Operator raft, status and agent endpoints on a real cluster in virtual time (reference §1-§4)."""

from __future__ import annotations

import json

import trio

from .helpers import eventually, get_json, http, ready, run

RAFT_SERVER_KEYS = ["ID", "Node", "Address", "Leader", "ProtocolVersion", "Voter", "LastIndex"]
NO_ID_OR_ADDRESS = (
    "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove"
)


def _by_address(conf):
    return {s["Address"]: s for s in conf["Servers"]}


# ---- GET /v1/operator/raft/configuration --------------------------------------------------
def test_configuration_shape_on_leader():
    async def body(c):
        leader, followers = await ready(c)
        # a write so the followers' match indexes move past the bootstrap entries
        assert (await http(c, leader.name, "PUT", "/v1/kv/x", body=b"1"))[0] == 200
        await trio.sleep(0.5)
        _, headers, conf = await get_json(c, leader.name, "/v1/operator/raft/configuration")
        # No query metadata headers on operator endpoints (§1); the ACL policy is on every answer.
        assert [h for h in headers if h.startswith("x-consul-")] == ["x-consul-default-acl-policy"]
        assert list(conf) == ["Servers", "Index"]
        assert conf["Index"] == leader.core.latest_configuration_index
        assert len(conf["Servers"]) == 3
        for s in conf["Servers"]:
            assert list(s) == RAFT_SERVER_KEYS
            node = next(n for n in c.servers.values() if n.address == s["Address"])
            assert s["ID"] == node.server_id == node.node_id  # protocol 3: GUID node id
            assert len(s["ID"]) == 36 and s["ID"].count("-") == 4
            assert s["Node"] == node.name
            assert s["Leader"] is (node is leader)
            assert s["Voter"] is True
            assert s["ProtocolVersion"] == "3"
            assert isinstance(s["LastIndex"], int)
            # Everyone has replicated the write: the leader's view of each last index.
            assert s["LastIndex"] == leader.core.last_index
        assert [s["Address"] for s in conf["Servers"]] == [
            "127.0.0.1:8300",
            "127.0.0.2:8300",
            "127.0.0.3:8300",
        ]
        # ?pretty indents by 4 spaces with a trailing newline.
        status, _, raw = await http(c, leader.name, "GET", "/v1/operator/raft/configuration?pretty")
        assert status == 200 and raw.endswith(b"}\n") and b'\n    "Servers": [' in raw
        assert json.loads(raw) == conf

    run(body)


def test_configuration_protocol_2_ids_are_addresses():
    async def body(c):
        leader, _ = await ready(c)
        _, _, conf = await get_json(c, leader.name, "/v1/operator/raft/configuration")
        for s in conf["Servers"]:
            assert s["ID"] == s["Address"]
            assert s["ProtocolVersion"] == "2"

    run(body, raft_protocol=2)


def test_configuration_from_follower_is_forwarded_to_leader():
    async def body(c):
        leader, followers = await ready(c)
        f = followers[0]
        _, _, direct = await get_json(c, leader.name, "/v1/operator/raft/configuration")
        _, _, forwarded = await get_json(c, f.name, "/v1/operator/raft/configuration")
        assert forwarded == direct
        # The leader's view: its autopilot knows every server's last index. A follower answering
        # locally (?stale) has its own autopilot state, empty when it never led: every LastIndex
        # 0 (Consul's), not its own log index beside zeros.
        assert f.autopilot_tracked is None  # never led
        _, _, local = await get_json(c, f.name, "/v1/operator/raft/configuration?stale")
        assert [s["LastIndex"] for s in local["Servers"]] == [0] * len(local["Servers"])
        assert f.core.last_index > 0
        assert all(s["LastIndex"] > 0 for s in forwarded["Servers"])
        assert local["Index"] == direct["Index"]
        # Default mode from a follower cut off from the leader: forwarding fails.
        c.isolate(f.name)
        await trio.sleep(2)  # past the heartbeat timeout: the follower knows it has no leader
        t0 = trio.current_time()
        status, _, text = await http(c, f.name, "GET", "/v1/operator/raft/configuration")
        assert (status, text) == (500, b"No cluster leader")
        assert trio.current_time() - t0 >= 1.0

    run(body, rpc_hold_timeout=1.0)


def test_stale_configuration_answered_in_minority_partition():
    async def body(c):
        leader, followers = await ready(c)
        lonely, other = followers
        c.partition([[lonely.name], [leader.name, other.name]])
        await trio.sleep(3)  # well past any election timeout: the majority keeps its leader
        assert c.leader() is leader
        t0 = trio.current_time()
        _, headers, conf = await get_json(c, lonely.name, "/v1/operator/raft/configuration?stale")
        assert trio.current_time() - t0 < 0.05  # answered locally, no hold
        assert sorted(_by_address(conf)) == sorted(n.address for n in c.servers.values())
        assert conf["Index"] == lonely.core.latest_configuration_index
        # ?stale=false is still stale (presence-checked).
        status, _, _ = await http(
            c, lonely.name, "GET", "/v1/operator/raft/configuration?stale=false"
        )
        assert status == 200
        status, _, text = await http(c, lonely.name, "GET", "/v1/operator/raft/configuration")
        assert (status, text) == (500, b"No cluster leader")
        # The majority side answers normally.
        _, _, conf = await get_json(c, other.name, "/v1/operator/raft/configuration")
        assert _by_address(conf)[leader.address]["Leader"] is True

    run(body, rpc_hold_timeout=0.5)


def _no_leader_body(hold: float):
    async def body(c):
        leader, followers = await ready(c)
        survivor = followers[0]
        c.kill(leader.name)
        c.kill(followers[1].name)
        t0 = trio.current_time()
        status, headers, text = await http(
            c, survivor.name, "GET", "/v1/operator/raft/configuration"
        )
        elapsed = trio.current_time() - t0
        return status, headers, text, elapsed

    return body


def test_no_cluster_leader_after_short_hold_timeout():
    status, headers, text, elapsed = run(_no_leader_body(0.4), rpc_hold_timeout=0.4)
    assert (status, text) == (500, b"No cluster leader")
    assert headers["content-type"].startswith("text/plain")
    assert 0.4 <= elapsed < 0.4 + 0.1


def test_no_cluster_leader_after_default_7s_hold():
    status, _, text, elapsed = run(_no_leader_body(7.0))
    assert (status, text) == (500, b"No cluster leader")
    assert 7.0 <= elapsed < 7.5


def test_hold_timeout_rides_out_an_election():
    """Within rpc_hold_timeout a follower waits for the new leader instead of failing."""

    async def body(c):
        leader, followers = await ready(c)
        c.kill(leader.name)
        t0 = trio.current_time()
        _, _, conf = await get_json(c, followers[0].name, "/v1/operator/raft/configuration")
        new = c.leader()
        assert new is not None and new is not leader
        assert _by_address(conf)[new.address]["Leader"] is True
        assert trio.current_time() - t0 < 7.0

    run(body)


# ---- DELETE /v1/operator/raft/peer ----------------------------------------------------------
def test_remove_peer_errors():
    async def body(c):
        leader, followers = await ready(c)
        f = followers[0].name
        out = []
        for q in ["", "?id=x&address=1.2.3.4:8300", "?address=10.0.0.9:8300", "?id=abc"]:
            out.append(await http(c, f, "DELETE", "/v1/operator/raft/peer" + q))
        # Nothing was removed.
        assert len(leader.core.latest_configuration.servers) == 3
        return out

    none, both, addr, ident = run(body)
    assert (none[0], none[2].decode()) == (400, NO_ID_OR_ADDRESS)
    assert (both[0], both[2]) == (400, b"Must specify only one of ?id or ?address")
    assert (addr[0], addr[2].decode()) == (
        500,
        'address "10.0.0.9:8300" was not found in the Raft configuration',
    )
    assert (ident[0], ident[2].decode()) == (
        500,
        'id "abc" was not found in the Raft configuration',
    )
    # ?id= with an empty value is still "present".
    for r in (none, both, addr, ident):
        assert r[1]["content-type"].startswith("text/plain")


def test_remove_peer_method_not_allowed():
    async def body(c):
        leader, _ = await ready(c)
        return await http(c, leader.name, "GET", "/v1/operator/raft/peer?id=x")

    status, headers, text = run(body)
    assert (status, text) == (405, b"method GET not allowed")
    assert headers["allow"] == "OPTIONS,DELETE"


def _remove_killed(query_for):
    async def body(c):
        leader, (f1, f2) = await ready(c)
        c.kill(f2.name)
        _, _, before = await get_json(c, f1.name, "/v1/operator/raft/configuration")
        # Through the follower: always forwarded to the leader.
        status, headers, text = await http(
            c, f1.name, "DELETE", "/v1/operator/raft/peer" + query_for(f2)
        )
        assert (status, text) == (200, b"")
        assert "content-type" not in headers
        running = [leader, f1]
        await eventually(
            lambda: all(len(n.core.latest_configuration.servers) == 2 for n in running)
        )
        for n in running:
            for q in ("?stale", ""):
                _, _, conf = await get_json(c, n.name, "/v1/operator/raft/configuration" + q)
                assert sorted(_by_address(conf)) == sorted([leader.address, f1.address])
                assert conf["Index"] > before["Index"]
            _, _, peers = await get_json(c, n.name, "/v1/status/peers")
            assert sorted(peers) == sorted([leader.address, f1.address])
        # Removing it again: no longer in the configuration.
        status, _, text = await http(
            c, leader.name, "DELETE", "/v1/operator/raft/peer" + query_for(f2)
        )
        assert status == 500 and text.endswith(b"was not found in the Raft configuration")
        # The remaining two still make progress.
        assert (await http(c, f1.name, "PUT", "/v1/kv/after", body=b"ok"))[0] == 200

    run(body)


def test_remove_killed_peer_by_address():
    _remove_killed(lambda n: f"?address={n.address}")


def test_remove_killed_peer_by_id():
    _remove_killed(lambda n: f"?id={n.server_id}")


# ---- POST /v1/operator/raft/transfer-leader -------------------------------------------------
def test_transfer_leader_without_id():
    async def body(c):
        leader, followers = await ready(c)
        status, headers, text = await http(
            c, followers[0].name, "POST", "/v1/operator/raft/transfer-leader"
        )
        assert (status, json.loads(text)) == (200, {"Success": True})
        assert headers["content-type"] == "application/json"
        new = await c.wait_for_leader(exclude={leader.name})
        assert new in followers
        _, _, addr = await get_json(c, leader.name, "/v1/status/leader")
        assert addr == new.address

    run(body)


def test_transfer_leader_to_named_server():
    async def body(c):
        leader, followers = await ready(c)
        target = followers[1]
        status, _, text = await http(
            c, leader.name, "POST", f"/v1/operator/raft/transfer-leader?id={target.server_id}"
        )
        assert (status, text) == (200, b'{"Success":true}')
        assert (await c.wait_for_leader(exclude={leader.name})) is target
        # And back again, asked through a follower.
        status, _, _ = await http(
            c, followers[0].name, "POST", f"/v1/operator/raft/transfer-leader?id={leader.server_id}"
        )
        assert status == 200
        assert (await c.wait_for_leader(exclude={target.name})) is leader

    run(body)


def test_transfer_leader_unknown_id():
    async def body(c):
        leader, followers = await ready(c)
        status, _, text = await http(
            c, followers[0].name, "POST", "/v1/operator/raft/transfer-leader?id=nope"
        )
        assert (status, text) == (500, b"Could not find address for server id nope")
        assert c.leader() is leader

    run(body)


def test_transfer_leader_with_no_other_voter():
    async def body(c):
        leader, _ = await ready(c)
        return await http(c, leader.name, "POST", "/v1/operator/raft/transfer-leader")

    status, _, text = run(body, datacenters=(("dc1", 1),))
    assert status == 500 and b"cannot find peer" in text


# ---- status and agent -----------------------------------------------------------------------
def test_status_leader_and_peers_everywhere():
    async def body(c):
        leader, followers = await ready(c)
        for n in c.servers.values():
            _, headers, addr = await get_json(c, n.name, "/v1/status/leader")
            assert addr == leader.address
            _, _, peers = await get_json(c, n.name, "/v1/status/peers")
            assert sorted(peers) == ["127.0.0.1:8300", "127.0.0.2:8300", "127.0.0.3:8300"]
        # No leader: "" and never an error, even with a long hold timeout.
        c.kill(leader.name)
        c.kill(followers[1].name)
        await trio.sleep(3)
        t0 = trio.current_time()
        _, _, addr = await get_json(c, followers[0].name, "/v1/status/leader")
        assert addr == ""
        assert trio.current_time() - t0 < 0.05

    run(body)


def test_agent_self_fields():
    async def body(c):
        leader, followers = await ready(c)
        await trio.sleep(0.5)  # followers learn the commit index with the next heartbeats
        out = {}
        for n in c.servers.values():
            _, _, me = await get_json(c, n.name, "/v1/agent/self")
            out[n.name] = (n, me)
        return leader, out

    leader, out = run(body)
    for name, (n, me) in out.items():
        cfg = me["Config"]
        assert (cfg["Datacenter"], cfg["NodeName"], cfg["NodeID"], cfg["Server"]) == (
            "dc1",
            name,
            n.node_id,
            True,
        )
        assert me["Member"]["Name"] == name
        assert me["Member"]["Tags"]["role"] == "consul"
        consul = me["Stats"]["consul"]
        raft = me["Stats"]["raft"]
        is_leader = n is leader
        assert consul["leader"] == ("true" if is_leader else "false")
        assert consul["leader_addr"] == leader.address
        assert consul["known_datacenters"] == "1"
        assert consul["server"] == "true"
        assert raft["state"] == ("Leader" if is_leader else "Follower")
        assert raft["num_peers"] == "2"
        assert int(raft["term"]) >= 1
        assert int(raft["commit_index"]) == n.core.commit_index >= 1
        assert raft["applied_index"].isdigit()
        if is_leader:
            assert raft["last_contact"] == "0"
        else:
            assert raft["last_contact"] not in ("0", "never")
