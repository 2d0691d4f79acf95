"""Conformance with Consul's own RPC client stack: a Go program (net/rpc + hashicorp's
net-rpc-msgpackrpc with Consul's msgpack handle, plain on byte 0 and over hashicorp/yamux on byte
4, decoding into Consul's struct shapes) built from Debian's packages, against one live consim
cluster on loopback: answers from a leader and a follower, Consul's errors, and `No cluster
leader` once quorum is lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio

from consim.acl import ACLConfig
from consim.runtime import start_live_cluster_parts
from consim.spec import ClusterSpec
from tests.conformance.gobuild import build

PROGRAM = Path(__file__).parent / "consulrpc"
IMPORTS = (
    "github.com/hashicorp/net-rpc-msgpackrpc",
    "github.com/hashicorp/yamux",
    "github.com/hashicorp/go-msgpack",
)
HTTP_PORT = 18631


async def go_calls(
    binary: Path, address: str, mode: str, calls: list[dict[str, Any]], *flags: str
) -> list:
    done = await trio.run_process(
        [str(binary), "-addr", address, "-mode", mode, *flags],
        stdin=json.dumps(calls).encode(),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def _acl() -> ACLConfig:
    return ACLConfig.from_dict(
        {
            "enabled": True,
            "default_policy": "deny",
            "initial_management": "root",
            "tokens": [{"accessor_id": "a1", "secret_id": "reader", "key_prefix": {"": "read"}}],
        }
    )


async def test_go_consul_rpc_client_plain_and_yamux():
    from live_hosts import free_host_base

    binary = await trio.to_thread.run_sync(build, PROGRAM, *IMPORTS)
    block = free_host_base([3], HTTP_PORT)
    spec = ClusterSpec(
        seed=5,
        raft_multiplier=1,
        http_port=HTTP_PORT,
        host_block=block,
        acl=_acl(),
        rpc_hold_timeout=0.5,
    )
    cluster, _events = start_live_cluster_parts(spec)
    async with trio.open_nursery() as nursery:
        await nursery.start(cluster.net.run)
        await nursery.start(cluster.run)
        leader = await cluster.wait_for_leader(within=15)
        with trio.fail_after(10):
            while not leader.consistent_ready:
                await trio.sleep(0.02)
        followers = [n for n in cluster.servers.values() if n is not leader]
        every = sorted(n.address for n in cluster.servers.values())

        for mode in ("plain", "yamux"):
            for node in (leader, followers[0]):
                key = f"{mode}/{node.name}"
                out = await go_calls(
                    binary,
                    node.address,
                    mode,
                    [
                        {"Op": "ping"},
                        {"Op": "leader"},
                        {"Op": "peers"},
                        {"Op": "config", "Token": "root"},
                        {"Op": "stats"},
                        {"Op": "put", "Key": key, "Value": "v1", "Token": "root"},
                        {"Op": "get", "Key": key, "Token": "reader"},
                        {"Op": "get", "Key": key, "Token": "reader", "Stale": True},
                        {"Op": "keys", "Key": "", "Token": "reader"},
                        {"Op": "put", "Key": key, "Value": "v2", "Token": "reader"},
                        {"Op": "get", "Key": key, "Token": "nope"},
                        {"Op": "remove-address", "Address": "10.0.0.1:8300", "Token": "root"},
                        {"Op": "leader", "Datacenter": "dc9"},
                    ],
                )
                where = f"{mode} via {node.name}"
                assert out[0] == {"Error": "", "Reply": {}}, where
                assert out[1]["Reply"] == leader.address, where
                assert sorted(out[2]["Reply"]) == every, where
                conf = out[3]["Reply"]
                assert sorted(s["Address"] for s in conf["Servers"]) == every, where
                assert [s["Address"] for s in conf["Servers"] if s["Leader"]] == [leader.address]
                assert conf["Index"] == leader.core.latest_configuration_index
                assert out[4]["Reply"]["LastTerm"] == leader.core.term, where
                assert out[5] == {"Error": "", "Reply": True}, where
                got = out[6]["Reply"]
                assert [(e["Key"], e["Value"]) for e in got["Entries"]] == [(key, "v1")], where
                assert got["Index"] == got["Entries"][0]["ModifyIndex"] > 0
                assert got["KnownLeader"] is True and got["ConsistencyLevel"] == "leader"
                stale = out[7]["Reply"]
                assert stale["ConsistencyLevel"] == "stale"
                if node is not leader:
                    # time.Duration decoded from int64 ns: the follower's last contact, > 0
                    assert 0 < stale["LastContactNs"] < 5_000_000_000, stale
                assert f"{mode}/" in out[8]["Reply"], where  # cut at the separator
                assert out[9]["Error"].startswith(
                    "Permission denied: token with AccessorID 'a1' lacks permission 'key:write'"
                )
                assert out[10]["Error"] == "ACL not found"
                assert out[11]["Error"] == (
                    'address "10.0.0.1:8300" was not found in the Raft configuration'
                )
                assert out[12]["Error"] == "No path to datacenter"

        # A blocking query over yamux: MaxQueryTime travels as ns and bounds the wait.
        index = leader.fsm.last_applied
        out = await go_calls(
            binary,
            followers[0].address,
            "yamux",
            [
                {
                    "Op": "get",
                    "Key": "plain/none",
                    "Token": "root",
                    "MinIndex": index + 1000,
                    "MaxQueryTime": "700ms",
                }
            ],
        )
        assert 650 <= out[0]["Reply"]["TookMs"] < 3000, out

        # net/rpc answers an unknown method, then Consul closes the connection.
        out = await go_calls(binary, leader.address, "plain", [{"Op": "unknown"}, {"Op": "ping"}])
        assert out[0]["Error"] == "rpc: can't find method KVS.NoSuchMethod"
        # (EOF, "connection is shut down" or a reset, depending on when the close lands)
        assert out[1]["Error"] and out[1]["Reply"] is None, out

        # Quorum lost: the survivor answers reads and writes with Consul's text after the hold
        # timeout, and still answers Status locally.
        cluster.kill(leader.name)
        cluster.kill(followers[1].name)
        survivor = followers[0]
        for mode in ("plain", "yamux"):
            out = await go_calls(
                binary,
                survivor.address,
                mode,
                [
                    {"Op": "put", "Key": "k", "Value": "v", "Token": "root"},
                    {"Op": "get", "Key": "k", "Token": "root"},
                    {"Op": "ping"},
                ],
            )
            assert out[0]["Error"] == "No cluster leader", (mode, out)
            assert out[1]["Error"] == "No cluster leader", (mode, out)
            assert out[2] == {"Error": "", "Reply": {}}
        nursery.cancel_scope.cancel()


async def test_go_client_over_tls_with_verify_incoming(tmp_path):
    """Go's crypto/tls on byte 3 (Consul's pool with TLS), checking server.dc1.consul, against
    servers with verify_incoming: served over TLS, a plaintext Go client is refused."""
    from live_hosts import free_host_base

    from consim.tls.certs import create_ca, create_cert
    from consim.tls.config import TLSConfig

    binary = await trio.to_thread.run_sync(build, PROGRAM, *IMPORTS)
    ca = create_ca()
    server = create_cert(ca, datacenter="dc1")
    client = create_cert(ca, datacenter="dc1", kind="client")
    for name, data in (("ca.pem", ca.cert), ("c.pem", client.cert), ("c-key.pem", client.key)):
        (tmp_path / name).write_bytes(data)
    tls = TLSConfig(
        ca_pem=ca.cert,
        certs=(("dc1", server.cert, server.key),),
        verify_incoming=True,
        verify_outgoing=True,
        verify_server_hostname=True,
    )
    block = free_host_base([3], HTTP_PORT + 7)
    spec = ClusterSpec(
        seed=6, raft_multiplier=1, http_port=HTTP_PORT + 7, host_block=block, tls=tls
    )
    flags = ["-ca-file", str(tmp_path / "ca.pem"), "-cert-file", str(tmp_path / "c.pem")]
    flags += ["-key-file", str(tmp_path / "c-key.pem")]
    cluster, _events = start_live_cluster_parts(spec)
    async with trio.open_nursery() as nursery:
        await nursery.start(cluster.net.run)
        await nursery.start(cluster.run)
        leader = await cluster.wait_for_leader(within=15)
        follower = next(n for n in cluster.servers.values() if n is not leader)
        for mode in ("plain", "yamux"):
            calls = [{"Op": "ping"}, {"Op": "leader"}, {"Op": "put", "Key": mode, "Value": "v"}]
            with trio.fail_after(15):
                while True:
                    out = await go_calls(binary, follower.address, mode, calls, *flags)
                    if out[2]["Error"] != "No cluster leader":
                        break
            assert out == [
                {"Error": "", "Reply": {}},
                {"Error": "", "Reply": leader.address},
                {"Error": "", "Reply": True},
            ], (mode, out)
        # Checking for another datacenter's name fails the handshake at the Go side.
        out = await go_calls(
            binary,
            leader.address,
            "plain",
            [{"Op": "ping"}],
            *flags,
            "-server-name",
            "server.dc2.consul",
        )
        assert out[0]["Error"].startswith("tls: "), out
        # Plaintext: refused and counted.
        out = await go_calls(binary, leader.address, "plain", [{"Op": "ping"}])
        assert out[0]["Error"] and out[0]["Reply"] is None, out
        assert cluster.net.stats[leader.address]["tls_plaintext_refused"] >= 1
        nursery.cancel_scope.cancel()
