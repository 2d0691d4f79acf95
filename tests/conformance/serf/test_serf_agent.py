"""Acceptance against the real thing: Debian's ``serf`` agent (serf 0.9.4 on memberlist 0.2.2)
in the same LAN pool as a live consim cluster.

The agent joins a consim server; each side must see the other with the right status and tags;
the keyring queries of one side change the other's keys; events, queries, failures and leaves
cross in both directions. Skipped (with the reason) where the ``serf`` binary is missing, failed
in CI (``CI=true``), where ``.ci/run`` installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from consim.cluster import Cluster
from tests.runtime.helpers import live_cluster, live_spec

SERF = shutil.which("serf")
if SERF is None:
    if os.environ.get("CI"):  # as the chromium tests: in CI a missing agent fails, never skips
        raise RuntimeError("the serf binary is required in CI (apt-get install serf)")
    pytest.skip("the `serf` agent is not installed (apt-get install serf)", allow_module_level=True)

KEY = "AAECAwQFBgcICQoLDA0ODw=="
BAD_SIZE = "ZWFzdGVyIGVnZyB0d28gdGhyZWU="  # 20 bytes: no AES key size
GOOD2 = "MDEyMzQ1Njc4OWFiY2RlZg=="  # 16 bytes
GOOD3 = "ZmVkY2JhOTg3NjU0MzIxMA=="  # 16 bytes
OTHER = "T1RIRVJLRVlPVEhFUktFWQ=="  # 16 bytes, foreign to the pool


def _base() -> int:
    from live_hosts import free_host_base

    return free_host_base([1], 28631, bases=range(150, 200, 3))


class Agent:
    """One ``serf agent`` process on 127.0.<block>.<k>:7946, driven by its CLI over RPC."""

    def __init__(self, block: int, k: int, name: str, key: str, log: Path) -> None:
        self.name = name
        self.host = f"127.0.{block}.{k}"
        self.rpc = f"-rpc-addr={self.host}:7373"
        self.log = log
        self.proc = subprocess.Popen(
            [
                SERF,
                "agent",
                "-node",
                name,
                f"-bind={self.host}:7946",
                self.rpc,
                "-encrypt",
                key,
                "-log-level=debug",
            ],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

    async def cli(self, *args: str, timeout: float = 15.0) -> tuple[int, str]:
        with trio.fail_after(timeout):
            done = await trio.run_process(
                [SERF, args[0], self.rpc, *args[1:]],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        return done.returncode, (done.stdout + done.stderr).decode()

    async def members(self) -> dict[str, dict]:
        code, out = await self.cli("members", "-format=json")
        if code != 0:
            return {}
        return {m["name"]: m for m in json.loads(out)["members"]}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    with trio.move_on_after(within):
        while not await check():
            await trio.sleep(0.2)
        return
    raise AssertionError(f"not within {within} s: {what}")


def _lan_keys(cluster: Cluster, name: str) -> list[str]:
    pool = cluster.node(name).lan_pool
    assert pool is not None and pool.core is not None and pool.core.keyring is not None
    return pool.core.keyring.keys_b64()


async def test_a_serf_agent_and_consim_servers_share_one_pool(tmp_path: Path) -> None:
    block = _base()
    spec = live_spec(block, http_port=28631, seed=61, encrypt=KEY, data_dir=tmp_path / "data")
    async with live_cluster(spec) as cluster:
        await cluster.wait_for_leader(within=15)
        servers = sorted(cluster.servers)
        agent = Agent(block, 9, "serf-a", KEY, tmp_path / "serf-a.log")
        try:
            await trio.sleep(0.5)
            first = cluster.node(servers[0]).spec.serf_lan_address
            code, out = await agent.cli("join", first)
            assert code == 0 and "Successfully joined cluster by contacting 1 nodes" in out, out

            # serf lists every consim server alive, with Consul's server tags.
            async def all_alive() -> bool:
                members = await agent.members()
                return all(members.get(n, {}).get("status") == "alive" for n in servers)

            await until(all_alive, 10, "serf sees every consim server alive")
            members = await agent.members()
            for name in servers:
                node = cluster.node(name)
                tags = members[name]["tags"]
                assert members[name]["addr"] == node.spec.serf_lan_address
                assert tags["role"] == "consul" and tags["dc"] == "dc1", tags
                assert tags["id"] == node.node_id and tags["port"] == "8300"
                assert (tags["vsn"], tags["vsn_min"], tags["vsn_max"]) == ("2", "2", "3")
                assert tags["raft_vsn"] == "3" and tags["build"].split(":")[0].count(".") == 2
                assert members[name]["protocol"]["version"] == 4  # Consul's serf protocol

            # consim lists the agent, on every server (the others learn it by gossip).
            await until(
                _sync(lambda: all(_consim_status(cluster, n, "serf-a") == 1 for n in servers)),
                10,
                "every consim server sees the agent alive",
            )
            for name in servers:
                _, _, raw = await cluster.http(name, "GET", "/v1/agent/members")
                listed = {m["Name"]: m for m in json.loads(raw)}
                assert listed["serf-a"]["Status"] == 1
                assert listed["serf-a"]["Addr"] == agent.host and listed["serf-a"]["Port"] == 7946

            # serf's keyring queries reach consim and change its keyrings (and their files).
            code, out = await agent.cli("keys", "-install", GOOD2)
            assert code == 0 and "Successfully installed key!" in out, out
            assert all(GOOD2 in _lan_keys(cluster, n) for n in servers)
            code, out = await agent.cli("keys", "-use", GOOD2)
            assert code == 0, out
            assert all(_lan_keys(cluster, n)[0] == GOOD2 for n in servers)
            code, out = await agent.cli("keys", "-remove", KEY)
            assert code == 0, out
            assert all(_lan_keys(cluster, n) == [GOOD2] for n in servers)
            stored = tmp_path / "data" / servers[0] / "serf" / "local.keyring"
            assert json.loads(stored.read_text()) == [GOOD2]
            code, out = await agent.cli("keys", "-list")
            assert code == 0 and f"{GOOD2}  [4/4]" in out, out
            code, out = await agent.cli("keys", "-install", BAD_SIZE)
            assert code != 0 and "4/4 nodes reported failure" in out, out

            # consim's keyring API counts the agent and rotates its key too.
            status, _, raw = await cluster.http(servers[1], "GET", "/v1/operator/keyring")
            assert status == 200, raw
            lan = [e for e in json.loads(raw) if not e["WAN"]]
            assert lan[0]["NumNodes"] == 4 and lan[0]["Keys"] == {GOOD2: 4}, lan
            body = json.dumps({"Key": GOOD3}).encode()
            status, _, raw = await cluster.http(
                servers[1], "POST", "/v1/operator/keyring", body=body
            )
            assert status == 200, raw
            code, out = await agent.cli("keys", "-list")
            assert f"{GOOD3}  [4/4]" in out, out

            # A user event and a query from serf reach the consim servers.
            code, out = await agent.cli("event", "consul:event:deploy", "v1")
            assert code == 0, out

            def handled() -> bool:
                got = {e.node for e in cluster.events.events if e.kind == "user_event"}
                return set(servers) <= got

            await until(_sync(handled), 10, "the user event on every consim server")
            code, out = await agent.cli("query", "-timeout=3s", "consim-check")
            assert code == 0, out
            for name in servers:
                assert f"Ack from '{name}'" in out, out
            assert "Total Responses: 0" in out  # a Consul server answers no user query

            # A consim server killed is marked failed by serf; force-leave makes it left.
            victim = servers[2]
            cluster.kill(victim)

            async def status_of(name: str, want: str) -> bool:
                return (await agent.members()).get(name, {}).get("status") == want

            # memberlist 0.2.2 with 4 members: suspicion starts at 6 x 4 s and shrinks to 4 s with
            # two confirmations (the other consim server and the agent both probe it).
            bound = 24 + 2 * 4  # the maximum suspicion plus a probe round of the survivors
            await until(lambda: status_of(victim, "failed"), bound, f"serf marks {victim} failed")
            code, out = await agent.cli("force-leave", victim)
            assert code == 0, out
            await until(lambda: status_of(victim, "left"), 10, f"{victim} left after force-leave")
            await until(
                _sync(lambda: _consim_status(cluster, servers[0], victim) == 3),
                10,
                "consim sees the forced leave",
            )

            # A consim server leaving gracefully (leave intent, then dead from itself) is left.
            await cluster.stop(servers[1])
            await until(lambda: status_of(servers[1], "left"), 10, f"serf marks {servers[1]} left")

            # The agent leaving gracefully is left for consim.
            code, out = await agent.cli("leave")
            assert code == 0, out
            await until(
                _sync(lambda: _consim_status(cluster, servers[0], "serf-a") == 3),
                10,
                "consim marks the serf agent left",
            )
        finally:
            agent.stop()


async def test_an_agent_with_a_foreign_key_is_refused_and_counted(tmp_path: Path) -> None:
    block = _base()
    spec = live_spec(block, http_port=28634, seed=62, encrypt=KEY)
    async with live_cluster(spec) as cluster:
        await cluster.wait_for_leader(within=15)
        target = cluster.node(sorted(cluster.servers)[0])
        agent = Agent(block, 9, "serf-x", OTHER, tmp_path / "serf-x.log")
        try:
            await trio.sleep(0.5)
            pool = target.lan_pool
            assert pool is not None and pool.core is not None
            before = pool.core.counters["dropped_decrypt"]
            code, out = await agent.cli("join", target.spec.serf_lan_address)
            assert code != 0 and "Error joining the cluster" in out, out
            assert pool.core.counters["dropped_decrypt"] > before
            assert "serf-x" not in {m.name for m in pool.members()}
            assert set(await agent.members()) == {"serf-x"}
        finally:
            agent.stop()


def _sync(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return check()

    return run


def _consim_status(cluster: Cluster, observer: str, name: str) -> int | None:
    for m in cluster.node(observer).lan_pool.members():  # type: ignore[union-attr]
        if m.name == name:
            return m.status
    return None
