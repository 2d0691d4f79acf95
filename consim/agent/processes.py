"""``consim up --processes``: the same cluster as ``consim up``, one ``consim agent`` child process
per server on the usual addresses, and the same ``consim ctl``.

Each child is started with Consul's flags (``-server -node dc1-s2 -bind 127.0.0.2
-bootstrap-expect 3 -retry-join ...``) and its own data dir, so the cluster forms by gossip and
bootstrap_expect exactly as a cluster of ``consul agent`` processes does. ``consim ctl`` maps to
the operating system: ``kill`` is SIGKILL, ``restart`` starts the process again from its data dir,
``pause``/``resume`` are SIGSTOP/SIGCONT, ``stop`` is ``PUT /v1/agent/leave`` (graceful leave,
exit 0). Partitions, blocks, loss and delay stay consim's own network layer: every child serves a
small fault channel (``CONSIM_AGENT_CONTROL``) and gets the same FaultModel operations, so each
process drops what the in-process cluster would; a restarted child gets the faults in force.
Status (role, term, commit index) comes from each child's ``GET /status`` on that channel.
Every child serves consim's page at ``/ui/``; ``CONSIM_SUPERVISOR`` tells it this control API,
which answers the page's controls at ``POST /ui/api/ctl/<action>`` (CORS for the children's
HTTP addresses only), the same ``Controller`` as ``consim ctl``'s.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

import trio

from consim.cluster import ClusterError, named_server
from consim.live import server_table
from consim.spec import ClusterSpec, ServerSpec

CHILD_CONTROL_OFFSET = 98  # a child's fault channel: <its host>:<http-port + 98>


class AgentProcess:
    """One child ``consim agent``: what ``live.Controller`` asks of a server."""

    def __init__(self, spec: ServerSpec, argv: list[str], control: str) -> None:
        self.spec = spec
        self.name = spec.name
        self.datacenter = spec.datacenter
        self.address = spec.rpc_address
        self.argv = argv
        self.control = control
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.last_status: dict[str, Any] = {}
        self.down_reason = "killed"  # what the page shows while it is not running

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def is_leader(self) -> bool:
        return self.running and self.last_status.get("state") == "leader"

    @property
    def term(self) -> int:
        return int(self.last_status.get("term", 0) or 0)

    def status(self) -> dict[str, Any]:
        if not self.running:
            return {
                "name": self.name,
                "datacenter": self.datacenter,
                "address": self.address,
                "state": "down",
                "paused": False,
                "internal_errors": 0,
                "pid": None,
                "http": self.spec.http_address,
                "down_reason": self.down_reason,
            }
        out = dict(self.last_status) or {
            "name": self.name,
            "datacenter": self.datacenter,
            "address": self.address,
            "state": "starting",
        }
        out["paused"] = self.paused
        out["pid"] = self.proc.pid if self.proc else None
        out["http"] = self.spec.http_address
        return out


class ProcessCluster:
    """The ``Cluster`` face ``consim ctl`` needs, over child processes."""

    def __init__(self, spec: ClusterSpec, data_dir: Path, log_level: str) -> None:
        self.spec = spec
        self.data_dir = data_dir
        self.servers: dict[str, AgentProcess] = {}
        self._faults: list[dict[str, Any]] = []  # in force, replayed to a restarted child
        self._pending: list[dict[str, Any]] = []
        # This supervisor's control API, told to every child (its page's controls go there).
        self.supervisor: str | None = None
        specs = spec.servers()
        for s in specs:
            same_dc = [o.host for o in specs if o.datacenter == s.datacenter and o.name != s.name]
            other_dcs = [o.host for o in specs if o.datacenter != s.datacenter]
            count = sum(1 for o in specs if o.datacenter == s.datacenter)
            argv = [
                "-server",
                f"-node={s.name}",
                f"-datacenter={s.datacenter}",
                f"-bind={s.host}",
                f"-client={s.host}",
                f"-http-port={s.http_port}",
                f"-data-dir={data_dir / s.name}",
                f"-bootstrap-expect={count}",
                f"-raft-protocol={spec.raft_protocol}",
                f"-log-level={log_level}",
                "-retry-interval=1s",
                f"-config-file={self._config_file(s)}",
            ]
            argv += [f"-retry-join={h}" for h in same_dc]
            argv += [f"-retry-join-wan={h}" for h in other_dcs[:3]]
            if spec.encrypt:
                argv.append(f"-encrypt={spec.encrypt}")
            control = f"{s.host}:{s.http_port + CHILD_CONTROL_OFFSET}"
            self.servers[s.name] = AgentProcess(s, argv, control)

    def _config_file(self, s: ServerSpec) -> Path:
        # What Consul takes only from a file: performance.raft_multiplier, rpc_hold_timeout.
        path = self.data_dir / f"{s.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        performance: dict[str, Any] = {"raft_multiplier": self.spec.raft_multiplier}
        if self.spec.rpc_hold_timeout != ClusterSpec.rpc_hold_timeout:
            performance["rpc_hold_timeout"] = f"{self.spec.rpc_hold_timeout:g}s"
        path.write_text(json.dumps({"performance": performance}))
        return path

    # ---- processes ----------------------------------------------------------------------------
    def spawn(self, name: str, stdout: Any = None, extra_env: dict[str, str] | None = None) -> None:
        """Start the child; ``stdout`` (a file), if given, takes its stdout and stderr."""
        p = self.node(name)
        env = dict(os.environ, **(extra_env or {}))
        env["CONSIM_AGENT_CONTROL"] = p.control
        if self.supervisor:
            env["CONSIM_SUPERVISOR"] = self.supervisor  # consim.ui.agent.SUPERVISOR_ENV
        # The faults in force, applied by the child before its network runs (consim.agent.run).
        env["CONSIM_AGENT_FAULTS"] = json.dumps(self._faults)
        p.proc = subprocess.Popen(
            [sys.executable, "-m", "consim.cli", "agent", *p.argv],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=None if stdout is None else subprocess.STDOUT,
        )
        p.paused = False
        p.last_status = {}
        p.down_reason = "exited"  # until a kill or a stop says why

    async def start_all(self) -> None:
        for name in self.servers:
            self.spawn(name)

    def terminate_all(self) -> None:
        for p in self.servers.values():
            if p.running and p.proc is not None:
                if p.paused:
                    p.proc.send_signal(signal.SIGCONT)
                p.proc.send_signal(signal.SIGTERM)
        for p in self.servers.values():
            if p.proc is not None:
                try:
                    p.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.proc.kill()
                    p.proc.wait()

    async def poll_status(self) -> None:
        """Every child's status, four times a second (the ctl roles read it), on one client."""
        from consim.http.client import Client

        async with Client(timeout=1.0) as client:
            while True:
                for p in list(self.servers.values()):
                    if not p.running or p.paused:
                        continue
                    try:
                        with trio.move_on_after(1.0):
                            code, _, body = await client.request(p.control, "GET", "/status")
                            if code == 200:
                                p.last_status = json.loads(body)
                    except Exception:  # noqa: BLE001 - starting up or just killed: ask again later
                        pass
                await trio.sleep(0.25)

    # ---- what consim ctl does -----------------------------------------------------------------
    def node(self, name: str) -> AgentProcess:
        return named_server(self.servers, name)

    def kill(self, name: str) -> None:
        p = self.node(name)
        if not p.running or p.proc is None:
            raise ClusterError(f"{name} is not running")
        p.proc.send_signal(signal.SIGKILL)
        p.proc.wait()
        p.paused = False
        p.down_reason = "killed"

    async def restart(self, name: str) -> None:
        p = self.node(name)
        if p.running:
            self.kill(name)
        self.spawn(name)  # with the faults in force

    async def stop(self, name: str) -> None:
        from consim.http.client import request

        p = self.node(name)
        if not p.running:
            raise ClusterError(f"{name} is not running")
        p.down_reason = "stopped"
        try:
            await request(p.spec.http_address, "PUT", "/v1/agent/leave", timeout=30)
        except Exception as exc:  # noqa: BLE001 - said as a control error
            raise ClusterError(f"{name}: PUT /v1/agent/leave failed: {exc}") from None
        with trio.move_on_after(20):
            while p.running:
                await trio.sleep(0.05)

    def pause(self, name: str) -> None:
        p = self.node(name)
        if not p.running or p.proc is None:
            raise ClusterError(f"{name} is not running")
        p.proc.send_signal(signal.SIGSTOP)
        p.paused = True

    def resume(self, name: str) -> None:
        p = self.node(name)
        if p.running and p.proc is not None:
            p.proc.send_signal(signal.SIGCONT)
        p.paused = False

    def _fault(self, op: str, *args: Any, all: bool = False) -> None:  # noqa: A002
        entry: dict[str, Any] = {"op": op, "args": list(args)}
        if all:
            entry["all"] = True
        if op == "heal":
            # heal clears cuts (and with all, loss and delay): nothing before it needs replaying.
            keep = [] if all else [f for f in self._faults if f["op"] in ("set_loss", "set_delay")]
            self._faults = keep
        else:
            self._faults.append(entry)
        self._pending.append(entry)

    def host(self, name: str) -> str:
        return self.node(name).spec.host

    def partition(self, groups: list[list[str]]) -> None:
        self._fault("partition", [[self.host(n) for n in g] for g in groups])

    def isolate(self, name: str) -> None:
        self._fault("isolate", self.host(name))

    def block(self, src: str, dst: str) -> None:
        self._fault("block", self.host(src), self.host(dst))

    def heal(self, all: bool = False) -> None:  # noqa: A002 - Cluster.heal's name
        self._fault("heal", all=all)

    def _host_or_any(self, name: str) -> str:
        return "*" if name == "*" else self.host(name)

    def set_loss(self, src: str, dst: str, probability: float) -> None:
        self._fault("set_loss", self._host_or_any(src), self._host_or_any(dst), probability)

    def set_delay(self, src: str, dst: str, seconds: float) -> None:
        self._fault("set_delay", self._host_or_any(src), self._host_or_any(dst), seconds)

    async def push_faults(self) -> None:
        """Send the fault operations made since the last push to every running child, to all
        at once (one process in one cut for long would see a partition no cluster has)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        errors: list[str] = []

        async def send(p: AgentProcess) -> None:
            try:
                for entry in pending:
                    await self._send_fault(p, entry)
            except ClusterError as exc:
                errors.append(str(exc))

        async with trio.open_nursery() as nursery:
            for p in self.servers.values():
                if p.running and not p.paused:
                    nursery.start_soon(send, p)
        if errors:
            raise ClusterError("; ".join(sorted(errors)))

    async def _send_fault(self, p: AgentProcess, entry: dict[str, Any]) -> None:
        from consim.http.client import request

        try:
            code, _, body = await request(
                p.control, "POST", "/faults", body=json.dumps(entry).encode(), timeout=5
            )
        except Exception as exc:  # noqa: BLE001
            raise ClusterError(f"{p.name}: fault channel {p.control}: {exc}") from None
        if code != 200:
            raise ClusterError(f"{p.name}: {body.decode(errors='replace')}")

    # ---- views --------------------------------------------------------------------------------
    def datacenter_servers(self, datacenter: str) -> list[AgentProcess]:
        return [p for p in self.servers.values() if p.datacenter == datacenter]

    def leader(self, datacenter: str = "dc1") -> AgentProcess | None:
        leaders = [p for p in self.datacenter_servers(datacenter) if p.is_leader() and not p.paused]
        return max(leaders, key=lambda p: p.term, default=None)

    def followers(self, datacenter: str = "dc1") -> list[AgentProcess]:
        return [
            p
            for p in self.datacenter_servers(datacenter)
            if p.running and p.last_status.get("state") == "follower"
        ]

    def status(self) -> list[dict[str, Any]]:
        return [p.status() for p in self.servers.values()]


def control_app(cluster: ProcessCluster) -> Any:
    """The same control API as ``consim up``'s (``consim ctl`` cannot tell them apart)."""
    from quart import request
    from quart_trio import QuartTrio

    from consim.live import Controller
    from consim.raft.recovery import RecoveryError

    app = QuartTrio("consim-control")
    controller = Controller(cluster)  # type: ignore[arg-type]

    @app.route("/ctl/status", methods=["GET"])
    async def status() -> Any:
        return json.dumps(cluster.status()), 200, {"Content-Type": "application/json"}

    @app.route("/ctl/<action>", methods=["POST"])
    async def act(action: str) -> Any:
        body = await request.get_json(force=True, silent=True) or {}
        if not isinstance(body, dict):
            return "expected a JSON object", 400, {"Content-Type": "text/plain"}
        try:
            await controller.apply(action, body)
            await cluster.push_faults()
        except (ClusterError, ValueError, RecoveryError) as exc:
            return str(exc), 400, {"Content-Type": "text/plain"}
        return json.dumps(cluster.status()), 200, {"Content-Type": "application/json"}

    # The children's pages send their controls here (another origin: CORS for those only).
    origins = {f"http://{p.spec.http_address}" for p in cluster.servers.values()}

    @app.route("/ui/api/ctl/<action>", methods=["POST", "OPTIONS"])
    async def page_act(action: str) -> Any:
        from consim.ui.live import cors_headers

        cors = cors_headers(request.headers.get("Origin"), origins)
        if request.method == "OPTIONS":
            return "", 204, cors
        json_type = {**cors, "Content-Type": "application/json"}
        # JSON only: a form or text/plain POST from another page needs no preflight.
        if request.mimetype != "application/json":
            return json.dumps({"error": "send Content-Type: application/json"}), 415, json_type
        body = await request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            return json.dumps({"error": "expected a JSON object"}), 400, json_type
        try:
            await controller.apply(action, body)
            await cluster.push_faults()
        except (ClusterError, ValueError, RecoveryError) as exc:
            return json.dumps({"error": str(exc)}), 400, json_type
        return json.dumps({"ok": True}), 200, json_type

    return app


