"""Durable storage through the node (virtual time, SQLite under ``<data-dir>/<node>/``), and
Consul's peers.json outage recovery end to end."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from consim.cluster import Cluster
from consim.events import format_hclog
from consim.raft.recovery import RecoveryError
from consim.spec import ClusterSpec

from .helpers import describe, kv_get, kv_put, local_value, virtual, wait_converged, wait_until

FOUND = "found peers.json file, recovering Raft configuration..."
DELETED = "deleted peers.json file after successful recovery"


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = _find(sub, kind)
            if found is not None:
                return found
    return None


async def _read_on_leader(cluster: Cluster, key: str, within: float = 10) -> bytes | None:
    """A consistent read once the (new) leader is ready to serve one."""
    leader = await cluster.wait_for_leader(within=within)
    await wait_until(lambda: leader.consistent_ready, within, "the leader's barrier")
    return await kv_get(leader, key, RequireConsistent=True)


def test_kill_and_restart_keeps_kv_and_term_and_files(tmp_path: Path) -> None:
    seed = 21
    spec = ClusterSpec(seed=seed, raft_multiplier=1, data_dir=tmp_path)

    async def first(cluster: Cluster) -> dict[str, object]:
        leader = await cluster.wait_for_leader(within=10)
        for i in range(5):
            await kv_put(leader, f"d/{i}", f"v{i}".encode())
        await wait_converged(cluster, 5)
        terms = {n.name: n.core.term for n in cluster.servers.values()}  # type: ignore[union-attr]
        ids = {n.name: n.node_id for n in cluster.servers.values()}
        for name in cluster.servers:
            cluster.kill(name)
        # Let the killed incarnations finish before restarting (an immediate restart hits the
        # race covered by test_virtual_faults.py::test_kill_then_immediate_restart).
        await trio.sleep(1)
        # In-run crash and restart: the term comes back from raft.db before anything else runs.
        for name in cluster.servers:
            await cluster.restart(name)
            core = cluster.node(name).core
            assert core is not None
            assert core.term == terms[name], (
                f"seed={seed}: {name} term {core.term} != {terms[name]}"
            )
        assert await _read_on_leader(cluster, "d/4") == b"v4", f"seed={seed}: {describe(cluster)}"
        await wait_converged(cluster, 10)
        after = {n.name: n.core.term for n in cluster.servers.values()}  # type: ignore[union-attr]
        return {"terms": after, "ids": ids}

    out, log = virtual(spec, first)
    for name in ("dc1-s1", "dc1-s2", "dc1-s3"):
        node_dir = tmp_path / name
        assert (node_dir / "raft" / "raft.db").is_file(), f"seed={seed}: {name} raft.db"
        assert (node_dir / "raft" / "peers.info").is_file(), f"seed={seed}: {name} peers.info"
        assert (node_dir / "node-id").read_text().strip() == out["ids"][name], f"seed={seed}"  # type: ignore[index]
    assert len(log.of_kind("kill")) == 3 and len(log.of_kind("restart")) == 3, f"seed={seed}"

    # A new process: a fresh Cluster over the same data dir (node ids from node-id files).
    async def second(cluster: Cluster) -> None:
        for node in cluster.servers.values():
            assert node.node_id == out["ids"][node.name], f"seed={seed}: {node.name} new id"  # type: ignore[index]
            assert node.core is not None
            assert node.core.term >= out["terms"][node.name], f"seed={seed}: term went back"  # type: ignore[index]
        for i in range(5):
            assert await _read_on_leader(cluster, f"d/{i}") == f"v{i}".encode(), f"seed={seed}"
        leader = await cluster.wait_for_leader(within=10)
        await kv_put(leader, "d/new", b"n")

    virtual(spec, second)


def _peers_json(cluster: Cluster, names: list[str]) -> str:
    return json.dumps(
        [
            {"id": cluster.node(n).node_id, "address": cluster.node(n).address, "non_voter": False}
            for n in names
        ]
    )


def test_peers_json_recovery_end_to_end(tmp_path: Path) -> None:
    """5 servers lose 3 for good: the 2 survivors can only elect after peers.json recovery."""
    seed = 22
    spec = ClusterSpec(datacenters=(("dc1", 5),), seed=seed, raft_multiplier=1, data_dir=tmp_path)
    survivors = ["dc1-s1", "dc1-s2"]

    async def body(cluster: Cluster) -> None:
        leader = await cluster.wait_for_leader(within=10)
        for i in range(5):
            await kv_put(leader, f"r/{i}", b"kept")
        await wait_converged(cluster, 5)
        for name in cluster.servers:
            cluster.kill(name)  # stop all servers
        await trio.sleep(1)
        for name in survivors:
            raft_dir = tmp_path / name / "raft"
            (raft_dir / "peers.json").write_text(_peers_json(cluster, survivors))
        for name in survivors:
            await cluster.restart(name)
        leader = await cluster.wait_for_leader(within=10)
        assert leader.name in survivors, f"seed={seed}"
        assert leader.core is not None
        ids = {s.id for s in leader.core.configuration.servers}
        assert ids == {cluster.node(n).node_id for n in survivors}, f"seed={seed}: {ids}"
        for name in survivors:
            assert not (tmp_path / name / "raft" / "peers.json").exists(), f"seed={seed}: {name}"
        # The data survived the recovery, and the 2-server configuration commits new writes.
        await kv_put(leader, "r/after", b"new")
        await wait_converged(cluster, 10, survivors)
        for name in survivors:
            assert local_value(cluster.node(name), "r/4") == b"kept", f"seed={seed}: {name}"
            assert local_value(cluster.node(name), "r/after") == b"new", f"seed={seed}: {name}"

    _, log = virtual(spec, body)
    lines = [format_hclog(e) for e in log.events]
    for name in survivors:
        mine = [e for e in log.events if e.node == name]
        messages = [e.message for e in mine]
        assert FOUND in messages and DELETED in messages, f"seed={seed}: {name}"
        assert messages.index(FOUND) < messages.index(DELETED), f"seed={seed}"
    assert sum(FOUND in line for line in lines) == 2, f"seed={seed}"
    assert sum(DELETED in line for line in lines) == 2, f"seed={seed}"


def test_bad_peers_json_refuses_to_start(tmp_path: Path) -> None:
    seed = 23
    spec = ClusterSpec(seed=seed, raft_multiplier=1, data_dir=tmp_path)
    cases = [
        (
            lambda c: json.dumps(
                [
                    {"id": c.node("dc1-s1").node_id, "address": "127.0.0.1:8300"},
                    {"id": c.node("dc1-s2").node_id, "address": "127.0.0.1:8300"},
                ]
            ),
            "recovery failed to parse peers.json: "
            "found duplicate address in configuration: 127.0.0.1:8300",
        ),
        (
            lambda c: '{"id": "x"}',
            "recovery failed to parse peers.json: json: cannot unmarshal object into Go value "
            "of type []raft.configEntry",
        ),
    ]

    async def body(cluster: Cluster) -> list[str]:
        await cluster.wait_for_leader(within=10)
        await wait_converged(cluster, 5)
        errors = []
        for make, _expected in cases:
            if cluster.node("dc1-s1").running:
                cluster.kill("dc1-s1")
                await trio.sleep(1)
            path = tmp_path / "dc1-s1" / "raft" / "peers.json"
            path.write_text(make(cluster))
            try:
                await cluster.restart("dc1-s1")
            except BaseException as exc:  # noqa: BLE001 - inspected below
                found = _find(exc, RecoveryError)
                if found is None:
                    raise
                errors.append(str(found))
            else:
                raise AssertionError(f"seed={seed}: a bad peers.json was accepted")
            assert not cluster.node("dc1-s1").running, f"seed={seed}"
            assert path.exists(), f"seed={seed}: a refused peers.json must stay for the operator"
            # The rest of the cluster is unaffected.
            leader = await cluster.wait_for_leader(within=10)
            await kv_put(leader, "still", b"ok")
            path.unlink()
        return errors

    errors, log = virtual(spec, body)
    assert errors == [expected for _make, expected in cases], f"seed={seed}: {errors}"
    failed = log.of_kind("recovery_failed")
    assert [e.fields["error"] for e in failed] == errors, f"seed={seed}"
    assert all(e.level == "ERROR" and e.node == "dc1-s1" for e in failed)
