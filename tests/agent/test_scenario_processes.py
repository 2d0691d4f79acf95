"""``consim run FILE --processes`` (consim.agent.remote): the scenario runner over ``consim agent``
children. The default suite checks the interface without starting a process: a child's view read
back gives what the in-process servers give (leader, followers, acknowledgement, voters, gossip,
keyring, state machine), the event feed, and the clear refusal of what a process cannot serve. The
course scenarios themselves run behind CONSIM_PROCESS_TESTS=1 (each starts its processes)."""

from __future__ import annotations

import io
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trio
from live_hosts import free_host_base

from consim.agent.remote import ProcessScenarioCluster
from consim.agent.view import events_since, server_view
from consim.cluster import Cluster
from consim.events import EventLog
from consim.runtime import VirtualRuntime
from consim.scenario.cli import run_files
from consim.scenario.model import load_scenario
from consim.scenario.runner import run_scenario
from consim.scenario.timeline import render_timeline
from consim.spec import ClusterSpec

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
KEY = "0GMr/ynjxnKCWKTXeDbLcA=="


class _Running:
    """A child process that is up (what ``Popen.poll`` says of one)."""

    pid = 1

    def poll(self) -> None:
        return None


def _views(cluster: Cluster) -> dict[str, dict[str, Any]]:
    # Through JSON, as the control channel sends it.
    return {name: json.loads(json.dumps(server_view(n))) for name, n in cluster.servers.items()}


def test_a_childs_view_reads_as_the_server_itself(tmp_path: Path) -> None:
    spec = ClusterSpec(datacenters=(("dc1", 3),), seed=4, encrypt=KEY)

    async def body(cluster: Cluster) -> tuple[dict[str, Any], dict[str, Any]]:
        await cluster.wait_for_leader(within=30)
        leader = cluster.leader()
        assert leader is not None
        status, _, _ = await cluster.http(leader.name, "PUT", "/v1/kv/color", body=b"red")
        assert status == 200
        follower = cluster.followers()[0]
        cluster.kill(follower.name)
        await cluster.wait_for_leader(within=30)
        await cluster.restart(follower.name)
        with_key = {}
        for _ in range(3000):
            await trio.sleep(0.01)
            with_key = {
                n.name: n.fsm.get("color")[1] for n in cluster.servers.values() if n.running
            }
            if all(e is not None for e in with_key.values()) and cluster.acknowledged(leader):
                break
        facts = {
            "leader": leader.name,
            "followers": sorted(n.name for n in cluster.followers()),
            "acknowledged": cluster.acknowledged(leader),
            "terms": {n.name: n.core.term for n in cluster.servers.values()},
            "last": {
                n.name: (n.core.last_index, n.core.last_term) for n in cluster.servers.values()
            },
            "applied": {n.name: n.fsm.last_applied for n in cluster.servers.values()},
            "voters": len(leader.core.latest_configuration.voters()),
            "members": {
                n.name: sorted((m.name, m.status_name) for m in n.lan_pool.members())
                for n in cluster.servers.values()
            },
            "keys": {n.name: n.lan_pool.core.keyring.keys_b64() for n in cluster.servers.values()},
        }
        return facts, _views(cluster)

    (facts, views), _ = VirtualRuntime().run_cluster(spec, body)
    remote = ProcessScenarioCluster(spec, tmp_path, EventLog(lambda: 0.0))
    for name, p in remote.servers.items():
        p.proc = _Running()  # type: ignore[assignment]
        p.view = p.last_status = views[name]
        p.kv["color"] = b"red"
    leader = remote.leader()
    assert leader is not None and leader.name == facts["leader"]
    assert sorted(p.name for p in remote.followers()) == facts["followers"]
    assert remote.acknowledged(leader) is facts["acknowledged"] is True
    servers = remote.servers.values()
    assert {p.name: p.core.term for p in servers} == facts["terms"]
    assert {p.name: (p.core.last_index, p.core.last_term) for p in servers} == facts["last"]
    assert {p.name: p.fsm.last_applied for p in servers} == facts["applied"]
    assert len(leader.core.latest_configuration.voters()) == facts["voters"] == 3
    members = {
        p.name: sorted((m.name, m.status_name) for m in p.lan_pool.members()) for p in servers
    }
    assert members == facts["members"]
    assert {p.name: p.lan_pool.core.keyring.keys_b64() for p in servers} == facts["keys"]
    assert facts["keys"]["dc1-s1"] == [KEY]
    # A killed child: no core, no pools, "down", as a killed ServerNode.
    gone = remote.node(facts["followers"][0])
    gone.proc = None
    assert gone.core is None and gone.lan_pool is None and gone.status()["state"] == "down"
    _, entry = leader.fsm.get("color")
    assert entry is not None and entry.value == b"red"
    assert leader.fsm.get("never-read")[1] is None  # not read yet reads as absent: polled again


