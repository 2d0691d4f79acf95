"""``consim run FILE --processes``: the scenario runner's cluster, over ``consim agent`` children.

A scenario step reads a cluster through a narrow face (``consim.scenario.context.ScenarioCluster``):
servers by name with their status, Raft core facts (term, indexes, leader, voters), state machine
reads and gossip views; faults; HTTP to a server; the one event log. :class:`ProcessScenarioCluster`
answers it over the children's control channels (``consim.agent.view``): every quarter second,
and on every :meth:`sync` (before and after each step, on each poll of a wait), it reads each
running child's ``GET /view`` (with its new events) and keeps the answers on :class:`RemoteServer`,
whose attributes mirror a ServerNode's (``core.term``, ``fsm.get``, ``lan_pool.members()``...), so
the actions run unchanged. Faults made by a step are sent to the children at the next sync.

A ``check`` step (consim.check.campaign) runs its clients over :meth:`http` and its nemesis
through the supervisor (SIGSTOP, SIGKILL, the fault channels); for its judge, :meth:`start_recording`
asks every child to record what it applies (``POST /record``; a child started meanwhile records
from its start and is told which process of its server it is, its incarnation) and keeps the
events the children report on their feeds, ordered by when each happened (the feed's
``monotonic``), until :meth:`stop_recording`. A feed that dropped events before they were read is
said, not judged around. What a killed child logged after its last look (a quarter second at
most) dies with it, as its memory does.

What cannot be read from outside a process is refused before anything starts
(:func:`unsupported`): the cluster settings ``consim agent`` has no flag for.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any
from urllib.parse import quote

import trio

from consim.agent.processes import AgentProcess, ProcessCluster
from consim.cluster import Answer, ClusterError, hosts_named, majority_follows
from consim.events import NO_NODE, Event, EventLog
from consim.http.client import Client
from consim.spec import ClusterSpec, ServerSpec

POLL_INTERVAL = 0.1  # between looks at a starting child
BACKGROUND_INTERVAL = 0.25  # between looks when no step asks (events for the timeline)
START_WAIT = 60.0  # for a child to answer after it is started


class RemoteConfiguration:
    """A Raft configuration as a child reported it: voter ids."""

    def __init__(self, voters: list[str]) -> None:
        self._voters = list(voters)

    def voters(self) -> list[str]:
        return list(self._voters)

    def has_vote(self, server_id: str) -> bool:
        return server_id in self._voters


class RemoteCore:
    """The Raft facts of a child's last view (what scenario conditions read of ``node.core``)."""

    def __init__(self, view: dict[str, Any]) -> None:
        self.role_name = str(view.get("state", ""))
        self.term = int(view.get("term", 0) or 0)
        self.commit_index = int(view.get("commit_index", 0) or 0)
        self.last_index = int(view.get("last_index", 0) or 0)
        self.last_term = int(view.get("last_term", 0) or 0)
        self.leader_id = view.get("leader_id")
        self.configuration = RemoteConfiguration(view.get("voters", []))
        self.latest_configuration = RemoteConfiguration(view.get("latest_voters", []))


class RemoteEntry:
    def __init__(self, value: bytes | None) -> None:
        self.value = value


class RemoteFSM:
    """``fsm.last_applied`` and ``fsm.get(key)``: the child's own state machine, read with a
    ``?stale`` KV request at each sync for the keys a step watches."""

    def __init__(self, server: RemoteServer) -> None:
        self._server = server

    @property
    def last_applied(self) -> int:
        return int(self._server.view.get("applied_index", 0) or 0)

    def get(self, key: str) -> tuple[int, RemoteEntry | None]:
        # Not read yet (a child just restarted, its HTTP port not up): as absent, so a polled
        # assertion asks again, as it would of a server still replaying its log.
        value = self._server.kv.get(key)
        return 0, None if value is None else RemoteEntry(value)


class RemoteMember:
    def __init__(self, name: str, status: str) -> None:
        self.name = name
        self.status_name = status


class RemoteKeyring:
    def __init__(self, keys: list[str], primary: str | None = None) -> None:
        self._keys = keys
        self._primary = primary

    def keys_b64(self) -> list[str]:
        return list(self._keys)

    @property
    def keys(self) -> list[bytes]:
        return [base64.b64decode(k) for k in self._keys]

    @property
    def primary_key(self) -> bytes | None:
        return base64.b64decode(self._primary) if self._primary else None


class RemotePool:
    """A gossip pool as the child last saw it: its members and keyring."""

    def __init__(self, view: dict[str, Any]) -> None:
        self._members = [RemoteMember(str(n), str(s)) for n, s in view.get("members", [])]
        self.core = self  # pool.core.keyring, as a GossipPool has
        self.keyring = RemoteKeyring(list(view.get("keys", [])), view.get("primary"))

    def members(self) -> list[RemoteMember]:
        return list(self._members)


