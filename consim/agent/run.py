"""One Consul server in this process: ``consim agent -server ...``.

The server is the same ``ServerNode`` the in-process cluster runs, on a ``SocketNetwork`` bound to
the agent's address, with its HTTP API on ``-client``:``-http-port``. What differs from a
``Cluster`` member is what Consul's agent does around it:

- the data dir is Consul's layout at ``-data-dir`` itself (``node-id``, ``raft/raft.db``,
  ``raft/peers.json``, ``serf/local.keyring``); a restart resumes from it;
- it knows nobody at start: it joins by gossip (``-join``, ``-retry-join``, ``-join-wan``,
  ``-retry-join-wan``), and bootstraps as Consul does: ``-bootstrap`` alone, or with
  ``-bootstrap-expect N`` once N alive servers expecting N are in the LAN pool and none reports
  Raft peers (``maybeBootstrap``), else it waits for a leader to add it;
- SIGINT and SIGTERM: Consul's server defaults (``skip_leave_on_interrupt = true``,
  ``leave_on_terminate = false``): shut down without leaving, exit 1; a graceful leave
  (``consim leave``, or the config flags) leaves first and exits 0.

For ``consim up --processes`` an agent started with ``CONSIM_AGENT_CONTROL=host:port`` also
serves a small fault channel there (``POST /faults``: the same FaultModel operations the
in-process cluster uses, applied to this process's network; ``GET /status``).

Every agent serves consim's page at ``/ui/`` on its HTTP address (``consim.ui.agent``): the whole
cluster as seen from here; with ``CONSIM_SUPERVISOR=host:port`` (set by ``consim up
--processes``) its controls go to that supervisor.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import random
import signal
import socket
import sys
import uuid
from pathlib import Path
from typing import Any, TextIO

import trio

from consim import CONSUL_VERSION
from consim.agent.config import AgentConfig, ConfigError
from consim.events import EventLog
from consim.gc_tuning import tune_for_serving
from consim.gossip.types import STATUS_ALIVE
from consim.net.network import RpcError
from consim.raft.recovery import RecoveryError
from consim.raft.types import Configuration, Server
from consim.server.node import ServerFailed, ServerNode
from consim.spec import RPC_PORT, SERF_LAN_PORT, SERF_WAN_PORT, ServerSpec

CONTROL_ENV = "CONSIM_AGENT_CONTROL"
# The faults in force when a child is (re)started, as a JSON list of fault channel operations:
# applied before its network runs, so a restarted server never slips past a partition.
FAULTS_ENV = "CONSIM_AGENT_FAULTS"
# A child started ahead of its restart (consim run --processes): it imports what an agent runs,
# then waits on stdin for the parent's go line, so a restart starts the server at once.
STANDBY_ENV = "CONSIM_AGENT_STANDBY"
# consim check on processes: "1" starts the server recording what it applies (the DEBUG events
# ``applied``, ``fsm_restored``, ``leader_log``: ServerNode.record_applies) from its first entry,
# and the parent's count of this server's processes, so each process reports its own incarnation.
RECORD_ENV = "CONSIM_AGENT_RECORD"
INCARNATION_ENV = "CONSIM_AGENT_INCARNATION"
FAULT_OPS = frozenset({"partition", "isolate", "block", "heal", "set_loss", "set_delay"})
GRACEFUL_TIMEOUT = 15.0  # Consul's gracefulTimeout
LEAVE_DRAIN_TIME = 5.0  # Consul's LeaveDrainTime


class AgentStartError(Exception):
    """The agent cannot start; printed as ``==> Error starting agent: <text>``, exit 1."""


class AgentServer(ServerNode):
    """A ServerNode whose data dir is ``-data-dir`` itself (Consul's layout), not ``<dir>/<node>``."""

    agent_dir: Path

    @property
    def node_dir(self) -> Path | None:
        return self.agent_dir


# ---- before anything starts -----------------------------------------------------------------


def private_ipv4() -> str:
    """Consul's default bind (``GetPrivateIP``): the one private IPv4 address of this host."""
    import fcntl
    import struct

    found = []
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
        ip = socket.inet_ntoa(packed[20:24])
        import ipaddress

        if ipaddress.ip_address(ip).is_private and not ipaddress.ip_address(ip).is_loopback:
            found.append(ip)
    if not found:
        raise AgentStartError(
            "Failed to get advertise address: No private IPv4 address found (set -bind)"
        )
    if len(found) > 1:
        raise AgentStartError(
            "Failed to get advertise address: Multiple private IPv4 addresses found. "
            "Please configure one with 'bind' and/or 'advertise'."
        )
    return found[0]


def agent_host(cfg: AgentConfig) -> str:
    """The one address the server binds and advertises (RPC, serf LAN and WAN)."""
    bind, advertise = cfg.bind_addr, cfg.advertise_addr
    if bind in ("0.0.0.0", "::"):
        return advertise or private_ipv4()
    if advertise and advertise != bind:
        raise AgentStartError(
            f"-advertise {advertise} differs from -bind {bind}: consim binds where it "
            "advertises (no NAT); use one address"
        )
    return bind


def node_id_for(cfg: AgentConfig, data_dir: Path) -> str:
    """Consul's setupNodeID: ``<data-dir>/node-id``, written on first start. A data dir holding
    another node's id than ``-node-id`` is refused (it is another server's Raft identity)."""
    path = data_dir / "node-id"
    if path.exists():
        stored = path.read_text().strip()
        if cfg.node_id and cfg.node_id != stored:
            raise AgentStartError(
                f"data dir {data_dir} belongs to node id {stored} (its node-id file), not "
                f"{cfg.node_id} given by -node-id: use an empty -data-dir for a new server, or "
                "drop -node-id to resume that one"
            )
        return stored
    node_id = cfg.node_id or str(uuid.uuid4())
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(node_id)
    return node_id


def check_ports(host: str, client: str, http_port: int) -> None:
    """Every listener free, or one line naming the address and the flag that moves it."""
    for kind, address, port, what in (
        ("tcp", host, RPC_PORT, "the server RPC port; change -bind"),
        ("tcp", host, SERF_LAN_PORT, "serf LAN; change -bind"),
        ("udp", host, SERF_LAN_PORT, "serf LAN; change -bind"),
        ("tcp", host, SERF_WAN_PORT, "serf WAN; change -bind"),
        ("udp", host, SERF_WAN_PORT, "serf WAN; change -bind"),
        ("tcp", client, http_port, "the HTTP API; change -http-port or -client"),
    ):
        s = socket.socket(
            socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
        )
        try:
            if kind == "tcp":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((address, port))
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            if exc.errno == errno.EADDRINUSE:
                reason = "address already in use"
            elif exc.errno == errno.EADDRNOTAVAIL:
                reason = "cannot assign requested address"
            raise AgentStartError(
                f"listen {kind} {address}:{port}: bind: {reason} ({what})"
            ) from None
        finally:
            s.close()


def banner(cfg: AgentConfig, host: str, node_id: str) -> str:
    rows = [
        ("Version", f"'{CONSUL_VERSION}'"),
        ("Node ID", f"'{node_id}'"),
        ("Node name", f"'{cfg.node_name}'"),
        ("Datacenter", f"'{cfg.datacenter}' (Segment: '<all>')"),
        ("Server", f"true (Bootstrap: {'true' if cfg.bootstrap else 'false'})"),
        (
            "Client Addr",
            f"[{cfg.client_addr}] (HTTP: {cfg.http_port}, HTTPS: -1, gRPC: -1, DNS: -1)",
        ),
        ("Cluster Addr", f"{host} (LAN: {SERF_LAN_PORT}, WAN: {SERF_WAN_PORT})"),
        (
            "Encrypt",
            f"Gossip: {'true' if cfg.encrypt else 'false'}, TLS-Outgoing: false, "
            "TLS-Incoming: false, Auto-Encrypt-TLS: false",
        ),
    ]
    lines = ["==> Starting Consul agent..."]
    lines += [f"{k:>18}: {v}" for k, v in rows]
    lines += ["", "==> Log data will now stream in as it occurs:", ""]
    return "\n".join(lines)


# ---- the running agent ----------------------------------------------------------------------


class Agent:
    """One running ``consim agent``: its server, HTTP API, joins, bootstrap and signals."""

    def __init__(self, cfg: AgentConfig, host: str, node_id: str, out: TextIO) -> None:
        from consim.net.sockets import SocketNetwork
        from consim.raft.config import RaftConfig
        from consim.storage.sqlite import SQLiteStorage

        self.cfg = cfg
        self.out = out
        self.data_dir = Path(cfg.data_dir)
        self.events = EventLog(trio.current_time, max_events=10_000)
        rng = random.Random()  # a live agent: no seed to reproduce
        self.net = SocketNetwork(random.Random(rng.getrandbits(64)))
        self.spec = ServerSpec(
            name=cfg.node_name,
            datacenter=cfg.datacenter,
            host=host,
            http_port=cfg.http_port,
            node_id=node_id,
        )
        data_dir = self.data_dir
        spec = self.spec
        self.node = AgentServer(
            spec,
            network=self.net,
            storage_factory=lambda: SQLiteStorage(data_dir, ""),
            events=self.events,
            rng=rng,
            raft_config=RaftConfig.for_multiplier(cfg.raft_multiplier),
            raft_protocol=cfg.raft_protocol,
            rpc_hold_timeout=cfg.rpc_hold_timeout,
            data_dir=data_dir,
            # Whom it knows at start: itself with -bootstrap (a configuration of one), else no
            # one (bootstrap_expect, or a leader adds it once it has joined).
            directory=lambda: [spec] if cfg.bootstrap else [],
            encrypt=cfg.encrypt or None,
        )
        self.node.agent_dir = data_dir
        self.node.record_applies = os.environ.get(RECORD_ENV) == "1"
        incarnation = os.environ.get(INCARNATION_ENV, "")
        if incarnation.isdigit() and int(incarnation) > 0:
            self.node.incarnation = int(incarnation) - 1  # run() counts this one
        if cfg.bootstrap_expect:
            self.node.gossip_tags["expect"] = str(cfg.bootstrap_expect)
        if cfg.bootstrap:
            self.node.gossip_tags["bootstrap"] = "1"
        self.exit_code = 0
        self._done = trio.Event()
        self._expect_done = not cfg.bootstrap_expect

    def log(self, kind: str, message: str, level: str = "INFO", **fields: Any) -> None:
        self.events.emit(
            self.node.name, kind, fields, level=level, subsystem="agent", message=message
        )

    async def run(self) -> int:
        from consim.http.app import create_app
        from consim.http.serve import HTTPLimits, serve_http
        from consim.live import print_events
        from consim.server.agent import ServerAgent

        level = self.cfg.log_level.upper()
        print_events(self.events, self.out, "ERROR" if level == "ERR" else level)
        self.net.on_error = lambda address, where, exc: self.node.contained_error(where, exc)
        node = self.node
        agent = ServerAgent(
            node,
            known_datacenters=lambda: len(node.known_datacenters()),
            leave=self.graceful_leave,
        )
        from consim.ui.agent import SUPERVISOR_ENV, AgentUI

        # consim's page at /ui/ (the whole cluster, seen from here; consim.ui.agent).
        ui = AgentUI(self, supervisor=os.environ.get(SUPERVISOR_ENV) or None)
        for entry in json.loads(os.environ.get(FAULTS_ENV) or "[]"):
            apply_fault(self, entry)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                await nursery.start(self.net.run)
                await nursery.start(node.run)
                await nursery.start(ui.run)
                await nursery.start(
                    functools.partial(serve_http, limits=HTTPLimits()),
                    create_app(agent, functools.partial(ui.handle, server=node.name)),
                    f"{self.cfg.client_addr}:{self.cfg.http_port}",
                )
                control = os.environ.get(CONTROL_ENV)
                if control:
                    await nursery.start(serve_http, control_app(self), control)
                self.log("started", "Consul agent running!")
                nursery.start_soon(self._joins, False)
                nursery.start_soon(self._joins, True)
                nursery.start_soon(self._wan_flood)
                if not self._expect_done:
                    nursery.start_soon(self._bootstrap_expect)
                nursery.start_soon(self._signals, signals)
                await self._done.wait()
                nursery.cancel_scope.cancel()
        return self.exit_code

    def shutdown(self, code: int) -> None:
        self.exit_code = code
        self._done.set()

    async def _signals(self, signals: Any) -> None:
        async for sig in signals:
            name = "interrupt" if sig == signal.SIGINT else "terminated"
            self.log("caught_signal", "Caught", signal=name)
            graceful = (sig == signal.SIGINT and not self.cfg.skips_leave_on_interrupt) or (
                sig == signal.SIGTERM and self.cfg.leaves_on_terminate
            )
            if not graceful:
                self.log("shutdown", "Graceful shutdown disabled. Exiting")
                self.shutdown(1)
                return
            self.log("shutdown", "Gracefully shutting down agent...")
            with trio.move_on_after(GRACEFUL_TIMEOUT) as scope:
                await self._leave()
            if scope.cancelled_caught:
                self.log("shutdown", "Timeout on graceful leave. Exiting")
                self.shutdown(1)
            else:
                self.log("shutdown", "Graceful exit completed")
                self.shutdown(0)
            return

    async def _leave(self) -> None:
        """Consul's Server.Leave: a leader with other voters removes itself from the Raft
        configuration; then serf leave on both pools (the others see ``left``); a follower then
        waits up to LeaveDrainTime for the leader to take it out of the configuration."""
        node = self.node
        core = node.core
        was_leader = node.is_leader()
        if was_leader and core is not None and len(core.configuration.voters()) > 1:
            try:
                with trio.move_on_after(node.raft_config.election_timeout * 4):
                    await node.rpc("Operator.RaftRemovePeerByID", {"ID": node.server_id})
            except RpcError as exc:
                self.log(
                    "leave_failed",
                    "failed to remove ourself as raft peer",
                    level="ERROR",
                    error=exc.message,
                )
        for pool in (node.lan_pool, node.wan_pool):
            if pool is not None and node.running:
                pool.leave()
        if node.lan_pool is not None:
            await trio.sleep(node.lan_pool.config.t(node.lan_pool.config.leave_propagate_delay))
        if was_leader or core is None:
            return
        # Consul reads its own configuration here; consim's leader stops replicating to a server
        # as soon as it removes it, so ask the leader whether we still count as a voter.
        leader = core.leader_address
        with trio.move_on_after(LEAVE_DRAIN_TIME):
            while node.running and leader:
                await trio.sleep(0.05)
                try:
                    peers = await node.call(leader, "Status.Peers", {}, timeout=1.0)
                except Exception:  # noqa: BLE001 - leader unreachable: keep waiting, then warn
                    continue
                if node.address not in (peers or []):
                    return
        self.log(
            "leave_failed", "failed to leave raft configuration gracefully, timeout", level="WARN"
        )

    async def graceful_leave(self) -> None:
        """``PUT /v1/agent/leave`` (``consim leave``): leave, then stop the agent with exit 0
        once the answer has gone out."""
        self.log("leave", "Requesting shutdown: graceful leave (PUT /v1/agent/leave)")
        await self._leave()

        async def stop() -> None:
            await trio.sleep(0.2)  # let the HTTP answer leave first
            self.log("shutdown", "Graceful exit completed")
            self.shutdown(0)

        self.nursery.start_soon(stop)

    # ---- joins --------------------------------------------------------------------------------
    async def _joins(self, wan: bool) -> None:
        """``-join`` once, ``-retry-join`` every ``retry_interval`` until another member is there
        (Consul's retry_join; it never gives up while ``retry_max`` is 0)."""
        cfg = self.cfg
        once = cfg.start_join_wan if wan else cfg.start_join
        retry = cfg.retry_join_wan if wan else cfg.retry_join
        pool = self.node.wan_pool if wan else self.node.lan_pool
        if pool is None or not (once or retry):
            return
        port = SERF_WAN_PORT if wan else SERF_LAN_PORT
        cluster = "WAN" if wan else "LAN"
        for address in once:
            await self._join(pool, address, port, cluster)
        if not retry:
            return
        self.log(
            "retry_join",
            "Retry join is supported for the following discovery methods",
            cluster=cluster,
            discovery_methods="(none: addresses only)",
        )
        self.log("retry_join", "Joining cluster...", cluster=cluster)
        attempt = 0
        while True:
            attempt += 1
            for address in retry:
                await self._join(pool, address, port, cluster)
            with trio.move_on_after(min(cfg.retry_interval, 5.0)):
                while len([m for m in pool.members() if m.status == STATUS_ALIVE]) < 2:
                    await trio.sleep(0.1)
            alive = [m for m in pool.members() if m.status == STATUS_ALIVE]
            if len(alive) >= 2:
                self.log(
                    "retry_join",
                    "Join cluster completed. Synced with initial agents",
                    cluster=cluster,
                    num_agents=len(alive) - 1,
                )
                return
            self.log(
                "retry_join",
                "Join cluster failed, will retry",
                level="WARN",
                cluster=cluster,
                retry_interval=f"{cfg.retry_interval:g}s",
                error="No members joined",
            )
            await trio.sleep(max(0.0, cfg.retry_interval - 5.0))

    async def _join(self, pool: Any, address: str, port: int, cluster: str) -> None:
        target = address if ":" in address else f"{address}:{port}"
        self.log("join", f"({cluster}) joining", addresses=[address])
        try:
            await pool.join(target, given=address)
        except RpcError:
            return  # the pool logged it

    async def _wan_flood(self) -> None:
        """Consul's WAN flood: every server of this datacenter seen in the LAN pool is joined in
        the WAN pool too, so ``?dc`` routes appear without a ``-join-wan`` on each server.
        Consul floods on each LAN member join; a quarter-second look is as prompt."""
        node = self.node
        while True:
            await trio.sleep(0.25)
            if node.lan_pool is None or node.wan_pool is None or not node.running:
                continue
            wan = {m.addr for m in node.wan_pool.members()}
            for m in node.lan_pool.members():
                if (
                    m.status == STATUS_ALIVE
                    and m.tags.get("role") == "consul"
                    and m.addr not in wan
                ):
                    with contextlib.suppress(RpcError):
                        node.wan_pool.start_join(f"{m.addr}:{SERF_WAN_PORT}")

    # ---- bootstrap_expect (Consul's maybeBootstrap) --------------------------------------------
    async def _bootstrap_expect(self) -> None:
        node = self.node
        expect = self.cfg.bootstrap_expect
        while True:
            await trio.sleep(0.5)
            core = node.core
            if core is None or not node.running or node.lan_pool is None:
                continue
            if core.term != 0 or core.last_index != 0:
                if core.term != 0 and core.last_index != 0 and core.configuration.servers:
                    return  # data from an earlier start, or a leader added us
                continue
            servers = []
            conflict = None
            for m in node.lan_pool.members():
                if m.tags.get("role") != "consul" or m.tags.get("dc") != node.datacenter:
                    continue
                if m.status != STATUS_ALIVE:
                    continue
                if m.tags.get("bootstrap") == "1":
                    conflict = f"Member {m.name} has bootstrap mode. Expect disabled."
                    break
                if m.tags.get("expect") != str(expect):
                    conflict = (
                        f"Member {m.name} has a conflicting expect value. All nodes should "
                        "expect the same number."
                    )
                    break
                servers.append(m)
            if conflict:
                self.log("bootstrap", conflict, level="ERROR")
                return
            if len(servers) < expect:
                continue
            addresses = [f"{m.addr}:{m.tags.get('port', RPC_PORT)}" for m in servers]
            reachable, existing = await self._peers_elsewhere(addresses)
            if not reachable:
                continue
            if existing is not None and sorted(existing[1]) != sorted(addresses):
                self.log(
                    "bootstrap",
                    f"Existing Raft peers reported by {existing[0]}, disabling bootstrap mode",
                    level="WARN",
                )
                return
            # Nobody has peers, or one of the expected servers bootstrapped a moment earlier with
            # exactly this set: every server bootstraps with the same configuration, as Consul's
            # servers do when their serf events arrive together.
            if core.term != 0 or core.last_index != 0:
                continue  # a leader reached us meanwhile
            protocol = self.cfg.raft_protocol
            configuration = Configuration(
                tuple(
                    Server(m.tags.get("id", "") if protocol >= 3 else a, a)
                    for m, a in sorted(zip(servers, addresses, strict=True), key=lambda x: x[1])
                )
            )
            self.events.emit(
                node.name,
                "bootstrap_expect",
                {"peers": ",".join(sorted(addresses))},
                subsystem="agent.server",
                message="Found expected number of peers, attempting bootstrap",
            )
            core.bootstrap(configuration)
            node.flush_raft()
            return

    async def _peers_elsewhere(
        self, addresses: list[str]
    ) -> tuple[bool, tuple[str, list[str]] | None]:
        """(could every other server be asked, (the first one reporting Raft peers, its peers)).
        Status.Peers is answered locally, leader or not."""
        for address in addresses:
            if address == self.node.address:
                continue
            try:
                peers = await self.node.call(address, "Status.Peers", {}, timeout=2.0)
            except Exception:  # unreachable right now: ask again on the next pass
                return False, None
            if peers:
                return True, (address, list(peers))
        return True, None


def control_app(agent: Agent) -> Any:
    """``consim up --processes``' fault channel: FaultModel operations on this process's network
    and the server's status, JSON over HTTP on ``$CONSIM_AGENT_CONTROL`` (with ``GET /view`` for
    scenario runs, consim.agent.view)."""
    from quart import request
    from quart_trio import QuartTrio

    from consim.agent.view import events_since, server_view

    app = QuartTrio("consim-agent-control")

    @app.route("/status", methods=["GET"])
    async def status() -> Any:
        return json.dumps(agent.node.status()), 200, {"Content-Type": "application/json"}

    @app.route("/view", methods=["GET"])
    async def view() -> Any:
        out = server_view(agent.node)
        after = request.args.get("after")
        if after is not None:
            out["events"] = events_since(agent.events, int(after) if after.isdigit() else 0)
        # default=str: one event field JSON cannot carry must not freeze the parent's view.
        return json.dumps(out, default=str), 200, {"Content-Type": "application/json"}

    @app.route("/record", methods=["POST"])
    async def record() -> Any:
        # consim check: {"applies": true} records every applied entry from now on (the events
        # GET /view hands over), false stops.
        body = await request.get_json(force=True, silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("applies"), bool):
            return 'expected {"applies": true|false}', 400, {"Content-Type": "text/plain"}
        agent.node.record_applies = body["applies"]
        return "true", 200, {"Content-Type": "application/json"}

    @app.route("/faults", methods=["POST"])
    async def faults() -> Any:
        error = apply_fault(agent, await request.get_json(force=True, silent=True) or {})
        if error is not None:
            return error, 400, {"Content-Type": "text/plain"}
        return "true", 200, {"Content-Type": "application/json"}

    return app


def apply_fault(agent: Agent, body: Any) -> str | None:
    """One fault operation ``{"op", "args", "all"}`` on the agent's network; the error or None."""
    op = body.get("op") if isinstance(body, dict) else None
    args = body.get("args", []) if isinstance(body, dict) else None
    if op not in FAULT_OPS or not isinstance(args, list):
        return f"unknown fault operation {op!r}"
    kwargs = {"all": True} if op == "heal" and body.get("all") else {}
    try:
        getattr(agent.net.faults, op)(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        return str(exc)
    agent.log("fault", f"network fault: {op}", args=args)
    return None


# ---- entry point ----------------------------------------------------------------------------


def _leaf(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first ``kind`` inside (nested) exception groups, or None."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for e in exc.exceptions:
            found = _leaf(e, kind)
            if found is not None:
                return found
    return None


def _standby() -> bool:
    """Import the agent's modules, then wait for the go line ``{"faults": [...]}`` (the faults in
    force now; ``record``, ``incarnation``: as RECORD_ENV, INCARNATION_ENV); nothing is read from
    the data dir before it. False: the parent went away."""
    import consim.http.app  # noqa: F401 - what Agent.run imports, loaded before the go
    import consim.http.serve  # noqa: F401
    import consim.net.sockets  # noqa: F401
    import consim.server.agent  # noqa: F401
    import consim.storage.sqlite  # noqa: F401

    line = sys.stdin.readline()
    if not line.strip():
        return False
    go = json.loads(line)
    os.environ[FAULTS_ENV] = json.dumps(go.get("faults", []))
    os.environ[RECORD_ENV] = "1" if go.get("record") else ""
    os.environ[INCARNATION_ENV] = str(go.get("incarnation", ""))
    return True


def run_agent(argv: list[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """``consim agent ARGS``: Consul's exit codes (1 for bad flags or config, and for a
    shutdown without leave; 0 after a graceful leave)."""
    from consim.agent.config import FlagError, HelpRequested, build, usage
    from consim.live import address_in_use

    if os.environ.get(STANDBY_ENV) and not _standby():
        return 0
    try:
        cfg = build(argv)
    except HelpRequested:
        print(
            "Usage: consim agent [options]\n\n  Starts one Consul server (see README).\n", file=out
        )
        print(usage(), file=out)
        return 0
    except FlagError as exc:
        # Go's flag package prints the error and the defaults, then Consul its own line.
        print(str(exc), file=err)
        print(usage(), file=err)
        print(f"error parsing flags: {exc}", file=err)
        return 1
    except ConfigError as exc:
        print(str(exc), file=err)
        return 1
    for warning in cfg.warnings:
        print(warning, file=err)
    pid_file = Path(cfg.pid_file) if cfg.pid_file else None
    try:
        host = agent_host(cfg)
        data_dir = Path(cfg.data_dir)
        node_id = node_id_for(cfg, data_dir)
        check_ports(host, cfg.client_addr, cfg.http_port)
        if pid_file is not None:
            pid_file.parent.mkdir(parents=True, exist_ok=True)
            pid_file.write_text(str(os.getpid()))
        print(banner(cfg, host, node_id), file=out, flush=True)

        async def main() -> int:
            return await Agent(cfg, host, node_id, out).run()

        tune_for_serving()  # a server's process (consim.gc_tuning)
        try:
            return trio.run(main)
        except BaseException as exc:
            in_use = address_in_use(exc)
            if in_use is not None:
                raise AgentStartError(
                    f"{in_use} (another agent on this address? change -bind)"
                ) from None
            recovery = _leaf(exc, RecoveryError)
            if recovery is not None:
                # A bad peers.json: Consul refuses to start and keeps the file.
                raise AgentStartError(
                    f"Failed to start Consul server: Failed to start Raft: {recovery}"
                ) from None
            failed = _leaf(exc, ServerFailed)
            if failed is not None:
                print(f"==> Consul server stopped on an internal error: {failed}", file=err)
                return 1
            raise
    except (AgentStartError, OSError) as exc:
        print(f"==> Error starting agent: {exc}", file=err)
        return 1
    except KeyboardInterrupt:
        return 1
    finally:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