def test_the_event_feed_resumes_where_it_stopped_and_skips_what_the_ring_dropped() -> None:
    log = EventLog(lambda: 1.0, max_events=3)
    for i in range(5):
        log.emit("dc1-s1", "x", {"i": i}, message=f"line {i}")
    seen = events_since(log, 1)  # event 0 read before; 1 was dropped since: 2, 3, 4 remain
    assert seen["next"] == 5
    assert [e["fields"]["i"] for e in seen["events"]] == [2, 3, 4]
    assert seen["events"][0]["message"] == "line 2" and seen["events"][0]["node"] == "dc1-s1"
    assert events_since(log, 5)["events"] == []


def test_a_check_step_is_no_longer_refused_with_processes() -> None:
    from consim.agent.remote import unsupported

    scenario = load_scenario(SCENARIOS / "12-is-default-linearizable.toml")
    assert [s.action for s in scenario.steps].count("check") == 2
    assert unsupported(scenario) == []


class _Feeds:
    """The children's control channels, served from per-server event logs (what each child's
    own log would hold): ``GET /view?after=N`` pages them; ``POST /record`` is remembered."""

    def __init__(self, remote: ProcessScenarioCluster, views: dict[str, dict[str, Any]]) -> None:
        self.by_control = {p.control: name for name, p in remote.servers.items()}
        self.views = views
        self.logs: dict[str, EventLog] = {}
        self.told: list[tuple[str, bool]] = []

    async def get(self, address: str, path: str) -> tuple[int, bytes] | None:
        name = self.by_control.get(address)
        if name is None or not path.startswith("/view?after="):
            return None
        out = dict(self.views[name])
        out["events"] = events_since(self.logs[name], int(path.split("=")[1]))
        return 200, json.dumps(out).encode()

    async def post(self, url: str, content: bytes) -> Any:
        address = url.split("/")[2]
        self.told.append((self.by_control[address], json.loads(content)["applies"]))
        return type("Response", (), {"status_code": 200})()


def _split(events: list[Any], now: list[float]) -> dict[tuple[str, int], EventLog]:
    """One log per server process (server, incarnation), as each child keeps its own; every log
    reads the same clock (``now``), as the children's monotonic clocks are the machine's."""
    logs: dict[tuple[str, int], EventLog] = {}
    incarnation: dict[str, int] = {}
    for e in events:
        if not e.node.startswith("dc1-"):
            continue
        inc = int(e.fields.get("incarnation", incarnation.get(e.node, 1)))
        incarnation[e.node] = inc
        log = logs.setdefault((e.node, inc), EventLog(lambda: now[0]))
        now[0] = e.time
        log.emit(e.node, e.kind, e.fields, level=e.level, subsystem=e.subsystem, message=e.message)
    return logs