class RemoteServer(AgentProcess):
    """One child, read as a ServerNode is (from its last ``GET /view``)."""

    def __init__(self, spec: ServerSpec, argv: list[str], control: str, data_dir: Path) -> None:
        super().__init__(spec, argv, control)
        self.data_dir = data_dir
        self.view: dict[str, Any] = {}
        self.kv: dict[str, bytes | None] = {}
        self.events_seen = 0  # the child's event count read so far (GET /view?after=)
        self.starts = 0  # processes of this server started so far: the latest one's incarnation

    def forget(self) -> None:
        """A new process: nothing it said before holds."""
        self.view = {}
        self.kv = {}
        self.events_seen = 0
        self.last_status = {}

    @property
    def node_id(self) -> str:
        path = self.data_dir / "node-id"
        if path.exists():
            return path.read_text().strip()
        return str(self.view.get("node_id", ""))

    @property
    def server_id(self) -> str:
        return str(self.view.get("id", ""))

    @property
    def core(self) -> RemoteCore | None:
        if not self.running or "term" not in self.view:
            return None
        return RemoteCore(self.view)

    @property
    def fsm(self) -> RemoteFSM:
        return RemoteFSM(self)

    def _pool(self, label: str) -> RemotePool | None:
        pools = self.view.get("pools", {})
        return RemotePool(pools[label]) if self.running and label in pools else None

    @property
    def lan_pool(self) -> RemotePool | None:
        return self._pool("lan")

    @property
    def wan_pool(self) -> RemotePool | None:
        return self._pool("wan")


