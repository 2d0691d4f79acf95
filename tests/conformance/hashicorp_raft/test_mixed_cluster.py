"""A hashicorp/raft 1.1.2 node (Go, built from Debian's sources) in a live consim cluster.

It joins as a non-voter and is sent the log and a snapshot, is promoted, takes leadership in a
transfer, and the consim servers follow it and apply its entries; then it is killed and
restarted (empty, as its stores are in memory), and a consim leader is killed, and the mixed
cluster fails over each time. Pre-vote is off: 1.1.2 has none.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import trio

from consim.cluster import Cluster
from consim.raft.types import Role
from consim.server.fsm import encode_command
from tests.conformance.gobuild import build
from tests.runtime.helpers import kv_put, live_cluster, live_spec, local_value, wait_until

GO_ID = "go-raft-node"


class GoNode:
    """The Go program (node/main.go), driven over its stdin/stdout."""

    def __init__(self, binary: Path, address: str, peers: Path | None = None) -> None:
        self.binary = binary
        self.address = address
        self.peers = peers
        self.proc: trio.Process | None = None
        self._buf = b""

    async def start(self, nursery: trio.Nursery) -> None:
        self.proc = await nursery.start(
            lambda task_status: trio.run_process(
                [str(self.binary), "-id", GO_ID, "-addr", self.address, "-log-level", "error"]
                + (["-peers", str(self.peers)] if self.peers is not None else []),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                check=False,
                task_status=task_status,
            )
        )
        self._buf = b""
        assert (await self._line())["ready"]

    async def _line(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        with trio.fail_after(10):
            while b"\n" not in self._buf:
                chunk = await self.proc.stdout.receive_some(65536)
                assert chunk, "the Go node exited"
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        await self.proc.stdin.send_all(command.encode() + b"\n")
        return await self._line()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc = None


async def _status_until(go: GoNode, check: Any, within: float, what: str) -> dict[str, Any]:
    with trio.move_on_after(within):
        while True:
            status = await go.ask("status")
            if check(status):
                return status
            await trio.sleep(0.05)
    raise AssertionError(f"timed out waiting for the Go node: {what}; last status {status}")


def _consim_leader(cluster: Cluster) -> Any:
    for node in cluster.servers.values():
        if node.running and node.core is not None and node.core.role is Role.LEADER:
            return node
    return None


async def test_hashicorp_node_joins_leads_and_fails_over() -> None:
    binary = build(Path(__file__).parent / "node", "github.com/hashicorp/raft")
    from live_hosts import free_host_base

    block = free_host_base([3], 28561)
    spec = live_spec(
        block,
        http_port=28561,
        seed=61,
        pre_vote=False,
        snapshot_threshold=16,
        snapshot_interval=0.2,
        trailing_logs=4,
    )
    go = GoNode(binary, f"127.0.{block}.9:8300")
    async with live_cluster(spec) as cluster, trio.open_nursery() as nursery:
        leader = await cluster.wait_for_leader(within=15)
        for i in range(40):
            await kv_put(leader, f"before/{i}", b"v")
        core = leader.core
        assert core is not None
        await wait_until(lambda: core.first_index > 2, 10, "the leader to compact its log")

        # 1. Joins as a non-voter: it is sent a snapshot (the log it needs is compacted), then log.
        await go.start(nursery)
        await leader.change_configuration(lambda now: core.add_nonvoter(GO_ID, go.address, now))
        status = await _status_until(
            go,
            lambda s: s["restores"] >= 1 and s["commit_index"] == str(core.commit_index),
            15,
            "snapshot and log",
        )
        assert status["state"] == "Follower" and status["leader"] == leader.address
        assert {"id": GO_ID, "address": go.address, "suffrage": "Nonvoter"} in status["servers"]
        await kv_put(leader, "after-join", b"1")
        await _status_until(
            go, lambda s: s["last_index"] >= core.commit_index, 5, "entries after the join"
        )

        # 2. Promoted, then leadership is transferred to it: it wins an election.
        await leader.change_configuration(lambda now: core.add_voter(GO_ID, go.address, now))
        await leader.rpc("Operator.RaftTransferLeader", {"ID": GO_ID})
        status = await _status_until(go, lambda s: s["state"] == "Leader", 15, "leadership")
        term = int(status["term"])

        # 3. The consim servers follow it and apply what it commits.
        await wait_until(
            lambda: all(
                n.core is not None and n.core.leader_address == go.address and n.core.term == term
                for n in cluster.servers.values()
            ),
            10,
            "consim servers to follow the Go leader",
        )
        command = encode_command(
            "KVS", {"Op": "set", "DirEnt": {"Key": "from-go", "Value": b"hello", "Flags": 0}}
        )
        reply = await go.ask(f"apply {command.hex()}")
        assert "index" in reply, reply
        await wait_until(
            lambda: all(local_value(n, "from-go") == b"hello" for n in cluster.servers.values()),
            10,
            "consim servers to apply the Go leader's entry",
        )

        # 4. Kill the Go leader: the consim servers (3 of 4 voters) elect one of their own.
        go.kill()
        new = await cluster.wait_for_leader(within=20)
        await kv_put(new, "after-go-died", b"1")

        # 5. Restart it with empty stores: the consim leader sends it everything again.
        await go.start(nursery)
        ncore = new.core
        assert ncore is not None
        await _status_until(
            go,
            lambda s: s["commit_index"] == str(ncore.commit_index) and s["state"] == "Follower",
            20,
            "the restarted Go node to catch up",
        )

        # 6. Leadership to the Go node and back: hashicorp's TimeoutNow reaches a consim server.
        await new.rpc("Operator.RaftTransferLeader", {"ID": GO_ID})
        await _status_until(go, lambda s: s["state"] == "Leader", 15, "leadership again")
        assert (await go.ask("transfer")).get("ok"), "the Go leader's transfer failed"
        new = await cluster.wait_for_leader(within=15)
        await kv_put(new, "after-transfer-back", b"1")

        # 7. Kill the consim leader: two consim servers and the Go node (3 of 4) elect a leader.
        cluster.kill(new.name)
        with trio.fail_after(30):
            while True:
                status = await go.ask("status")
                consim = _consim_leader(cluster)
                if status["state"] == "Leader" or consim is not None:
                    break
                await trio.sleep(0.05)
        if consim is not None:
            await kv_put(consim, "after-failover", b"1")
        else:
            command = encode_command(
                "KVS", {"Op": "set", "DirEnt": {"Key": "after-failover", "Value": b"1"}}
            )
            assert "index" in await go.ask(f"apply {command.hex()}")
        await wait_until(
            lambda: all(
                local_value(n, "after-failover") == b"1"
                and local_value(n, "after-transfer-back") == b"1"
                for n in cluster.servers.values()
                if n.running
            ),
            10,
            "the survivors to apply a write after the failover",
        )
        await go.ask("quit")
        nursery.cancel_scope.cancel()


async def test_consim_and_hashicorp_form_one_cluster_from_one_peers_file(tmp_path: Path) -> None:
    """``consim up --raft-peers FILE`` and hashicorp's ``ReadConfigJSON`` of the same file: four
    voters, one configuration, one leader; a write on either side is applied on both."""
    binary = build(Path(__file__).parent / "node", "github.com/hashicorp/raft")
    from live_hosts import free_host_base

    from consim.server.startup import load_raft_peers

    block = free_host_base([3], 28571)
    go_address = f"127.0.{block}.9:8300"
    peers = tmp_path / "peers.json"
    entries = [
        {"id": f"consim-{k}", "address": f"127.0.{block}.{k}:8300", "non_voter": False}
        for k in (1, 2, 3)
    ] + [{"id": GO_ID, "address": go_address, "non_voter": False}]
    peers.write_text(json.dumps(entries))
    spec = live_spec(
        block, http_port=28571, seed=62, pre_vote=False, raft_peers=load_raft_peers(peers)
    )
    go = GoNode(binary, go_address, peers)
    async with live_cluster(spec) as cluster, trio.open_nursery() as nursery:
        await go.start(nursery)
        with trio.fail_after(20):
            while True:
                status = await go.ask("status")
                leader = _consim_leader(cluster)
                if leader is not None or status["state"] == "Leader":
                    break
                await trio.sleep(0.05)
        assert len(status["servers"]) == 4 and all(
            s["suffrage"] == "Voter" for s in status["servers"]
        )
        node = cluster.node("dc1-s1")
        assert node.server_id == "consim-1" and node.core is not None
        assert [s.id for s in node.core.latest_configuration.servers] == [e["id"] for e in entries]
        command = encode_command(
            "KVS", {"Op": "set", "DirEnt": {"Key": "shared", "Value": b"1", "Flags": 0}}
        )
        if leader is not None:
            await kv_put(leader, "shared", b"1")
        else:
            assert "index" in await go.ask(f"apply {command.hex()}")
        await wait_until(
            lambda: all(local_value(n, "shared") == b"1" for n in cluster.servers.values()),
            10,
            "every consim server to apply the write",
        )
        await _status_until(
            go,
            lambda s: int(s["commit_index"]) == s["last_index"] and s["applied"] >= 1,
            10,
            "apply",
        )
        await go.ask("quit")
        nursery.cancel_scope.cancel()