def test_the_judge_fed_from_the_childrens_feeds_judges_as_in_one_process(tmp_path: Path) -> None:
    """A check's record on processes: each child's recorded events (applied entries, restores,
    leader logs, elections) reach the judge through its feed, in the order they happened across
    processes, a restarted child's as a new incarnation; the invariants come out as they do on
    the same run's events in one process, and gossip views and keyrings read the same."""
    from consim.check.campaign import gossip_views, keyrings
    from consim.check.invariants import check_all

    spec = ClusterSpec(datacenters=(("dc1", 3),), seed=7, encrypt=KEY)

    async def body(cluster: Cluster) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
        leader = await cluster.wait_for_leader(within=30)
        for node in cluster.servers.values():
            node.record_applies = True
        start = len(cluster.events.events)
        for i in range(5):
            assert (await cluster.http(leader.name, "PUT", f"/v1/kv/k{i}", body=b"%d" % i))[
                0
            ] == 200
        cluster.kill(leader.name)  # a new election, the old leader back from its data dir
        leader = await cluster.wait_for_leader(within=30)
        await cluster.restart(next(n for n in cluster.servers.values() if not n.running).name)
        for i in range(5, 10):
            assert (await cluster.http(leader.name, "PUT", f"/v1/kv/k{i}", body=b"%d" % i))[
                0
            ] == 200
        await trio.sleep(5)
        observed = {"views": gossip_views(cluster), "keyrings": keyrings(cluster)}
        return list(cluster.events.events[start:]), observed, _views(cluster)

    (events, observed, views), _ = VirtualRuntime().run_cluster(spec, body)
    now = [0.0]
    logs = _split(events, now)
    assert any(inc == 2 for _, inc in logs)  # the killed server's second process
    now[0] = events[-1].time
    remote = ProcessScenarioCluster(spec, tmp_path, EventLog(lambda: now[0]))
    feeds = _Feeds(remote, views)
    remote._get = feeds.get  # type: ignore[method-assign]
    remote._client = feeds

    async def run() -> tuple[list[Any], list[str]]:
        for name, p in remote.servers.items():
            p.proc = _Running()  # type: ignore[assignment]
            feeds.logs[name] = EventLog(lambda: now[0])  # nothing logged yet
        await remote.start_recording()
        for name in remote.servers:  # what each logged while recording
            feeds.logs[name] = logs[(name, 1)]
        await remote.sync(wait_started=False)
        for (name, inc), log in logs.items():
            if inc == 2:  # a new process: its own feed, from its first event
                remote.node(name).forget()
                feeds.logs[name] = log
        await remote.sync(wait_started=False)
        return await remote.stop_recording()

    got, unjudged = trio.run(run)
    assert unjudged == []
    assert sorted(feeds.told) == sorted([(n, on) for n in remote.servers for on in (True, False)])
    recorded = [e for e in events if e.node.startswith("dc1-")]
    assert len(got) == len(recorded)
    assert [e.time for e in got] == sorted(e.time for e in got)
    key = lambda e: (e.node, e.kind, json.dumps(e.fields, sort_keys=True))  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, recorded))
    applied = [e for e in got if e.kind == "applied"]
    assert {e.node for e in applied} == set(remote.servers) and len(applied) >= 3 * 10

    def judged(evs: list[Any]) -> list[tuple[str, bool, int]]:
        results = check_all(
            evs, [], final_local={}, applied_index={}, views=observed["views"], keyrings={}
        )
        return [(r.name, r.ok, r.checked) for r in results]

    assert judged(got) == judged(recorded)
    assert all(ok for _, ok, _ in judged(got))
    assert dict((n, c) for n, _, c in judged(got))["leader_completeness"] > 0
    for p in remote.servers.values():
        p.view = p.last_status = views[p.name]
    assert gossip_views(remote) == observed["views"]  # type: ignore[arg-type]
    assert keyrings(remote) == observed["keyrings"]  # type: ignore[arg-type]
    assert observed["keyrings"]["dc1-s1"]["lan"]["primary"] is not None


def test_a_feed_that_dropped_events_is_said_not_judged(tmp_path: Path) -> None:
    spec = ClusterSpec(datacenters=(("dc1", 3),), seed=1)
    remote = ProcessScenarioCluster(spec, tmp_path, EventLog(lambda: 0.0))
    feeds = _Feeds(remote, {n: {"state": "follower"} for n in remote.servers})
    remote._get = feeds.get  # type: ignore[method-assign]
    remote._client = feeds
    for name, p in remote.servers.items():
        p.proc = _Running()  # type: ignore[assignment]
        feeds.logs[name] = EventLog(lambda: 0.0, max_events=2)

    async def run() -> tuple[list[Any], list[str]]:
        await remote.start_recording()
        for i in range(5):  # dc1-s2 logs five before the next look; its ring keeps two
            feeds.logs["dc1-s2"].emit("dc1-s2", "applied", {"index": i + 1, "term": 1})
        await remote.sync(wait_started=False)
        return await remote.stop_recording()

    got, unjudged = trio.run(run)
    assert unjudged == ["dc1-s2's event feed dropped 3 events before they were read"]
    assert [e.fields["index"] for e in got] == [4, 5]