class ProcessScenarioCluster(ProcessCluster):
    """A :class:`ProcessCluster` a scenario runs against (see the module docstring)."""

    def __init__(self, spec: ClusterSpec, data_dir: Path, events: EventLog) -> None:
        super().__init__(spec, data_dir, "DEBUG")
        self.events = events
        self.servers = {
            name: RemoteServer(p.spec, p.argv, p.control, data_dir / name)
            for name, p in self.servers.items()
        }
        self._lock = trio.Lock()
        # Children started and not yet heard from: the next sync waits for them, so a step after
        # a restart starts when the server runs (as it does in one process).
        self._starting: set[str] = set()
        # Each server's next process, started with the cluster and waiting (STANDBY_ENV): Python's
        # imports take seconds, a restart in one process none. Started at boot, not at a kill:
        # a process importing beside the cluster right after a fault would slow the very moments
        # a scenario times (a write "before the leader notices"). A second kill starts another.
        self._standbys: dict[str, subprocess.Popen[bytes]] = {}
        self._watched: set[str] = set()
        self._client: Any = None
        # The servers' HTTP APIs (a scenario's requests, its load steps), while run() runs.
        self._http: Client | None = None
        # consim check's judge (start_recording .. stop_recording): the children's events on the
        # parent's clock, and what could not be read (events a feed dropped, a child not told).
        self._recorded: list[Event] | None = None
        self._unjudged: list[str] = []

    def node(self, name: str) -> RemoteServer:  # type: ignore[override]
        node = super().node(name)
        assert isinstance(node, RemoteServer)
        return node

    # ---- processes ----------------------------------------------------------------------------
    def spawn(self, name: str) -> None:  # type: ignore[override]
        from consim.agent.run import INCARNATION_ENV, RECORD_ENV

        p = self.node(name)
        p.forget()
        p.starts += 1
        self._starting.add(name)
        record = self._recorded is not None
        standby = self._standbys.pop(name, None)
        if standby is not None and standby.poll() is None and standby.stdin is not None:
            go = json.dumps({"faults": self._faults, "record": record, "incarnation": p.starts})
            go += "\n"
            try:
                standby.stdin.write(go.encode())
                standby.stdin.close()
            except OSError:
                standby.kill()
            else:
                p.proc = standby
                p.paused = False
                p.down_reason = "exited"  # as ProcessCluster.spawn: until a kill or stop says why
                return
        # The child's own lines reach the run's event log through GET /view; its stdout and
        # stderr (a traceback of a child that could not start) go to <data-dir>/<name>.log.
        env = {INCARNATION_ENV: str(p.starts), RECORD_ENV: "1" if record else ""}
        with open(self.data_dir / f"{name}.log", "ab") as log:
            super().spawn(name, stdout=log, extra_env=env)

    def _start_standby(self, name: str) -> None:
        from consim.agent.run import CONTROL_ENV, STANDBY_ENV

        p = self.node(name)
        env = dict(os.environ)
        env[CONTROL_ENV] = p.control
        env[STANDBY_ENV] = "1"
        with open(self.data_dir / f"{name}.log", "ab") as log:
            self._standbys[name] = subprocess.Popen(
                [sys.executable, "-m", "consim.cli", "agent", *p.argv],
                env=env,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def terminate_all(self) -> None:
        for standby in self._standbys.values():
            standby.kill()
            standby.wait()
        self._standbys.clear()
        super().terminate_all()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the children and read them until cancelled; they are stopped on the way out."""
        import httpx

        try:
            async with httpx.AsyncClient(timeout=2.0) as client, Client(timeout=60) as servers:
                self._client, self._http = client, servers
                await self.start_all()
                for name in self.servers:
                    self._start_standby(name)
                await self._started()
                task_status.started()
                while True:
                    try:
                        # Not waiting for a restarted child: a check's nemesis and reads go on.
                        await self.sync(wait_started=False)
                    except ClusterError as exc:  # a fault a child did not take: said, go on
                        self.events.emit(
                            NO_NODE, "fault_not_sent", {"error": str(exc)}, level="ERROR"
                        )
                    await trio.sleep(BACKGROUND_INTERVAL)
        finally:
            self._http = None
            with trio.CancelScope(shield=True):
                self.terminate_all()

    async def _started(self) -> None:
        """Every child answers on its control channel (a Python process takes seconds to start
        on a busy machine; a scenario's first wait must not count them), or ClusterError."""
        await self.sync()
        for p in self.servers.values():
            if not p.running:
                raise ClusterError(f"{p.name} exited at start: {self._log_tail(p)}")
        waiting = ", ".join(p.name for p in self.servers.values() if not p.view)
        if waiting:
            raise ClusterError(
                f"{waiting}: no answer on the control channel within {START_WAIT:g}s"
            )

    def _log_tail(self, p: RemoteServer) -> str:
        path = self.data_dir / f"{p.name}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return " | ".join(lines[-3:]) or "no output"

    async def sync(self, kv: Collection[str] = (), *, wait_started: bool = True) -> None:
        """Send the faults steps made, then read every running child once (and, for ``kv``,
        each one's own value of those keys); with ``wait_started``, until every child started
        since answers."""
        self._watched.update(kv)
        async with self._lock:
            await self.push_faults()
            await self._read_all()
            if not wait_started:
                return
            with trio.move_on_after(START_WAIT):
                while True:
                    self._starting = {
                        n
                        for n in self._starting
                        if self.servers[n].running and not self.servers[n].view
                    }
                    if not self._starting:
                        break
                    await trio.sleep(POLL_INTERVAL)
                    await self._read_all()

    async def _read_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for p in self.servers.values():
                if p.running and not p.paused:
                    nursery.start_soon(self._read, p)

    async def _get(self, address: str, path: str) -> tuple[int, bytes] | None:
        try:
            response = await self._client.get(f"http://{address}{path}")
        except Exception:  # noqa: BLE001 - starting, just killed or paused: ask again later
            return None
        return response.status_code, response.content

    async def _read(self, p: RemoteServer) -> None:
        got = await self._get(p.control, f"/view?after={p.events_seen}")
        if got is not None and got[0] == 200 and p.running:
            view = json.loads(got[1])
            seen = view.pop("events")
            p.view = p.last_status = view
            dropped = int(seen["next"]) - p.events_seen - len(seen["events"])
            p.events_seen = int(seen["next"])
            if self._recorded is not None:
                self._keep(p, seen["events"], dropped)
            for e in seen["events"]:
                self.events.emit(
                    e["node"],
                    e["kind"],
                    e["fields"],
                    level=e["level"],
                    subsystem=e["subsystem"],
                    message=e["message"],
                )
        for key in sorted(self._watched):
            got = await self._get(p.spec.http_address, f"/v1/kv/{quote(key)}?stale")
            if got is None:
                continue
            if got[0] == 404:
                p.kv[key] = None
            elif got[0] == 200:
                value = json.loads(got[1])[0].get("Value")
                p.kv[key] = b"" if value is None else base64.b64decode(value)

    def _keep(self, p: RemoteServer, events: list[dict[str, Any]], dropped: int) -> None:
        assert self._recorded is not None
        if dropped > 0:
            self._unjudged.append(
                f"{p.name}'s event feed dropped {dropped} events before they were read"
            )
        # The feed's monotonic clock is the machine's, the same in every process: on ours.
        offset = self.events.now() - time.monotonic()
        for e in events:
            what = {k: e[k] for k in ("node", "kind", "fields", "level", "subsystem", "message")}
            self._recorded.append(Event(time=float(e["monotonic"]) + offset, **what))

    # ---- consim check (consim.check.campaign.check_on_cluster) ---------------------------------
    async def start_recording(self) -> None:
        """Every running child records what it applies from now on (a child started later
        records from its start); their events are kept for :meth:`stop_recording`."""
        await self.sync(wait_started=False)  # what came before is not this check's
        self._recorded, self._unjudged = [], []
        await self._tell_record(True)

    async def stop_recording(self) -> tuple[list[Event], list[str]]:
        """The children's events since :meth:`start_recording`, in the order they happened,
        and what could not be read (each a sentence; empty when nothing was missed)."""
        await self._tell_record(False)
        await self.sync(wait_started=False)  # the events up to the children's stop
        events, unjudged = self._recorded or [], self._unjudged
        self._recorded, self._unjudged = None, []
        events.sort(key=lambda e: e.time)  # stable: each child's own order is kept
        return events, unjudged

    async def _tell_record(self, on: bool) -> None:
        body = json.dumps({"applies": on}).encode()

        async def tell(p: RemoteServer) -> None:
            try:
                response = await self._client.post(f"http://{p.control}/record", content=body)
                ok = response.status_code == 200
            except Exception:  # noqa: BLE001 - said below
                ok = False
            if not ok and self._recorded is not None:
                what = "start" if on else "stop"
                self._unjudged.append(f"{p.name} did not answer the request to {what} recording")

        async with trio.open_nursery() as nursery:
            for p in self.servers.values():
                if p.running and not p.paused:
                    nursery.start_soon(tell, p)

    async def wait_for_leader(self, datacenter: str = "dc1", within: float = 30.0) -> RemoteServer:
        """As ``Cluster.wait_for_leader``: a leader a majority acknowledges, as the children say."""
        with trio.move_on_after(within):
            while True:
                leader = self.leader(datacenter)
                if leader is not None and self.acknowledged(leader):
                    return leader  # type: ignore[return-value]
                await trio.sleep(POLL_INTERVAL)
        raise ClusterError(f"no leader in {datacenter} within {within}s")

    # ---- what a scenario does, logged as the in-process cluster logs it -------------------------
    def kill(self, name: str) -> None:
        super().kill(name)
        if name not in self._standbys:
            self._start_standby(name)
        self.events.emit(NO_NODE, "kill", {"server": name}, level="WARN", message="server killed")

    async def restart(self, name: str) -> None:
        self.events.emit(NO_NODE, "restart", {"server": name}, message="server restarted")
        await super().restart(name)

    async def stop(self, name: str) -> None:
        self.events.emit(NO_NODE, "stop", {"server": name}, message="server leaving gracefully")
        await super().stop(name)
        if not self.node(name).running and name not in self._standbys:
            self._start_standby(name)

    def pause(self, name: str) -> None:
        super().pause(name)
        self.events.emit(NO_NODE, "pause", {"server": name}, level="WARN", message="server paused")

    def resume(self, name: str) -> None:
        super().resume(name)
        self.events.emit(NO_NODE, "resume", {"server": name}, message="server resumed")

    def _fault(self, op: str, *args: Any, all: bool = False) -> None:  # noqa: A002
        super()._fault(op, *args, all=all)
        by_host = {p.spec.host: p.name for p in self.servers.values()}
        named = hosts_named(by_host, list(args))
        self.events.emit(NO_NODE, op, {"args": named}, level="WARN", message=op.replace("_", " "))

    def _host_or_any(self, name: str) -> str:
        if name in self.spec.datacenter_names():
            raise ClusterError(
                f"links on a whole datacenter ({name}) are not sent to processes yet: "
                "name the servers"
            )
        return super()._host_or_any(name)

    # ---- views --------------------------------------------------------------------------------
    async def http(self, name: str, method: str, path: str, **options: Any) -> Answer:
        """One HTTP request to the child's HTTP port (``headers``, ``body`` as Cluster.http)."""
        from consim.http.client import request

        address = self.node(name).spec.http_address
        if self._http is None:  # not running (or stopped): a client of its own
            return await request(address, method, path, timeout=60, **options)
        return await self._http.request(address, method, path, **options)

    def acknowledged(self, leader: Any) -> bool:
        """Does a majority of voters follow ``leader`` in its term (as the children say)?"""
        if leader.core is None:
            return False
        return majority_follows(leader, self.datacenter_servers(leader.datacenter))


def unsupported(scenario: Any) -> list[str]:
    """Why ``scenario`` cannot run with ``--processes`` (file, step, reason), or nothing."""
    from consim.scenario.base import ClusterSettings

    out = []
    path = scenario.path
    c = scenario.cluster
    default = ClusterSettings()
    settings = {
        "acl": c.acl.enabled,
        "tls": c.tls is not None,
        "network": c.network is not None,
        "snapshot_threshold": c.snapshot_threshold is not None,
        "snapshot_interval": c.snapshot_interval is not None,
        "trailing_logs": c.trailing_logs is not None,
        "pre_vote": c.pre_vote != default.pre_vote,
        "raft_peers": c.raft_peers is not None,
    }
    for key, set_ in settings.items():
        if set_:
            out.append(
                f"{path}: [cluster] {key}: not passed to the agent processes "
                "(run it without --processes)"
            )
    return out
