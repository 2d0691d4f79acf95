"""``consim up --processes``: one ``consim agent`` process per server, sharing one cluster in
order. The agents form one configuration by -bootstrap-expect; ``consim ctl`` kill is a real
SIGKILL, restart starts the process again from its data dir, pause is SIGSTOP (the kernel shows
the process stopped), partitions reach every agent's fault channel; SIGINT shuts an agent down
without leaving (Consul's server default), ``ctl stop`` is a graceful leave; with the quorum lost,
peers.json in the survivor's data dir recovers it, as Consul's outage guide says.

(``test_agent_processes.py`` does the same on hand-started agents with ``consim leave``; it runs
with ``CONSIM_PROCESS_TESTS=1``, outside the default suite's time budget.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_hosts import free_host_base

from tests.agent.helpers import until

HTTP_PORT = 28610


class Up:
    def __init__(self, tmp: Path) -> None:
        self.data = tmp / "data"
        self.block = free_host_base([3], HTTP_PORT, range(230, 254, 2))
        self.control = f"127.0.0.1:{HTTP_PORT + 99}"
        self.env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp / "run")}
        self.log = tmp / "up.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "consim.cli", "up", "--processes", "--servers", "3"]
                + ["--raft-multiplier", "1", "--host-block", str(self.block)]
                + ["--http-port", str(HTTP_PORT), "--data-dir", str(self.data)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def ctl(self, action: str, **body: Any) -> list[dict[str, Any]]:
        """The control API ``consim ctl`` talks to (one real ``consim ctl`` run is tested below:
        a process per poll would be slow)."""
        if action == "status":
            r = httpx.get(f"http://{self.control}/ctl/status", timeout=30)
        else:
            r = httpx.post(f"http://{self.control}/ctl/{action}", json=body, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    def http(self, name: str) -> str:
        return f"127.0.{self.block}.{name[-1]}:{HTTP_PORT}"

    def get(self, name: str, path: str) -> Any:
        r = httpx.get(f"http://{self.http(name)}{path}", timeout=10)
        r.raise_for_status()
        return r.json() if r.content else None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def state(self, name: str) -> dict[str, Any]:
        return next(s for s in self.ctl("status") if s["name"] == name)

    def leader(self, exclude: str = "") -> str:
        def find() -> str | None:
            for s in self.ctl("status"):
                if s["state"] == "leader" and s["name"] != exclude and not s.get("paused"):
                    return str(s["name"])
            return None

        return until("a leader", find, within=40)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    cluster = Up(tmp_path_factory.mktemp("up"))
    yield cluster
    cluster.proc.send_signal(signal.SIGINT)
    try:
        cluster.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        cluster.proc.kill()


def _proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


NAMES = ["dc1-s1", "dc1-s2", "dc1-s3"]


def test_every_server_is_its_own_process_in_one_configuration(up: Up) -> None:
    leader = up.leader()
    status = up.ctl("status")
    pids = {s["name"]: s["pid"] for s in status}
    assert len(set(pids.values())) == 3 and up.proc.pid not in pids.values()
    for pid in pids.values():
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"agent" in cmdline and b"-bootstrap-expect=3" in cmdline
    assert leader in pids
    ids = sorted((up.data / n / "node-id").read_text() for n in NAMES)

    def same_everywhere() -> bool:
        views = [up.get(n, "/v1/operator/raft/configuration?stale") for n in NAMES]
        return all(sorted(s["ID"] for s in v["Servers"]) == ids for v in views)

    until("every server holds the same three voters", same_everywhere)
    # Autopilot's stabilization time down from 10 s, so a restarted server is a voter again soon.
    r = httpx.put(
        f"http://{up.http(leader)}/v1/operator/autopilot/configuration",
        json={"CleanupDeadServers": True, "ServerStabilizationTime": "1s"},
        timeout=10,
    )
    assert r.json() is True
    # Bootstrapped once, with one configuration at index 1 (bootstrap_expect as Consul does it).
    assert {up.get(n, "/v1/operator/raft/configuration?stale")["Index"] for n in NAMES} == {1}
    assert "Found expected number of peers, attempting bootstrap" in up.output()
    for name in NAMES:  # Consul's data dir layout
        for f in ("node-id", "raft/raft.db", "raft/peers.info"):
            assert (up.data / name / f).exists(), f"{name}: {f}"


def test_kill_is_sigkill_and_restart_resumes_from_the_data_dir(up: Up) -> None:
    leader = up.leader()
    pid = up.state(leader)["pid"]
    out = subprocess.run(
        [sys.executable, "-m", "consim.cli", "ctl", "kill", "leader", "--control", up.control],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "down" in out.stdout, out.stderr
    assert not Path(f"/proc/{pid}").exists() or _proc_state(pid) == "Z"
    assert up.state(leader)["state"] == "down"
    new = up.leader(exclude=leader)
    assert new != leader
    up.ctl("restart", node="last-killed")
    until("the restarted server follows", lambda: up.state(leader)["state"] == "follower")
    assert up.state(leader)["pid"] != pid

    def three_voters() -> bool:
        servers = up.get(new, "/v1/operator/raft/configuration")["Servers"]
        return sum(s["Voter"] for s in servers) == 3

    # Autopilot may have removed it while it was dead: it comes back as a non-voter and is
    # promoted after ServerStabilizationTime (1 s here, set by the first test), as in Consul.
    until("three voters again", three_voters)


def _voter_follower(up: Up, leader: str) -> str:
    """A follower that is a voter (a server restarted after autopilot removed it comes back as a
    non-voter for ServerStabilizationTime, as in Consul)."""
    servers = up.get(leader, "/v1/operator/raft/configuration")["Servers"]
    voters = {s["Node"] for s in servers if s["Voter"] and not s["Leader"]}
    return next(n for n in NAMES if n in voters and up.state(n)["state"] == "follower")


def test_pause_is_sigstop_and_partition_reaches_every_agent(up: Up) -> None:
    leader = up.leader()
    follower = _voter_follower(up, leader)
    up.ctl("pause", node=follower)
    pid = up.state(follower)["pid"]
    assert _proc_state(pid) == "T"  # stopped by SIGSTOP
    up.ctl("resume", node=follower)
    assert _proc_state(pid) != "T"
    # Cut the follower off: the leader's heartbeats stop reaching it (its fault channel and the
    # leader's both hold the rule), the leader keeps its quorum with the third server.
    up.ctl("partition", groups=[[follower], ["others"]])

    def cut_off() -> bool:
        contact = up.state(follower).get("last_contact")
        return contact is None or contact > 2.0

    until("the follower stops hearing the leader", cut_off)
    assert up.state(leader)["state"] == "leader"
    up.ctl("heal")

    def back() -> bool:
        s = up.state(follower)
        return s["state"] == "follower" and (s.get("last_contact") or 9) < 1.0

    until("the follower hears the leader again", back)


def test_sigint_shuts_down_without_leaving(up: Up) -> None:
    leader = up.leader()
    assert httpx.put(f"http://{up.http(leader)}/v1/kv/k", content=b"v", timeout=10).json()
    follower = _voter_follower(up, leader)
    node_id = (up.data / follower / "node-id").read_text()
    os.kill(up.state(follower)["pid"], signal.SIGINT)
    until("it exits", lambda: up.state(follower)["state"] == "down")
    assert f"Graceful shutdown disabled. Exiting: node={follower}" in up.output()
    # It did not leave: gossip sees it fail ("failed", 4), never "left" (3). (Autopilot may
    # then remove the failed server from Raft, as Consul's CleanupDeadServers does.)
    seen: list[int] = []

    def failed() -> bool:
        members = {m["Name"]: m["Status"] for m in up.get(leader, "/v1/agent/members")}
        seen.append(members[follower])
        return members[follower] == 4

    until("the others see it failed", failed)
    assert 3 not in seen
    assert node_id == (up.data / follower / "node-id").read_text()
    up.ctl("restart", node=follower)
    value = until("it resumes from its data dir", lambda: up.get(follower, "/v1/kv/k?stale"))
    assert value[0]["Value"] == "dg=="


def test_stop_is_a_graceful_leave_then_peers_json_recovers_a_lost_quorum(up: Up) -> None:
    leader = up.leader()
    leaving = next(n for n in NAMES if n != leader)
    up.ctl("stop", node=leaving)  # PUT /v1/agent/leave
    assert f"Graceful exit completed: node={leaving}" in up.output()
    # It waited until the leader had taken it out of Raft (Consul's leave drain), not in vain.
    assert f"failed to leave raft configuration gracefully, timeout: node={leaving}" not in (
        up.output()
    )
    until(
        "two servers left",
        lambda: len(up.get(leader, "/v1/operator/raft/configuration")["Servers"]) == 2,
    )
    lost, survivor = [n for n in NAMES if n != leaving]
    up.ctl("kill", node=lost)  # one voter of two: no quorum
    up.ctl("kill", node=survivor)  # the operator stops the survivor
    node_id = (up.data / survivor / "node-id").read_text()
    address = f"127.0.{up.block}.{survivor[-1]}:8300"
    peers = [{"id": node_id, "address": address, "non_voter": False}]
    (up.data / survivor / "raft" / "peers.json").write_text(json.dumps(peers))
    up.ctl("restart", node=survivor)
    until("the survivor leads alone", lambda: up.state(survivor)["state"] == "leader")
    assert "found peers.json file, recovering Raft configuration..." in up.output()
    assert not (up.data / survivor / "raft" / "peers.json").exists()
    servers = up.get(survivor, "/v1/operator/raft/configuration")["Servers"]
    assert [s["ID"] for s in servers] == [node_id]
    assert up.get(survivor, "/v1/kv/k")[0]["Value"] == "dg=="
