"""``consim leave|join|info``, ``operator autopilot get-config|set-config|state``, ``kv delete``
and ``kv get -recurse`` against a real (virtual-time) cluster: Consul's output and exit codes."""

from __future__ import annotations

import json
import re
from typing import Any

import trio

from consim.cluster import Cluster
from consim.consulcli import Output, run_command
from consim.runtime import run_virtual
from consim.spec import ClusterSpec

SPEC = ClusterSpec(datacenters=(("dc1", 3),), seed=3, raft_multiplier=1)


def _transport(cluster: Cluster, name: str) -> Any:
    async def transport(method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        return await cluster.http(name, method, path, headers=headers, body=body)

    return transport


async def _run(cluster: Cluster, name: str, *argv: str) -> Output:
    return await run_command(list(argv), _transport(cluster, name), env={})


def test_kv_get_recurse_and_delete() -> None:
    async def body(cluster: Cluster) -> list[Output]:
        leader = (await cluster.wait_for_leader()).name
        for key, value in (("app/a", "1"), ("app/b", "two"), ("other", "x")):
            assert (await _run(cluster, leader, "kv", "put", key, value)).exit_code == 0
        return [
            await _run(cluster, leader, "kv", "get", "-recurse", "app"),
            await _run(cluster, leader, "kv", "delete", "app/a"),
            await _run(cluster, leader, "kv", "get", "-recurse"),
            await _run(cluster, leader, "kv", "delete", "-recurse", "app"),
            await _run(cluster, leader, "kv", "get", "-recurse", "app"),
            await _run(cluster, leader, "kv", "delete"),
            await _run(cluster, leader, "kv", "get"),
        ]

    outs, _ = run_virtual(SPEC, body)
    assert (outs[0].exit_code, outs[0].stdout) == (0, "app/a:1\napp/b:two\n")
    assert outs[1].stdout == "Success! Deleted key: app/a\n"
    assert outs[2].stdout == "app/b:two\nother:x\n"
    assert outs[3].stdout == "Success! Deleted keys with prefix: app\n"
    assert (outs[4].exit_code, outs[4].stdout) == (0, "")
    assert (outs[5].exit_code, outs[5].stderr) == (1, "Error! Missing KEY argument\n")
    assert (outs[6].exit_code, outs[6].stderr) == (1, "Error! Missing KEY argument\n")


def test_autopilot_get_set_config_and_state() -> None:
    async def body(cluster: Cluster) -> list[Output]:
        leader = await cluster.wait_for_leader()
        follower = next(n.name for n in cluster.servers.values() if n is not leader)
        return [
            await _run(cluster, follower, "operator", "autopilot", "get-config"),
            await _run(
                cluster,
                follower,
                "operator",
                "autopilot",
                "set-config",
                "-cleanup-dead-servers=false",
                "-max-trailing-logs=100",
                "-server-stabilization-time=5s",
            ),
            await _run(cluster, leader.name, "operator", "autopilot", "get-config"),
            await _run(cluster, follower, "operator", "autopilot", "set-config", "-min-quorum=x"),
            await _run(cluster, leader.name, "operator", "autopilot", "state"),
        ]

    outs, _ = run_virtual(SPEC, body)
    assert outs[0].stdout == (
        "CleanupDeadServers = true\n"
        "LastContactThreshold = 200ms\n"
        "MaxTrailingLogs = 250\n"
        "MinQuorum = 0\n"
        "ServerStabilizationTime = 10s\n"
        'RedundancyZoneTag = ""\n'
        "DisableUpgradeMigration = false\n"
        'UpgradeVersionTag = ""\n'
    )
    assert outs[1].stdout == "Configuration updated!\n"
    assert "CleanupDeadServers = false\n" in outs[2].stdout
    assert "MaxTrailingLogs = 100\n" in outs[2].stdout
    assert "ServerStabilizationTime = 5s\n" in outs[2].stdout
    assert outs[3].exit_code == 1
    assert (
        outs[3].stderr
        == 'Failed to parse args: invalid value "x" for flag -min-quorum: parse error\n'
    )
    state = outs[4].stdout.splitlines()
    assert state[0] == "Healthy:                      true"
    assert state[1] == "Failure Tolerance:            1"
    assert (
        state[4] == "Voters:"
        and len([s for s in state if s.startswith("   ") and not s.startswith("    ")]) >= 3
    )
    assert "      Status:          leader" in state


def test_info_join_and_leave() -> None:
    async def body(cluster: Cluster) -> list[Any]:
        leader = await cluster.wait_for_leader()
        follower = next(n for n in cluster.servers.values() if n is not leader)
        info = await _run(cluster, leader.name, "info")
        joined = await _run(cluster, follower.name, "join", leader.spec.serf_lan_address)
        bad = await _run(cluster, follower.name, "join", "127.0.9.9:notaport")
        none = await _run(cluster, follower.name, "join")
        left = await _run(cluster, follower.name, "leave")
        await trio.sleep(1.0)
        config = leader.core.configuration if leader.core else None
        return [info, joined, bad, none, left, follower.running, follower.server_id, config]

    (info, joined, bad, none, left, running, fid, config), _ = run_virtual(SPEC, body)
    lines = info.stdout.splitlines()
    assert "consul:" in lines and "raft:" in lines
    assert lines.index("consul:") < lines.index("raft:")  # sections sorted
    assert "\tleader = true" in lines and "\tserver = true" in lines
    assert joined.stdout == "Successfully joined cluster by contacting 1 nodes.\n"
    assert bad.exit_code == 1
    assert bad.stderr.startswith("Error joining address '127.0.9.9:notaport': ")
    assert bad.stderr.endswith("Failed to join any nodes.\n")
    assert (none.exit_code, none.stderr) == (1, "At least one address to join must be specified.\n")
    assert (left.exit_code, left.stdout) == (0, "Graceful leave complete\n")
    assert not running
    assert config is not None and config.get(fid) is None  # out of Raft too


def test_snapshot_save_and_restore(tmp_path) -> None:
    """``consul snapshot save`` verifies the archive and names its index; ``restore`` puts the
    state back (a key deleted after the save is there again)."""
    path = str(tmp_path / "backup.snap")

    async def body(cluster: Cluster) -> list[Output]:
        leader = (await cluster.wait_for_leader()).name
        assert (await _run(cluster, leader, "kv", "put", "app/a", "1")).exit_code == 0
        outs = [await _run(cluster, leader, "snapshot", "save", path)]
        await _run(cluster, leader, "kv", "delete", "app/a")
        outs.append(await _run(cluster, leader, "snapshot", "restore", path))
        await trio.sleep(1)
        outs.append(await _run(cluster, leader, "kv", "get", "app/a"))
        outs.append(await _run(cluster, leader, "snapshot", "save"))
        outs.append(await _run(cluster, leader, "snapshot", "restore", str(tmp_path / "nope")))
        (tmp_path / "bad.snap").write_bytes(b"not a snapshot")
        outs.append(await _run(cluster, leader, "snapshot", "restore", str(tmp_path / "bad.snap")))
        return outs

    outs, _ = run_virtual(SPEC, body)
    saved, restored, value, missing, absent, bad = outs
    assert saved.exit_code == 0 and saved.stdout.startswith("Saved and verified snapshot to index ")
    assert int(saved.stdout.split()[-1]) > 0
    assert (restored.exit_code, restored.stdout) == (0, "Restored snapshot\n")
    assert (value.exit_code, value.stdout) == (0, "1\n")
    assert (missing.exit_code, missing.stderr) == (1, "Missing FILE argument\n")
    assert absent.exit_code == 1 and absent.stderr.startswith("Error opening snapshot file: ")
    assert bad.exit_code == 1 and bad.stderr.startswith("Error restoring snapshot: ")


def test_join_of_a_dead_address_fails_as_consul_and_a_live_one_counts() -> None:
    """memberlist's Join is synchronous: nothing listening at the address -> the agent's 500
    with go-multierror's text, ``consul join`` says so and exits 1; a live address is counted,
    and with several addresses only those reached are."""
    dead = "127.0.143.99"

    async def body(cluster: Cluster) -> list[Any]:
        leader = await cluster.wait_for_leader()
        follower = next(n for n in cluster.servers.values() if n is not leader)
        start = trio.current_time()
        http = await cluster.http(follower.name, "PUT", f"/v1/agent/join/{dead}")
        took = trio.current_time() - start
        failed = await _run(cluster, follower.name, "join", dead)
        both = await _run(cluster, follower.name, "join", dead, leader.spec.serf_lan_address)
        return [http, took, failed, both]

    (http, took, failed, both), log = run_virtual(SPEC, body)
    reason = f"Failed to join {dead}:8301: dial tcp {dead}:8301: connect: connection refused"
    error = f"1 error occurred:\n\t* {reason}\n\n"
    assert (http[0], http[2].decode()) == (500, error)
    assert took < 1.0  # the dial's reset, not memberlist's 10 s TCPTimeout
    assert failed.exit_code == 1 and failed.stdout == ""
    assert failed.stderr == (
        f"Error joining address '{dead}': Unexpected response code: 500 ({error})\n"
        "Failed to join any nodes.\n"
    )
    assert both.exit_code == 0
    assert both.stderr.startswith(f"Error joining address '{dead}': Unexpected response code: 500")
    assert both.stdout == "Successfully joined cluster by contacting 1 nodes.\n"
    warned = log.of_kind("join_failed")
    assert warned and all(e.message == "(LAN) couldn't join" for e in warned)
    assert log.of_kind("joined")  # "(LAN) joined" for the live one


def test_join_of_a_paused_server_times_out_after_tcp_timeout() -> None:
    async def body(cluster: Cluster) -> list[Any]:
        leader = await cluster.wait_for_leader()
        a, b = [n for n in cluster.servers.values() if n is not leader]
        cluster.pause(b.name)
        start = trio.current_time()
        out = await _run(cluster, a.name, "join", b.spec.serf_lan_address)
        return [out, trio.current_time() - start, b.spec.serf_lan_address]

    (out, took, address), _ = run_virtual(SPEC, body)
    assert out.exit_code == 1
    assert f"* Failed to join {address}: dial tcp {address}: i/o timeout" in out.stderr
    assert 10.0 <= took < 11.0


def _peer_rows(out: Output) -> dict[str, list[str]]:
    """list-peers' table by node name: [ID, Address, State, Voter, RaftProtocol, Commit Index,
    Trails Leader By] (columns split on runs of 2+ spaces)."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.stdout.splitlines()[1:]]
    return {r[0]: r[1:] for r in rows}


def test_stale_list_peers_and_autopilot_on_a_follower_as_consul() -> None:
    """Consul's ServerHealth/AutopilotState always go to the leader (``?stale`` is dropped), so a
    follower answers with the leader's state; the Raft configuration's LastIndex comes from the
    answering server's own autopilot state: none on a follower that never led (every Commit
    Index 0), the frozen view of its last term on a former leader. A trail never wraps."""

    async def body(cluster: Cluster) -> list[Any]:
        leader = await cluster.wait_for_leader()
        for i in range(5):
            assert (await _run(cluster, leader.name, "kv", "put", f"k{i}", "v")).exit_code == 0
        await trio.sleep(3.0)  # replicated; autopilot has run on the leader
        follower = next(n for n in cluster.servers.values() if n is not leader)
        state = await cluster.http(follower.name, "GET", "/v1/operator/autopilot/state?stale")
        health = await cluster.http(follower.name, "GET", "/v1/operator/autopilot/health?stale")
        fresh = await _run(cluster, follower.name, "operator", "raft", "list-peers", "-stale")
        # The leader steps down: it keeps its last autopilot state as a follower.
        moved = await cluster.http(leader.name, "POST", "/v1/operator/raft/transfer-leader")
        await trio.sleep(1.0)
        former = await _run(cluster, leader.name, "operator", "raft", "list-peers", "-stale")
        ids = {n.name: n.server_id for n in cluster.servers.values()}
        return [leader.name, follower.name, state, health, fresh, moved, former, ids]

    (leader, follower, state, health, fresh, moved, former, ids), _ = run_virtual(SPEC, body)
    assert state[0] == 200
    reply = json.loads(state[2])
    assert reply["Leader"] == ids[leader] != ids[follower]
    assert reply["Healthy"] is True
    assert all(s["LastIndex"] > 0 for s in reply["Servers"].values())
    assert health[0] == 200 and json.loads(health[2])["Healthy"] is True
    # A follower that never led: no autopilot state, every LastIndex 0.
    rows = _peer_rows(fresh)
    assert fresh.exit_code == 0 and set(rows) == set(ids)
    assert {r[5] for r in rows.values()} == {"0"}
    assert rows[leader][6] == "-"
    assert all(r[6] == "0 commits" for name, r in rows.items() if name != leader)
    # A former leader: its last term's view (real indexes), and no wrapped-around trail.
    assert moved[0] == 200
    rows = _peer_rows(former)
    assert former.exit_code == 0 and all(int(r[5]) > 0 for r in rows.values())
    for r in rows.values():
        assert r[6] == "-" or r[6] in ("1 commit",) or r[6].endswith(" commits")
        if r[6] != "-":
            assert 0 <= int(r[6].split()[0]) < 1000
