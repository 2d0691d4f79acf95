"""Three ``consim agent`` processes on loopback, shared by this module's tests in order: they
form one Raft configuration with -bootstrap-expect; SIGINT shuts a server down without leaving
and a restart resumes from its data dir; ``consim leave`` is a graceful leave (exit 0); with the
quorum lost, peers.json in the survivor's data dir recovers it, as Consul's outage guide says."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from live_hosts import free_host_base

from tests.agent.helpers import KEY, AgentProc, until

# The same checks as test_up_processes.py on hand-started agents (and consim leave, the HCL-less
# flag path, serf keyrings): outside the default suite's time budget.
pytestmark = pytest.mark.skipif(
    not os.environ.get("CONSIM_PROCESS_TESTS"), reason="set CONSIM_PROCESS_TESTS=1 (about 40 s)"
)


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AgentProc]]:
    root = tmp_path_factory.mktemp("agents")
    block = free_host_base([3], 8500, range(200, 250, 3))
    hosts = [f"127.0.{block}.{k}" for k in (1, 2, 3)]
    join = [f"-retry-join={h}" for h in hosts[:2]]
    procs = [
        AgentProc(f"a{k}", host, root, ["-bootstrap-expect=3", f"-encrypt={KEY}", *join])
        for k, host in enumerate(hosts, 1)
    ]
    for p in procs:
        p.start()
    yield procs
    for p in procs:
        p.stop()


def _configuration(p: AgentProc) -> dict:
    return p.get("/v1/operator/raft/configuration?stale")


def _leader(agents: list[AgentProc]) -> AgentProc:
    def find() -> AgentProc | None:
        for p in agents:
            if p.proc is not None and p.proc.poll() is None:
                address = p.get("/v1/status/leader")
                if address:
                    return next(a for a in agents if a.rpc == address)
        return None

    return until("a leader", find)


def test_bootstrap_expect_forms_one_configuration(agents: list[AgentProc]) -> None:
    _leader(agents)
    ids = sorted(p.node_id() for p in agents)

    def same_everywhere() -> bool:
        views = [_configuration(p) for p in agents]
        return all(sorted(s["ID"] for s in v["Servers"]) == ids for v in views) and all(
            all(s["Voter"] for s in v["Servers"]) for v in views
        )

    until("every server holds the three voters", same_everywhere)
    # One configuration, written once at index 1 (every server bootstrapped the same one).
    assert {_configuration(p)["Index"] for p in agents} == {1}
    found = [
        p for p in agents if "Found expected number of peers, attempting bootstrap" in p.output()
    ]
    assert found, "no server logged the bootstrap"
    # Consul's data dir layout, at -data-dir itself.
    for p in agents:
        for name in ("node-id", "raft/raft.db", "raft/peers.info", "serf/local.keyring"):
            assert (p.data_dir / name).exists(), f"{p.name}: {name} missing"
        assert json.loads((p.data_dir / "serf" / "local.keyring").read_text()) == [KEY]


def test_sigint_does_not_leave_and_restart_resumes(agents: list[AgentProc]) -> None:
    leader = _leader(agents)
    r = httpx.put(f"http://{leader.http}/v1/kv/outage", content=b"before", timeout=10)
    assert r.json() is True
    follower = next(p for p in agents if p is not leader)
    node_id = follower.node_id()
    follower.signal(signal.SIGINT)
    assert follower.wait() == 1  # Consul exits 1 when it does not leave
    assert "Graceful shutdown disabled. Exiting" in follower.output()
    # It did not leave: gossip sees it fail (4), never "left" (3).
    seen: list[int] = []

    def failed() -> bool:
        members = {m["Name"]: m["Status"] for m in leader.get("/v1/agent/members")}
        seen.append(members[follower.name])
        return members[follower.name] == 4

    until("the others see it failed", failed)
    assert 3 not in seen
    follower.start()
    assert (
        until(
            "the restarted server reads the key",
            lambda: follower.get("/v1/kv/outage?stale"),
        )[0]["Value"]
        == "YmVmb3Jl"
    )
    assert follower.node_id() == node_id  # resumed as the same node
    assert "Existing Raft peers" not in follower.output().split("consul server starting")[-1]


def test_consim_leave_is_a_graceful_exit(agents: list[AgentProc]) -> None:
    leader = _leader(agents)
    leaving = next(p for p in agents if p is not leader)
    out = subprocess.run(
        [sys.executable, "-m", "consim.cli", "leave", f"-http-addr={leaving.http}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, "Graceful leave complete\n", "")
    assert leaving.wait() == 0
    remaining = [p for p in agents if p is not leaving]

    def left() -> bool:
        members = {m["Name"]: m["Status"] for m in leader.get("/v1/agent/members")}
        config = leader.get("/v1/operator/raft/configuration")["Servers"]
        return members.get(leaving.name) == 3 and len(config) == 2  # 3 = left

    until("the leaver is out of gossip and Raft", left)
    agents[:] = remaining  # the next test works on the two still running


def test_quorum_lost_recovered_with_peers_json(agents: list[AgentProc]) -> None:
    assert len(agents) == 2
    leader = _leader(agents)
    r = httpx.put(f"http://{leader.http}/v1/kv/recovered", content=b"yes", timeout=10)
    assert r.json() is True
    lost, survivor = agents[0], agents[1]
    lost.stop()  # SIGKILL: one of two voters left, no quorum
    survivor.signal(signal.SIGTERM)
    assert survivor.wait() == 1
    peers = [{"id": survivor.node_id(), "address": survivor.rpc, "non_voter": False}]
    (survivor.data_dir / "raft" / "peers.json").write_text(json.dumps(peers))
    survivor.start()
    until("the survivor leads alone", lambda: survivor.get("/v1/status/leader") == survivor.rpc)
    out = survivor.output()
    assert "found peers.json file, recovering Raft configuration..." in out
    assert "deleted peers.json file after successful recovery" in out
    assert not (survivor.data_dir / "raft" / "peers.json").exists()
    servers = survivor.get("/v1/operator/raft/configuration")["Servers"]
    assert [s["ID"] for s in servers] == [survivor.node_id()]
    assert survivor.get("/v1/kv/recovered")[0]["Value"] == "eWVz"
