"""Consul's RPC on the server port (byte 0, and byte 4 = yamux) against a real cluster in virtual
time: the bytes a Go net/rpc client sends, Consul's replies and errors, forwarding, ACL tokens."""

from __future__ import annotations

from typing import Any

import msgpack
import trio

from consim.acl import ACLConfig
from consim.net.msgpackrpc import ClientCodec, Response, go_pack
from consim.net.portmux import RPC_CONSUL, RPC_MULTIPLEX_V2
from consim.net.yamux_conn import client_session

from .endpoints.helpers import ready, run

CLIENT = "127.0.0.200:40000"


class Client:
    """A net/rpc client over one stream, like Go's rpc.Client with Consul's codec."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.codec = ClientCodec()
        self.seq = 0
        self.inbox: list[Response] = []

    async def call(self, method: str, args: Any) -> Response:
        self.seq += 1
        seq = self.seq
        await self.stream.send_all(ClientCodec.request(seq, method, args))
        return await self.response(seq)

    async def response(self, seq: int) -> Response:
        with trio.fail_after(30):
            while True:
                for r in self.inbox:
                    if r.seq == seq:
                        self.inbox.remove(r)
                        return r
                data = await self.stream.receive_some(65536)
                if not data:
                    raise EOFError("connection closed")
                self.inbox += self.codec.feed(data)


async def dial(c, name: str) -> Client:
    return Client(await c.net.open_stream(CLIENT, c.servers[name].address, RPC_CONSUL))


def test_status_and_operator_on_leader_and_follower():
    async def body(c):
        leader, followers = await ready(c)
        for node in (leader, followers[0]):
            rpc = await dial(c, node.name)
            assert await rpc.call("Status.Ping", {}) == Response(1, "Status.Ping", "", {})
            r = await rpc.call("Status.Leader", {"Datacenter": "dc1"})
            assert (r.error, r.body) == ("", leader.address)
            r = await rpc.call("Status.Peers", {})
            assert sorted(r.body) == sorted(n.address for n in c.servers.values())
            r = await rpc.call("Operator.RaftGetConfiguration", {"Datacenter": "dc1"})
            assert r.error == ""
            assert r.body["Index"] == leader.core.latest_configuration_index
            servers = r.body["Servers"]
            assert [s["Address"] for s in servers] == sorted(n.address for n in c.servers.values())
            assert [s["Leader"] for s in servers] == [
                s["Address"] == leader.address for s in servers
            ]
            assert {s["ProtocolVersion"] for s in servers} == {"3"}
            r = await rpc.call("Status.RaftStats", {})
            assert r.body["LastTerm"] == leader.core.term
            assert isinstance(r.body["LastContact"], str)  # a Go duration text, as raft's Stats

    run(body)


def test_kvs_apply_get_list_through_a_follower_with_durations_in_ns():
    async def body(c):
        leader, followers = await ready(c)
        rpc = await dial(c, followers[0].name)
        value = bytes(range(256))  # not UTF-8: travels as raw, comes back exact
        r = await rpc.call(
            "KVS.Apply",
            {
                "Datacenter": "dc1",
                "Op": "set",
                "DirEnt": {"Key": "a/b", "Value": value, "Flags": 7},
            },
        )
        assert (r.error, r.body) == ("", True)  # KVS.Apply's reply is a bare bool
        assert leader.fsm.get("a/b")[1].value == value
        r = await rpc.call("KVS.Get", {"Key": "a/b"})
        assert r.error == ""
        (entry,) = r.body["Entries"]
        assert entry["Key"] == "a/b" and entry["Flags"] == 7
        assert entry["Value"].encode("utf-8", "surrogateescape") == value
        assert entry["CreateIndex"] == entry["ModifyIndex"] > 0
        # QueryMeta flattened into the reply; LastContact is a Go time.Duration (int64 ns)
        assert r.body["KnownLeader"] is True and r.body["ConsistencyLevel"] == "leader"
        assert r.body["Index"] == entry["ModifyIndex"]
        assert r.body["LastContact"] == 0  # served by the leader
        stale = await rpc.call("KVS.Get", {"Key": "a/b", "AllowStale": True})
        assert stale.body["ConsistencyLevel"] == "stale"
        assert isinstance(stale.body["LastContact"], int) and stale.body["LastContact"] > 0
        r = await rpc.call("KVS.Get", {"Key": "missing"})
        assert r.body["Entries"] is None  # nil slice
        r = await rpc.call("KVS.List", {"Key": "a/"})
        assert [e["Key"] for e in r.body["Entries"]] == ["a/b"]
        r = await rpc.call("KVS.ListKeys", {"Prefix": "", "Seperator": "/"})
        assert r.body["Keys"] == ["a/"]
        # A blocking query: MaxQueryTime 1.5 s in nanoseconds, nothing changes -> returns after it
        t0 = trio.current_time()
        r = await rpc.call(
            "KVS.Get",
            {"Key": "a/b", "MinQueryIndex": entry["ModifyIndex"], "MaxQueryTime": 1_500_000_000},
        )
        waited = trio.current_time() - t0
        assert r.error == "" and 1.5 <= waited <= 1.5 * (1 + 1 / 16) + 0.5, waited
        r = await rpc.call(
            "KVS.Apply", {"Op": "cas", "DirEnt": {"Key": "a/b", "Value": b"x", "ModifyIndex": 1}}
        )
        assert (r.error, r.body) == ("", False)

    run(body)


def test_errors_are_consuls_texts_and_unknown_methods_close():
    async def body(c):
        leader, followers = await ready(c)
        rpc = await dial(c, followers[0].name)
        r = await rpc.call("Operator.RaftRemovePeerByAddress", {"Address": "10.0.0.1:8300"})
        assert r.error == 'address "10.0.0.1:8300" was not found in the Raft configuration'
        assert r.body == {}  # Go's invalidRequest
        r = await rpc.call("KVS.Apply", {"Op": "bogus", "DirEnt": {"Key": "k"}})
        assert r.error == "Unknown KVS operation: bogus"
        r = await rpc.call("Status.Leader", {"Datacenter": "nowhere"})
        assert r.error == "No path to datacenter"
        # The connection is still usable after endpoint errors ...
        assert (await rpc.call("Status.Ping", {})).error == ""
        # ... but net/rpc closes it after an unknown method (after answering).
        r = await rpc.call("KVS.Nope", {})
        assert r.error == "rpc: can't find method KVS.Nope"
        assert await rpc.stream.receive_some(10) == b""
        rpc = await dial(c, leader.name)
        r = await rpc.call("Nope.Nope", {})
        assert r.error == "rpc: can't find service Nope.Nope"
        rpc = await dial(c, leader.name)
        r = await rpc.call("KVS.Get", {"Key": 5})  # not a string: Go's decoder fails
        assert r.error.startswith("msgpack decode error")
        stats = c.net.stats[leader.address]
        assert stats["consul_rpc_bad_method"] == 1 and stats["consul_rpc_bad_args"] == 1

    run(body)


def test_acl_token_in_the_request():
    acl = ACLConfig.from_dict(
        {
            "enabled": True,
            "default_policy": "deny",
            "initial_management": "root",
            "tokens": [{"accessor_id": "a1", "secret_id": "reader", "key_prefix": {"": "read"}}],
        }
    )

    async def body(c):
        leader, followers = await ready(c)
        rpc = await dial(c, followers[0].name)
        args = {"Op": "set", "DirEnt": {"Key": "k", "Value": b"v"}}
        anonymous = (await rpc.call("KVS.Apply", args)).error
        assert anonymous.startswith(
            "Permission denied: anonymous token lacks permission 'key:write'"
        )
        denied = (await rpc.call("KVS.Apply", {**args, "Token": "reader"})).error
        assert denied.startswith("Permission denied: token with AccessorID 'a1' lacks permission")
        assert (await rpc.call("KVS.Apply", {**args, "Token": "nope"})).error == "ACL not found"
        assert (await rpc.call("KVS.Apply", {**args, "Token": "root"})).body is True
        r = await rpc.call("KVS.Get", {"Key": "k", "Token": "reader"})
        assert r.body["Entries"][0]["Key"] == "k"

    run(body, acl=acl)


def test_no_cluster_leader_when_quorum_is_lost():
    async def body(c):
        leader, followers = await ready(c)
        c.kill(leader.name)
        c.kill(followers[1].name)
        rpc = await dial(c, followers[0].name)
        r = await rpc.call("KVS.Get", {"Key": "k"})
        assert r.error == "No cluster leader"
        r = await rpc.call("Status.Leader", {})
        assert r.error == ""  # Status is answered locally, never "no leader"

    run(body, rpc_hold_timeout=1.0)


def test_same_rpc_over_yamux_streams():
    async def body(c):
        leader, followers = await ready(c)
        stats = c.net.stats[followers[0].address]
        sessions = stats["yamux_sessions"]
        transport = await c.net.open_stream(CLIENT, followers[0].address, RPC_MULTIPLEX_V2)
        async with client_session(transport) as open_stream:
            clients = [Client(await open_stream()) for _ in range(3)]
            got = []

            async def one(i: int, rpc: Client) -> None:
                got.append(
                    await rpc.call(
                        "KVS.Apply",
                        {"Op": "set", "DirEnt": {"Key": f"y{i}", "Value": b"v" * 300_000}},
                    )
                )

            async with trio.open_nursery() as n:
                for i, rpc in enumerate(clients):
                    n.start_soon(one, i, rpc)
            assert [(r.error, r.body) for r in got] == [("", True)] * 3
            # 300 kB values are past yamux's 256 KiB window: the reply needed window updates
            r = await clients[0].call("KVS.Get", {"Key": "y1"})
            assert len(r.body["Entries"][0]["Value"]) == 300_000
        assert stats["yamux_sessions"] == sessions + 1

    run(body)


def test_garbage_and_stalled_requests_close_the_connection_only():
    async def body(c):
        leader, _ = await ready(c)
        stats = c.net.stats[leader.address]
        s = await c.net.open_stream(CLIENT, leader.address, RPC_CONSUL)
        await s.send_all(b"\xc1\xc1")
        assert await s.receive_some(10) == b""
        assert stats["consul_rpc_garbage"] == 1
        s = await c.net.open_stream(CLIENT, leader.address, RPC_CONSUL)
        await s.send_all(go_pack({"Seq": 1, "ServiceMethod": "Status.Ping"}))  # no body, ever
        with trio.fail_after(30):
            assert await s.receive_some(10) == b""
        assert stats["consul_rpc_timed_out"] == 1
        s = await c.net.open_stream(CLIENT, leader.address, RPC_CONSUL)
        await s.send_all(msgpack.packb(["not", "a", "header"]))
        assert await s.receive_some(10) == b""
        assert stats["consul_rpc_garbage"] == 2
        # the server is fine
        assert (await (await dial(c, leader.name)).call("Status.Ping", {})).error == ""

    run(body)


def test_catalog_calls_with_consul_query_meta():
    async def body(c):
        leader, followers = await ready(c)
        rpc = await dial(c, followers[0].name)
        r = await rpc.call(
            "Catalog.Register",
            {
                "Datacenter": "dc1",
                "Node": "web1",
                "Address": "10.0.0.5",
                "Service": {"Service": "web", "Port": 80, "Tags": ["a"]},
            },
        )
        assert (r.error, r.body) == ("", {})
        r = await rpc.call("Catalog.ListDatacenters", {})
        assert r.body == ["dc1"]
        r = await rpc.call("Catalog.ListNodes", {"Datacenter": "dc1"})
        assert r.error == ""
        assert "web1" in [n["Node"] for n in r.body["Nodes"]]
        # IndexedNodes embeds QueryMeta: flattened, LastContact in ns, no nested QueryMeta
        assert "QueryMeta" not in r.body and r.body["KnownLeader"] is True
        assert r.body["Index"] > 0 and isinstance(r.body["LastContact"], int)
        r = await rpc.call("Catalog.ServiceNodes", {"ServiceName": "web"})
        assert [(n["Node"], n["ServicePort"]) for n in r.body["ServiceNodes"]] == [("web1", 80)]
        assert r.body["ConsistencyLevel"] == "leader"
        r = await rpc.call("Catalog.Register", {"Node": "", "Address": "x"})
        assert r.error == "Must provide node"

    run(body)
