"""Conformance with a real Consul client: py-consul against a live consim cluster on loopback.

One live 3-server cluster (sockets, hypercorn on 127.0.0.{1,2,3}:18531 (or a free 127.0.N.x block), raft_multiplier 1) runs in
the test's trio loop; py-consul is synchronous, so every client call runs in a worker thread.
A second test runs ``consim up`` as a subprocess, drives it with ``consim ctl`` and stops it with
SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial

import consul
import httpx
import pytest
import trio

from consim.acl import ACLConfig
from consim.runtime import start_live_cluster_parts
from consim.spec import ClusterSpec

HTTP_PORT = 18531
OPS = "8f4b2a6e-0000-4000-8000-00000000000a"
READER = "8f4b2a6e-0000-4000-8000-00000000000b"


def _acl() -> ACLConfig:
    return ACLConfig.from_dict(
        {
            "enabled": True,
            "default_policy": "deny",
            "initial_management": "root",
            "tokens": [
                {"accessor_id": OPS, "secret_id": "ops", "operator": "write"},
                {
                    "accessor_id": READER,
                    "secret_id": "reader",
                    "operator": "read",
                    "key_prefix": {"": "read", "app/": "write"},
                },
                # py-consul's raft_config() sends no token at all: let anonymous read it.
                {
                    "accessor_id": "00000000-0000-0000-0000-000000000002",
                    "secret_id": "anonymous",
                    "operator": "read",
                },
            ],
        }
    )


def client(host: str, token: str | None = "root") -> consul.Consul:
    return consul.Consul(host=host, port=HTTP_PORT, token=token)


async def call(fn, *args, **kw):
    return await trio.to_thread.run_sync(partial(fn, *args, **kw))


async def test_py_consul_against_live_cluster():
    from live_hosts import free_host_base

    # 127.0.0.x unless another live cluster on this machine holds it.
    block = free_host_base([3], HTTP_PORT, bases=(0, *range(160, 190, 3)))
    spec = ClusterSpec(seed=3, raft_multiplier=1, http_port=HTTP_PORT, acl=_acl(), host_block=block)
    cluster, _events = start_live_cluster_parts(spec)
    async with trio.open_nursery() as nursery:
        await nursery.start(cluster.net.run)
        await nursery.start(cluster.run)
        leader = await cluster.wait_for_leader(within=15)
        with trio.fail_after(5):
            while not leader.consistent_ready:
                await trio.sleep(0.02)
        followers = [n for n in cluster.servers.values() if n is not leader]
        f1, f2 = followers
        c = client(f1.spec.host)  # every call through a follower: forwarded
        lc = client(leader.spec.host)

        # ---- raft configuration, status
        conf = await call(c.operator.raft_config)
        assert sorted(s["Address"] for s in conf["Servers"]) == [
            f"127.0.{block}.1:8300",
            f"127.0.{block}.2:8300",
            f"127.0.{block}.3:8300",
        ]
        assert [s["Node"] for s in conf["Servers"] if s["Leader"]] == [leader.name]
        assert conf["Index"] == leader.core.latest_configuration_index
        assert all(s["Voter"] and s["ProtocolVersion"] == "3" for s in conf["Servers"])
        assert await call(c.status.leader) == leader.address
        assert sorted(await call(c.status.peers)) == sorted(
            n.address for n in cluster.servers.values()
        )

        # ---- tokens
        with pytest.raises(consul.ACLPermissionDenied, match="^ACL not found$"):
            await call(client(f1.spec.host, "bogus").kv.get, "app/a")
        with pytest.raises(consul.ACLPermissionDenied) as denied:
            await call(client(f1.spec.host, None).operator.raft_remove_peer, "10.0.0.9:8300")
        assert str(denied.value) == (
            "Permission denied: anonymous token lacks permission 'operator:write'. The anonymous "
            "token is used implicitly when a request does not specify a token."
        )
        with pytest.raises(consul.ACLPermissionDenied) as denied:
            await call(client(f1.spec.host, None).kv.get, "app/a")
        assert "anonymous token lacks permission 'key:read'" in str(denied.value)
        reader = client(f1.spec.host, "reader")
        with pytest.raises(consul.ACLPermissionDenied) as denied:
            await call(reader.operator.raft_remove_peer, "10.0.0.9:8300")
        assert str(denied.value) == (
            f"Permission denied: token with AccessorID '{READER}' lacks permission 'operator:write'"
        )

        # ---- KV
        assert await call(reader.kv.put, "app/a", "1") is True
        with pytest.raises(consul.ACLPermissionDenied):
            await call(reader.kv.put, "other", "1")
        assert await call(c.kv.put, "app/b", "2", flags=7) is True
        raw_index, entry = await call(c.kv.get, "app/b")
        index = int(raw_index)  # py-consul hands the X-Consul-Index header back as a string
        assert (entry["Value"], entry["Flags"], entry["Key"]) == (b"2", 7, "app/b")
        assert index == entry["ModifyIndex"]
        assert (await call(c.kv.get, "missing"))[1] is None
        _, entries = await call(c.kv.get, "app/", recurse=True)
        assert [(e["Key"], e["Value"]) for e in entries] == [("app/a", b"1"), ("app/b", b"2")]
        _, keys = await call(c.kv.get, "", keys=True, separator="/")
        assert keys == ["app/"]
        assert await call(c.kv.put, "app/b", "3", cas=index + 1000) is False
        assert await call(c.kv.put, "app/b", "3", cas=index) is True
        assert await call(c.kv.put, "app/b", "4", cas=0) is False
        _, entry = await call(c.kv.get, "app/b", consistency="consistent")
        assert entry["Value"] == b"3"
        _, entry = await call(lc.kv.get, "app/b", consistency="stale")
        assert entry["Value"] == b"3"
        assert await call(c.kv.delete, "app/a") is True
        assert (await call(c.kv.get, "app/a"))[1] is None

        # ---- blocking query: returns when a write lands
        index = int((await call(c.kv.get, "app/b"))[0])
        result = {}

        async def watch():
            t0 = time.monotonic()
            result["got"] = await call(c.kv.get, "app/b", index=index, wait="20s")
            result["elapsed"] = time.monotonic() - t0

        async with trio.open_nursery() as watchers:
            watchers.start_soon(watch)
            await trio.sleep(0.5)
            assert "got" not in result
            assert await call(lc.kv.put, "app/b", "5") is True
        new_index, entry = result["got"]
        assert entry["Value"] == b"5" and int(new_index) > index
        assert 0.4 < result["elapsed"] < 5
        # ... and at the end of wait with the same index
        t0 = time.monotonic()
        same, _ = await call(c.kv.get, "app/b", index=new_index, wait="1s")
        assert same == new_index
        assert 1.0 <= time.monotonic() - t0 < 2.5

        # ---- remove-peer errors and success, transfer-leader
        with pytest.raises(consul.ConsulException, match="was not found in the Raft configuration"):
            await call(c.operator.raft_remove_peer, "10.0.0.9:8300")
        with pytest.raises(consul.ConsulException, match=r'id "nope" was not found'):
            await call(c.operator.raft_remove_peer, peer_id="nope")
        with pytest.raises(consul.ConsulException, match="Could not find address for server id x"):
            await call(c.operator.raft_transfer_leader, "x")
        assert await call(c.operator.raft_transfer_leader, f1.server_id) is True
        new = await cluster.wait_for_leader(exclude={leader.name}, within=10)
        assert new is f1
        cluster.kill(f2.name)
        ops = client(leader.spec.host, "ops")  # now a follower: forwarded to f1
        assert await call(ops.operator.raft_remove_peer, f2.address) is True
        conf = await call(ops.operator.raft_config)
        assert sorted(s["Address"] for s in conf["Servers"]) == sorted([leader.address, f1.address])
        with trio.fail_after(5):
            while len(leader.core.latest_configuration.servers) != 2:
                await trio.sleep(0.02)
        stale = await trio.to_thread.run_sync(
            lambda: httpx.get(
                f"http://{leader.spec.http_address}/v1/operator/raft/configuration?stale&token=root"
            ).json()
        )
        assert len(stale["Servers"]) == 2
        nursery.cancel_scope.cancel()


def _consim(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "consim.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        **kw,
    )


def test_consim_up_ctl_and_sigterm(tmp_path):
    from live_hosts import free_host_base

    port = 18561
    block = free_host_base([3], port, bases=(0, *range(190, 220, 3)))
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "consim.cli",
            "up",
            "--http-port",
            str(port),
            "--seed",
            "5",
            "--raft-multiplier",
            "1",
            "--host-block",
            str(block),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        c = consul.Consul(host=f"127.0.{block}.2", port=port)
        deadline = time.monotonic() + 30
        leader = ""
        while time.monotonic() < deadline:
            try:
                leader = c.status.leader()
                if leader:
                    break
            except Exception:
                pass
            time.sleep(0.1)
        assert leader.endswith(":8300"), "no leader within 30s"
        assert len(c.operator.raft_config()["Servers"]) == 3
        assert c.kv.put("k", "v") is True
        # consim ctl finds the cluster through the control file
        status = _consim("ctl", "status", "--json", env=env)
        assert status.returncode == 0, status.stderr
        rows = json.loads(status.stdout)
        assert sorted(r["name"] for r in rows) == ["dc1-s1", "dc1-s2", "dc1-s3"]
        assert [r["address"] for r in rows if r["state"] == "leader"] == [leader]
        victim = next(r["name"] for r in rows if r["address"] == leader)
        killed = _consim("ctl", "kill", victim, env=env)
        assert killed.returncode == 0, killed.stderr
        asker = next(r for r in rows if r["address"] != leader)["address"].split(":")[0]
        c2 = consul.Consul(host=asker, port=port)
        deadline = time.monotonic() + 20
        new = ""
        while time.monotonic() < deadline:
            new = c2.status.leader()
            if new and new != leader:
                break
            time.sleep(0.1)
        assert new and new != leader
        assert c2.kv.get("k")[1]["Value"] == b"v"
        bad = _consim("ctl", "kill", "nosuch", env=env)
        assert bad.returncode == 1 and "no server named 'nosuch'" in bad.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise AssertionError("consim up did not stop on SIGTERM:\n" + out[-3000:]) from None
    assert proc.returncode == 0, out[-3000:]
    assert "==> Caught signal, shutting down" in out
    assert "==> consim up stopped" in out
    assert not (tmp_path / "consim" / "up.json").exists()