def test_a_child_records_applies_when_asked_on_its_control_channel() -> None:
    from types import SimpleNamespace

    from consim.agent.run import control_app

    agent = SimpleNamespace(
        node=SimpleNamespace(record_applies=False), events=EventLog(trio.current_time)
    )

    async def run() -> list[Any]:
        client = control_app(agent).test_client()  # type: ignore[arg-type]
        out = []
        for body in ({"applies": True}, {"applies": "yes"}, {"applies": False}):
            response = await client.post("/record", json=body)
            out.append((response.status_code, agent.node.record_applies))
        return out

    assert trio.run(run) == [(200, True), (400, True), (200, False)]


def test_cluster_settings_no_agent_flag_carries_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "acl.toml"
    f.write_text(
        textwrap.dedent(
            """
            name = "acl"
            [cluster]
            datacenters = { dc1 = 3 }
            [cluster.acl]
            enabled = true
            initial_management = "root"
            [[step]]
            wait = "leader"
            """
        )
    )
    err = io.StringIO()
    assert run_files([str(f)], processes=True, out=io.StringIO(), err=err) == 2
    assert f"{f}: [cluster] acl: not passed to the agent processes" in err.getvalue()


def test_ui_replay_is_refused_with_processes() -> None:
    err = io.StringIO()
    path = str(SCENARIOS / "01-leader-loss.toml")
    assert run_files([path], processes=True, ui_path="x.html", out=io.StringIO(), err=err) == 2
    assert "--ui replays a virtual-time run (not with --processes)" in err.getvalue()


# ---- the course scenarios on processes (slow) ----------------------------------------------

slow = pytest.mark.skipif(
    not os.environ.get("CONSIM_PROCESS_TESTS"),
    reason="set CONSIM_PROCESS_TESTS=1 (five course scenarios and the fault verbs on agent processes, about 150 s)",
)


@slow
@pytest.mark.parametrize(
    "name",
    [
        "01-leader-loss",  # kill the leader, a new one is elected
        "02-server-failure-and-return",  # kill, restart from the data dir, state machine reads
        "03-minority-partition",  # partition and heal through the children's fault channels
        "07-single-survivor",  # kills, peers.json written into a data dir, restart, recovery
    ],
)
def test_scenario_processes_course_verdict(name: str) -> None:
    scenario = load_scenario(SCENARIOS / f"{name}.toml")
    datacenters = [n for _, n in scenario.cluster.datacenters]
    block = free_host_base(datacenters, 8500, range(200, 250, 3))
    result = run_scenario(scenario, processes=True, host_block=block)
    if not result.ok:  # the whole timeline, DEBUG lines too: a live run's failure is its timing
        print(render_timeline(result, log_level="DEBUG"))
    assert result.ok, result.failure
    assert all(s.status == "ok" for s in result.steps)
    assert result.processes and result.to_json()["processes"] is True
    assert "live time, one process per server" in render_timeline(result).splitlines()[0]
    # The children's own log lines reached the run's log (the timeline, wait = "log").
    assert any(e.message == "entering leader state" for e in result.events.events)
    # The operator's faults are in the log as in one process (01 kills, 03 partitions, 11 both).
    assert result.events.of_kind("kill", "partition")


def test_both_clusters_have_every_member_of_the_scenario_face(tmp_path: Path) -> None:
    from consim.scenario.context import ScenarioCluster

    spec = ClusterSpec(datacenters=(("dc1", 3),), seed=1)
    members = [n for n in vars(ScenarioCluster) if not n.startswith("_")]
    members += list(ScenarioCluster.__annotations__)
    assert {"sync", "http", "acknowledged", "kill", "spec", "events", "servers"} <= set(members)

    async def body(cluster: Cluster) -> list[str]:
        return [m for m in members if not hasattr(cluster, m)]

    missing, _ = VirtualRuntime().run_cluster(spec, body)
    assert missing == []
    remote = ProcessScenarioCluster(spec, tmp_path, EventLog(lambda: 0.0))
    assert [m for m in members if not hasattr(remote, m)] == []


def _passes_on_processes(scenario: Any) -> Any:
    """Run a 3-server scenario on agent processes; it must pass (its timeline printed if not)."""
    block = free_host_base([3], 8500, range(200, 250, 3))
    result = run_scenario(scenario, processes=True, host_block=block)
    detail = "\n".join(f"{s.number} {s.status} {s.description}: {s.detail}" for s in result.steps)
    if not result.ok:  # the whole timeline, DEBUG lines too: a live run's failure is its timing
        print(render_timeline(result, log_level="DEBUG"))
    assert result.ok, f"{result.failure}\n{detail}"
    return result


