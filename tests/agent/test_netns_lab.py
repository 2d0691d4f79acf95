"""The namespace lab (``scripts/netns-lab.sh``): each server a ``consim agent`` in a network
namespace of its own, partitions as nftables drops in the kernel. Needs root, iproute2 and
nftables: skipped with the reason where they are missing, failing when ``CI`` is set.

The default test partitions the leader away and heals (about 15 s). The outage guide followed
step by step (one server lost and replaced, quorum lost and recovered with peers.json in each
survivor's data dir, remove-peer of a dead server) runs with ``CONSIM_NETNS_LAB_LONG=1`` (about
a minute on an idle machine: autopilot promotes a replacement after ServerStabilizationTime).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.agent.helpers import netns_skip_reason, until

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "netns-lab.sh"


class Lab:
    def __init__(self, tmp: Path) -> None:
        tag = os.getpid() % 1000
        self.env = {
            **os.environ,
            "LAB": f"ct{tag}",
            "LAB_NET": f"10.{180 + tag % 60}.{tag // 60}",
            "LAB_DIR": str(tmp / "lab"),
            "CONSIM": f"{sys.executable} -m consim.cli",
            "PYTHONPATH": str(ROOT),
        }
        self.net = self.env["LAB_NET"]
        self.dir = Path(self.env["LAB_DIR"])

    def run(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(
            ["bash", str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if check and out.returncode != 0:
            raise AssertionError(f"netns-lab.sh {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout

    def ip(self, name: str) -> str:
        return f"{self.net}.{name[1:]}"

    def get(self, name: str, path: str) -> object:
        r = httpx.get(f"http://{self.ip(name)}:8500{path}", timeout=3)
        r.raise_for_status()
        return r.json() if r.content else None

    def leader_seen_by(self, name: str) -> str:
        return str(self.get(name, "/v1/status/leader") or "")

    def consim(self, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
        """A consim (consul) command against server ``name``'s HTTP API, from the host."""
        return subprocess.run(
            [sys.executable, "-m", "consim.cli", *argv, f"-http-addr={self.ip(name)}:8500"],
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[Lab]:
    reason = netns_skip_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the namespace lab must run in CI: {reason}")
        pytest.skip(reason)
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.run("down", check=False)


def _common_leader(lab: Lab, names: list[str], not_: str = "") -> str:
    def agree() -> str | None:
        seen = {lab.leader_seen_by(n) for n in names}
        return seen.pop() if len(seen) == 1 and not seen & {"", not_} else None

    return until(f"{names} agree on a leader", agree, within=40)


def test_partition_is_a_kernel_drop_and_the_majority_elects(lab: Lab) -> None:
    lab.run("up", "3")
    servers = ["s1", "s2", "s3"]
    leader_addr = _common_leader(lab, servers)
    leader = next(n for n in servers if leader_addr == f"{lab.ip(n)}:8300")
    others = [n for n in servers if n != leader]
    lab.run("partition", leader, ",".join(others))
    # The rules are the kernel's: the namespace's nftables table drops the other servers.
    rules = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            f"{lab.env['LAB']}-{leader}",
            "nft",
            "list",
            "table",
            "inet",
            "consim",
        ],
        capture_output=True,
        text=True,
    ).stdout
    assert all(f"ip saddr {lab.ip(o)} drop" in rules for o in others), rules
    new = _common_leader(lab, others, not_=leader_addr)
    lab.run("heal")
    assert _common_leader(lab, servers) == new  # the old leader rejoins as a follower


@pytest.mark.skipif(
    not os.environ.get("CONSIM_NETNS_LAB_LONG"),
    reason="the outage guide walk: set CONSIM_NETNS_LAB_LONG=1",
)
def test_outage_guide_in_namespaces(lab: Lab) -> None:
    servers = [f"s{k}" for k in range(1, 6)]
    lab.run("up", "5")
    _common_leader(lab, servers)
    r = httpx.put(f"http://{lab.ip('s1')}:8500/v1/kv/guide", content=b"kept", timeout=10)
    assert r.json() is True

    # 1. One server fails for good: remove-peer while the leader exists, then replace it with a
    #    fresh server (an empty data dir, a new node id) at the same address.
    lab.run("kill", "s5")
    out = lab.consim("s1", "operator", "raft", "remove-peer", f"-address={lab.ip('s5')}:8300")
    assert (
        out.returncode == 0 and out.stdout == f'Removed peer with address "{lab.ip("s5")}:8300"\n'
    )
    # Before its replacement starts, gossip has marked the dead one failed (minutes in real life;
    # a few seconds here): a new member of that name is then taken with its new node id.
    until(
        "s5 marked failed",
        lambda: {m["Name"]: m["Status"] for m in lab.get("s1", "/v1/agent/members")}["s5"] == 4,  # type: ignore[union-attr, index]
    )
    lab.run("wipe", "s5")
    lab.run("start", "s5")

    def five_voters() -> bool:
        config = lab.get("s1", "/v1/operator/raft/configuration")
        return len([s for s in config["Servers"] if s["Voter"]]) == 5  # type: ignore[index]

    until("the replacement is promoted to voter", five_voters, within=60)

    # 2. Quorum lost: three of five die. Stop the survivors, write the same peers.json into each
    #    survivor's data dir, start them: they elect a leader between them, data intact.
    for name in ("s3", "s4", "s5"):
        lab.run("kill", name)
    survivors = ["s1", "s2"]
    for name in survivors:
        lab.run("stop", name)
    until(
        "the survivors stopped", lambda: not any((lab.dir / f"{n}.pid").exists() for n in survivors)
    )
    peers = [
        {
            "id": (lab.dir / n / "node-id").read_text().strip(),
            "address": f"{lab.ip(n)}:8300",
            "non_voter": False,
        }
        for n in survivors
    ]
    for name in survivors:
        (lab.dir / name / "raft" / "peers.json").write_text(json.dumps(peers))
        lab.run("start", name)
    _common_leader(lab, survivors)
    for name in survivors:
        log = (lab.dir / f"{name}.log").read_text()
        assert "found peers.json file, recovering Raft configuration..." in log
        assert not (lab.dir / name / "raft" / "peers.json").exists()
    config = lab.get("s1", "/v1/operator/raft/configuration")
    assert sorted(s["Address"] for s in config["Servers"]) == sorted(p["address"] for p in peers)  # type: ignore[index]
    assert lab.get("s2", "/v1/kv/guide?stale")[0]["Value"] == "a2VwdA=="  # type: ignore[index]
