"""``consim ctl``: values are checked before anything is sent, roles resolve as in scenario
files, ``heal`` clears every fault, ``block`` cuts one way, and the state files of two clusters
sharing a runtime dir do not overwrite each other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from consim.cli import UsageError, ctl_body, main
from consim.cluster import ClusterError
from consim.live import (
    Controller,
    ControlNotFound,
    control_file,
    find_control,
    forget_control,
    record_control,
)
from consim.runtime import run_virtual
from consim.spec import ClusterSpec


def test_delay_takes_durations_and_seconds():
    assert ctl_body("delay", ["dc1-s1", "dc1-s2", "200ms"]) == {
        "src": "dc1-s1",
        "dst": "dc1-s2",
        "seconds": 0.2,
    }
    assert ctl_body("delay", ["dc1-s1", "*", "1m30s"])["seconds"] == 90.0
    assert ctl_body("delay", ["leader", "*", "0.25"])["seconds"] == 0.25


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["delay", "dc1-s1", "*", "abc"], 'delay must be a duration like "200ms"'),
        (["delay", "dc1-s1", "*", "inf"], "delay must be a duration >= 0"),
        (["delay", "dc1-s1", "*"], "usage: consim ctl delay SRC DST DURATION"),
        (["loss", "*", "dc1-s3", "1.5"], "loss must be a probability from 0 to 1, got '1.5'"),
        (["loss", "*", "dc1-s3", "x"], "loss must be a probability"),
        (["kill"], "usage: consim ctl kill NODE"),
        (["block", "dc1-s1"], "usage: consim ctl block SRC DST"),
        (["heal", "now"], "heal takes no arguments"),
    ],
)
def test_bad_values_are_one_line_errors_before_any_request(argv, message, capsys):
    # Port 1 is never a control API: a request would fail with "cannot reach" (exit 1), so
    # exit 2 with the message shows the value was refused before anything was sent.
    assert main(["ctl", *argv, "--control", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(UsageError):
        ctl_body(argv[0], argv[1:])


def _control_run(actions):
    """Run ``actions(controller, cluster)`` on a fresh 3-server cluster in virtual time."""

    async def body(cluster):
        await cluster.wait_for_leader("dc1", within=10)
        return await actions(Controller(cluster), cluster)

    return run_virtual(ClusterSpec(datacenters=(("dc1", 3),), seed=3, raft_multiplier=1), body)[0]


def test_roles_resolve_like_scenario_files():
    async def actions(ctl, cluster):
        leader = cluster.leader("dc1").name
        assert ctl.resolve("leader") == leader == ctl.resolve("leader@dc1")
        follower = ctl.resolve("follower")
        assert follower != leader and cluster.node(follower).status()["state"] == "follower"
        await ctl.apply("kill", {"node": "leader"})
        assert not cluster.node(leader).running
        assert ctl.resolve("last-killed") == leader == ctl.resolve("old-leader")
        await ctl.apply("restart", {"node": "last-killed"})
        assert cluster.node(leader).running
        for bad, why in [
            ("dc1-s9", "no server named 'dc1-s9'"),
            ("leader@dc7", "no datacenter named 'dc7'"),
            ("dc1-s1@dc1", "only roles take @DC"),
        ]:
            with pytest.raises(ClusterError, match=why):
                ctl.resolve(bad)
        # Where several servers fit, the first by name; where none does, the role says so.
        assert ctl.resolve("follower") == min(n.name for n in cluster.followers("dc1"))
        assert ctl.resolve("any") == min(n.name for n in cluster.datacenter_servers("dc1"))
        for node in cluster.datacenter_servers("dc1"):
            cluster.kill(node.name)
        for role, why in [
            ("leader", "dc1 has no leader right now"),
            ("follower", "dc1 has no follower right now"),
            ("any", "no server of dc1 is running"),
        ]:
            with pytest.raises(ClusterError, match=f"^{why}$"):
                ctl.resolve(role)
        return True

    assert _control_run(actions)


def test_partition_with_roles_and_others_block_one_way_and_heal_clears_everything():
    async def actions(ctl, cluster):
        faults = cluster.net.faults
        host = cluster.host
        leader = ctl.resolve("leader")
        await ctl.apply("partition", {"groups": [["leader"], ["others"]]})
        others = [n for n in cluster.servers if n != leader]
        assert not faults.allowed(host(leader), host(others[0]))
        assert faults.allowed(host(others[0]), host(others[1]))
        await ctl.apply("heal", {})
        await ctl.apply("block", {"src": "dc1-s1", "dst": "dc1-s2"})
        assert not faults.allowed(host("dc1-s1"), host("dc1-s2"))
        assert faults.allowed(host("dc1-s2"), host("dc1-s1"))  # one way only
        await ctl.apply("delay", {"src": "leader", "dst": "*", "seconds": 0.2})
        await ctl.apply("loss", {"src": "*", "dst": "dc1-s3", "probability": 0.1})
        assert faults.extra_delay(host(leader), host("dc1-s3")) == 0.2
        assert faults.loss_probability(host("dc1-s1"), host("dc1-s3")) == 0.1
        await ctl.apply("heal", {})
        assert faults.clear(), faults.describe()
        with pytest.raises(ClusterError, match="seconds must be a number"):
            await ctl.apply("delay", {"src": "*", "dst": "*", "seconds": "200ms"})
        await trio.sleep(0)
        return True

    assert _control_run(actions)


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(proc.stdout)


def test_two_clusters_keep_their_own_state_files(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(ControlNotFound, match="up.json is missing"):
        find_control()
    record_control("127.0.0.1:8599")
    assert find_control() == "127.0.0.1:8599"
    record_control("127.0.0.1:8699")  # a second cluster, same runtime dir, same (alive) pid
    assert json.loads(control_file().read_text())["control"] == "127.0.0.1:8699"
    with pytest.raises(ControlNotFound) as info:
        find_control()
    text = str(info.value)
    assert text.startswith("2 'consim up' clusters are running: "), text
    assert "127.0.0.1:8599 (pid" in text and "127.0.0.1:8699 (pid" in text and "--control" in text
    # The latest stops: the pointer goes back to the one still running.
    forget_control("127.0.0.1:8699")
    assert json.loads(control_file().read_text())["control"] == "127.0.0.1:8599"
    assert find_control() == "127.0.0.1:8599"
    # A cluster that died without cleaning up is not picked.
    stale = tmp_path / "consim" / "up-127.0.0.1-8799.json"
    stale.write_text(json.dumps({"control": "127.0.0.1:8799", "pid": _dead_pid()}))
    assert find_control() == "127.0.0.1:8599"
    forget_control("127.0.0.1:8599")
    assert not control_file().exists()
    assert os.listdir(tmp_path / "consim") == [stale.name]


def test_control_api_takes_json_posts_only():
    """A page of another origin may POST a form or text/plain without a CORS preflight: the
    control API refuses anything but application/json, so such a page cannot kill a server."""
    from consim.live import control_app

    async def actions(ctl, cluster):
        client = control_app(cluster, ctl).test_client()
        leader = ctl.resolve("leader")
        plain = await client.post(
            "/ctl/kill", data=json.dumps({"node": leader}), headers={"Content-Type": "text/plain"}
        )
        form = await client.post("/ctl/kill", form={"node": leader})
        alive = cluster.node(leader).running
        ok = await client.post("/ctl/kill", json={"node": leader})
        return (
            plain.status_code,
            form.status_code,
            alive,
            ok.status_code,
            cluster.node(leader).running,
        )

    assert _control_run(actions) == (415, 415, True, 200, False)