VERBS = """\
name = "process-verbs"
summary = "pause, resume, stop, isolate, block, loss and delay on agent processes"
[cluster]
datacenters = { dc1 = 3 }
raft_multiplier = 1
rpc_hold_timeout = "2s"
[[step]]
wait = "leader"
within = "5s"
[[step]]
pause = "leader"
[[step]]
wait = "new-leader"
within = "5s"
[[step]]
assert = { state = { "old-leader" = "paused" } }
[[step]]
resume = "old-leader"
[[step]]
assert = { state = { "old-leader" = "follower" }, term_increased = true }
within = "5s"
[[step]]
isolate = "follower"
[[step]]
http = "PUT /v1/kv/iso"
body = "x"
on = "leader"
expect = { status = 200 }
[[step]]
heal = true
[[step]]
block = "leader"
to = "follower"
[[step]]
heal = true
[[step]]
loss = { from = "dc1-s1", to = "*", probability = 0.2 }
[[step]]
delay = { from = "*", to = "dc1-s2", seconds = "50ms" }
[[step]]
http = "PUT /v1/kv/links"
body = "y"
on = "leader"
expect = { status = 200 }
[[step]]
assert = { kv = { key = "links", value = "y" } }
within = "10s"
[[step]]
stop = "follower"
[[step]]
assert = { voters = 2, state = { "last-killed" = "down" } }
within = "10s"
"""


@slow
def test_scenario_processes_every_fault_verb(tmp_path: Path) -> None:
    """pause (SIGSTOP) and resume, isolate, block, loss, delay and stop (a graceful leave), which
    no course scenario run here uses."""
    f = tmp_path / "verbs.toml"
    f.write_text(VERBS)
    result = _passes_on_processes(load_scenario(f))
    kinds = {e.kind for e in result.events.events}
    assert {"pause", "resume", "isolate", "block", "set_loss", "set_delay", "stop"} <= kinds


@slow
def test_scenario_processes_is_default_linearizable() -> None:
    """Scenario 12 on processes: the workload over each agent's HTTP API, the nemesis pausing the
    leader with SIGSTOP, the judge fed by the agents' own reports; ?consistent must be valid."""
    result = _passes_on_processes(load_scenario(SCENARIOS / "12-is-default-linearizable.toml"))
    checks = [s for s in result.steps if s.action == "check"]
    assert len(checks) == 2 and all(s.status == "ok" for s in checks)
    assert ": valid; invariants judged from " in checks[0].detail
    for step in checks:  # the second reports its verdict, whichever it is
        judged = int(step.detail.split("invariants judged from ")[1].split()[0])
        assert judged > 0, step.detail
    # The children recorded what they applied (their own DEBUG lines, through their feeds) and
    # the nemesis paused a leader as a real SIGSTOP would.
    applied = {e.node for e in result.events.of_kind("applied")}
    assert applied == {"dc1-s1", "dc1-s2", "dc1-s3"}
    assert result.events.of_kind("pause") and result.events.of_kind("resume")


KILL_CHECK = """\
name = "check-with-kills"
summary = "a check whose nemesis kills and partitions agent processes"
seed = 2
[cluster]
datacenters = { dc1 = 3 }
raft_multiplier = 1
[[step]]
wait = "leader"
within = "5s"
[[step]]
check = { clients = 4, rate = 10, duration = "12s", consistency = "consistent", nemesis = "kill:leader", interval = "3s", timeout = "2s" }
expect = { verdict = "valid" }
"""


@slow
def test_scenario_processes_check_with_kills(tmp_path: Path) -> None:
    """A check whose nemesis SIGKILLs the leader: the restarted process records from its start
    and reports itself as its server's second incarnation, so the judge reads it as a restart."""
    f = tmp_path / "kill-check.toml"
    f.write_text(KILL_CHECK)
    result = _passes_on_processes(load_scenario(f))
    killed = {e.fields["server"] for e in result.events.of_kind("kill")}
    assert killed
    incarnations = {
        (e.node, e.fields["incarnation"]) for e in result.events.of_kind("applied", "fsm_restored")
    }
    assert {(name, 2) for name in killed} <= incarnations, incarnations