async def serve_processes(
    spec: ClusterSpec, *, log_level: str = "INFO", out: TextIO = sys.stdout
) -> None:
    """``consim up --processes``: run until cancelled; children are stopped on the way out."""
    from consim.http.serve import serve_http
    from consim.live import (
        CONTROL_PORT_OFFSET,
        check_addresses,
        serve_announced,
    )

    control_address = f"127.0.0.1:{spec.http_port + CONTROL_PORT_OFFSET}"
    check_addresses(spec, control_address)
    temp = None
    if spec.data_dir is None:
        temp = Path(tempfile.mkdtemp(prefix="consim-processes-"))
    data_dir = spec.data_dir or temp
    assert data_dir is not None
    cluster = ProcessCluster(spec, data_dir, log_level)
    cluster.supervisor = control_address
    print(server_table(spec.servers()), file=out, flush=True)
    try:
        async with trio.open_nursery() as nursery:
            await cluster.start_all()
            nursery.start_soon(cluster.poll_status)
            await nursery.start(serve_http, control_app(cluster), control_address)
            pids = ", ".join(f"{p.name}={p.proc.pid}" for p in cluster.servers.values() if p.proc)
            print(f"==> Agents started as processes: {pids}", file=out, flush=True)
            await serve_announced(
                nursery, cluster, control_address, "every agent", _announce_leader, out
            )
    finally:
        cluster.terminate_all()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


async def _announce_leader(cluster: ProcessCluster, dc: str, out: TextIO) -> None:
    while True:
        leader = cluster.leader(dc)
        if leader is not None:
            print(f"==> {dc} has a leader: {leader.name} ({leader.address})", file=out, flush=True)
            return
        await trio.sleep(0.25)
