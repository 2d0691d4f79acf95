"""Live mode: the same Cluster on real sockets, the real clock, and consim's HTTP server on every server.

``consim up`` runs :func:`serve_cluster`. It also serves a small control API (JSON over HTTP on
``127.0.0.1:<http-port + 99>``, so 8599 by default) that ``consim ctl`` talks to, and writes the
control address to a state file (see :func:`control_file`) so ``consim ctl`` finds the cluster
without flags. ``CONSIM_CONTROL=host:port`` or ``consim ctl --control host:port`` override it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

import trio

from consim.cluster import Cluster, ClusterError
from consim.events import Event, EventLog, level_enabled, node_log_line
from consim.raft.recovery import RecoveryError
from consim.runtime import start_live_cluster_parts
from consim.scenario.context import role_server
from consim.spec import ClusterSpec, ServerSpec

CONTROL_PORT_OFFSET = 99


def control_dir() -> Path:
    """Where ``consim up`` records its control address: ``$XDG_RUNTIME_DIR/consim/``, or
    ``<tmp>/consim-<uid>/``."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / "consim"
    return Path(tempfile.gettempdir()) / f"consim-{os.getuid()}"


def control_file() -> Path:
    """``up.json``: the control address of the latest ``consim up`` (a pointer; every running
    cluster also has its own ``up-<host>-<port>.json`` beside it, see :func:`record_control`)."""
    return control_dir() / "up.json"


def _own_control_file(control: str) -> Path:
    return control_dir() / f"up-{control.replace(':', '-')}.json"


def record_control(control: str) -> Path:
    """Write this cluster's state file and point ``up.json`` at it. Two clusters sharing a runtime
    dir (different ``--http-port``) each keep their own file, so neither loses the other."""
    d = control_dir()
    d.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"control": control, "pid": os.getpid()})
    own = _own_control_file(control)
    own.write_text(text)
    control_file().write_text(text)
    return own


def forget_control(control: str) -> None:
    """Remove this cluster's state file; ``up.json`` too if it still points here (at another
    running cluster otherwise)."""
    _own_control_file(control).unlink(missing_ok=True)
    pointer = control_file()
    try:
        current = json.loads(pointer.read_text()).get("control")
    except (OSError, ValueError, AttributeError):
        current = None
    if current == control:
        alive = running_controls()
        if alive:
            pointer.write_text(json.dumps(alive[-1]))
        else:
            pointer.unlink(missing_ok=True)


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_controls() -> list[dict[str, Any]]:
    """Every recorded ``consim up`` whose process is still alive, oldest file first."""
    found = []
    for f in control_dir().glob("up-*.json"):
        try:  # a cluster may remove its file while we look
            found.append((f.stat().st_mtime, json.loads(f.read_text())))
        except (OSError, ValueError):
            continue
    out = []
    for _, info in sorted(found, key=lambda x: x[0]):
        alive = isinstance(info, dict) and _pid_alive(info.get("pid"))
        if alive and isinstance(info.get("control"), str):
            out.append(info)
    return out


class ControlNotFound(Exception):
    """No single running ``consim up`` to talk to; the message says what to do."""


def find_control() -> str:
    """The control address ``consim ctl`` should use: the one running cluster, or an error that
    lists them when several are running (``--control`` / ``CONSIM_CONTROL`` pick one)."""
    alive = running_controls()
    if len(alive) == 1:
        return str(alive[0]["control"])
    if len(alive) > 1:
        listed = ", ".join(f"{a['control']} (pid {a['pid']})" for a in alive)
        raise ControlNotFound(
            f"{len(alive)} 'consim up' clusters are running: {listed}; "
            "pick one with --control HOST:PORT or CONSIM_CONTROL=HOST:PORT"
        )
    # A state file written before per-cluster files existed, or by a process we cannot see.
    pointer = control_file()
    try:
        info = json.loads(pointer.read_text())
    except OSError:
        raise ControlNotFound(f"no running 'consim up' found ({pointer} is missing)") from None
    except ValueError:
        raise ControlNotFound(f"no running 'consim up' found ({pointer} is unreadable)") from None
    if not _pid_alive(info.get("pid")):
        raise ControlNotFound(
            f"no running 'consim up' found ({pointer} names pid {info.get('pid')}, which is gone)"
        )
    return str(info["control"])


def ports_free(host: str, http_port: int) -> bool:
    """Can a server bind RPC (tcp 8300), serf LAN/WAN (udp and tcp 8301/8302: memberlist's
    push-pull is TCP on the same port) and HTTP on ``host``?"""
    for kind, port in (
        (socket.SOCK_STREAM, 8300),
        (socket.SOCK_STREAM, http_port),
        (socket.SOCK_DGRAM, 8301),
        (socket.SOCK_DGRAM, 8302),
        (socket.SOCK_STREAM, 8301),
        (socket.SOCK_STREAM, 8302),
    ):
        s = socket.socket(socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_host_block(
    servers_per_datacenter: Iterable[int], http_port: int, candidates: Iterable[int]
) -> int:
    """The first ``host_block`` whose ``127.0.<block + d>.1..n`` can all be bound: where a live
    cluster can go when another one (a ``consim up``, a test run) already holds some addresses."""
    counts = list(servers_per_datacenter)
    for block in candidates:
        if all(
            ports_free(f"127.0.{block + d}.{k}", http_port)
            for d, n in enumerate(counts)
            for k in range(1, n + 1)
        ):
            return block
    raise RuntimeError(f"no free 127.0.N.x block for a live cluster of {counts} servers")


# What `consim up` keeps of its event log (it prints every event as it happens).
UP_MAX_EVENTS = 10_000


def print_events(events: EventLog, out: TextIO, log_level: str) -> Callable[[], None]:
    wall_offset = _wall_offset()

    def show(event: Event) -> None:
        if level_enabled(event.level, log_level):
            print(node_log_line(event, shift=wall_offset, virtual=False), file=out, flush=True)

    return events.subscribe(show)


def _wall_offset() -> float:
    import time

    return time.time() - trio.current_time()


# Roles ``consim ctl`` takes where a node name goes, as scenario files name them. ``leader@dc2``
# picks another datacenter (default: the first one).
CONTROL_ROLES = ("leader", "follower", "any", "old-leader", "last-killed")


class Controller:
    """What ``consim ctl`` asks of a running cluster. Remembers the last server killed or stopped
    and the leader the last fault hit, so ``last-killed`` and ``old-leader`` mean what they mean
    in a scenario file."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.last_killed: str | None = None
        self.old_leader: str | None = None

    def resolve(self, target: Any) -> str:
        """A server name, or a role resolved now; ``ClusterError`` says what is wrong."""
        if not isinstance(target, str) or not target:
            raise ClusterError(f"expected a server name or a role, got {target!r}")
        role, _, dc = target.partition("@")
        dc = dc or self.cluster.spec.datacenter_names()[0]
        if dc not in self.cluster.spec.datacenter_names():
            raise ClusterError(
                f"no datacenter named {dc!r}; known: {', '.join(self.cluster.spec.datacenter_names())}"
            )
        if role not in CONTROL_ROLES:
            if "@" in target:
                raise ClusterError(f"{target!r}: only roles take @DC ({', '.join(CONTROL_ROLES)})")
            self.cluster.node(target)  # ClusterError naming the known servers
            return target
        if role in ("leader", "follower", "any"):
            server = role_server(self.cluster, role, dc)
            if server is not None:
                return server
            if role == "any":
                raise ClusterError(f"no server of {dc} is running")
            raise ClusterError(f"{dc} has no {role} right now")
        name = self.old_leader if role == "old-leader" else self.last_killed
        if name is None:
            what = "no leader has been hit by a fault" if role == "old-leader" else "no server"
            raise ClusterError(f"{role}: {what} has been killed or stopped through consim ctl yet")
        return name

    def _hit(self, names: list[str]) -> None:
        for name in names:
            if self.cluster.node(name).is_leader():
                self.old_leader = name

    def _link_end(self, target: Any) -> str:
        """``*``, a datacenter's name (all its servers) or a server/role."""
        if target == "*" or target in self.cluster.spec.datacenter_names():
            return str(target)
        return self.resolve(target)

    async def apply(self, action: str, body: dict[str, Any]) -> None:
        c = self.cluster
        if action in ("kill", "restart", "stop", "pause", "resume", "isolate"):
            name = self.resolve(body.get("node"))
            if action in ("kill", "stop", "pause", "isolate"):
                self._hit([name])
            if action == "kill":
                c.kill(name)
            elif action == "restart":
                await c.restart(name)
            elif action == "stop":
                await c.stop(name)
            elif action == "pause":
                c.pause(name)
            elif action == "resume":
                c.resume(name)
            else:
                c.isolate(name)
            if action in ("kill", "stop"):
                self.last_killed = name
        elif action == "partition":
            groups = body.get("groups")
            if not isinstance(groups, list) or len(groups) < 2:
                raise ClusterError("partition needs at least two groups")
            resolved: list[list[str]] = []
            for group in groups:
                if not isinstance(group, list) or not group:
                    raise ClusterError(f"partition: expected a non-empty group, got {group!r}")
                if group == ["others"]:
                    resolved.append(group)
                elif "others" in group:
                    raise ClusterError("partition: 'others' must be a group of its own")
                else:
                    resolved.append([self.resolve(t) for t in group])
            named = {n for g in resolved for n in g}
            rest = sorted(c.servers.keys() - named)
            resolved = [rest if g == ["others"] else g for g in resolved]
            self._hit([n for g in resolved for n in g])
            c.partition(resolved)
        elif action == "block":
            src, dst = self.resolve(body.get("src")), self.resolve(body.get("dst"))
            c.block(src, dst)
        elif action == "heal":
            # ctl heal puts the network back as it was: cuts, blocks, loss and delay.
            c.heal(all=True)
        elif action in ("delay", "loss"):
            key = "seconds" if action == "delay" else "probability"
            value = body.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ClusterError(f"{action}: {key} must be a number, got {value!r}")
            src, dst = self._link_end(body.get("src")), self._link_end(body.get("dst"))
            if action == "delay":
                c.set_delay(src, dst, float(value))
            else:
                c.set_loss(src, dst, float(value))
        else:
            raise ClusterError(f"unknown action {action!r}")


def control_app(cluster: Cluster, controller: Controller | None = None, ui: Any = None) -> Any:
    """JSON control API for ``consim ctl``: POST /ctl/<action> with a JSON body. With ``ui``
    (``consim.ui.live.LiveUI``) it serves the page at /ui/ too, on an address no kill takes away."""
    from quart import request
    from quart_trio import QuartTrio

    app = QuartTrio("consim-control")
    controller = controller or Controller(cluster)

    if ui is not None:

        @app.route("/ui", methods=["GET", "POST", "OPTIONS"], strict_slashes=False)
        @app.route("/ui/", methods=["GET", "POST", "OPTIONS"])
        @app.route("/ui/<path:rest>", methods=["GET", "POST", "OPTIONS"])
        async def page(rest: str = "") -> Any:
            return await ui.handle(request._get_current_object())

    @app.route("/ctl/status", methods=["GET"])
    async def status() -> Any:
        return json.dumps(cluster.status()), 200, {"Content-Type": "application/json"}

    @app.route("/ctl/events", methods=["GET"])
    async def events() -> Any:
        log = cluster.events
        body = {"emitted": log.emitted, "kept": len(log.events), "max_events": log.max_events}
        return json.dumps(body), 200, {"Content-Type": "application/json"}

    @app.route("/ctl/<action>", methods=["POST"])
    async def act(action: str) -> Any:
        # JSON only: a web page of another origin can send a form or text/plain POST without a
        # CORS preflight, and must not be able to kill a server that way.
        if request.mimetype != "application/json":
            return "send Content-Type: application/json", 415, {"Content-Type": "text/plain"}
        body = await request.get_json(force=True, silent=True) or {}
        if not isinstance(body, dict):
            return "expected a JSON object", 400, {"Content-Type": "text/plain"}
        try:
            await controller.apply(action, body)
        except (ClusterError, ValueError, RecoveryError) as exc:
            return str(exc), 400, {"Content-Type": "text/plain"}
        return json.dumps(cluster.status()), 200, {"Content-Type": "application/json"}

    return app


async def apply_control(cluster: Cluster, action: str, body: dict[str, Any]) -> None:
    """One control action without remembered roles (a fresh :class:`Controller`)."""
    await Controller(cluster).apply(action, body)


class AddressInUse(Exception):
    """An address ``consim up`` needs is taken; the message is one line saying what to change."""


def address_in_use(exc: BaseException) -> OSError | None:
    """The first "address already in use" inside (nested) exception groups, if any: a listener
    that lost a race with another program after :func:`check_addresses` passed."""
    import errno

    if isinstance(exc, BaseExceptionGroup):
        for e in exc.exceptions:
            found = address_in_use(e)
            if found is not None:
                return found
        return None
    if isinstance(exc, OSError) and exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
        return exc
    return None


def check_addresses(spec: ClusterSpec, control_address: str | None = None) -> None:
    """Fail before starting anything when a server's ports or the control port are taken."""
    from consim.address import parse_address
    from consim.net.sockets import loopback_range_available

    if loopback_range_available():
        for s in spec.servers():
            if not ports_free(s.host, spec.http_port):
                hint = _free_block_hint(spec)
                raise AddressInUse(
                    f"{s.host} (ports 8300, 8301, 8302 or {spec.http_port}, for {s.name}) is "
                    f"already in use, by another consim up or a Consul agent; "
                    f"put this cluster on other addresses with --host-block N{hint}"
                )
    if control_address is None:
        return
    host, port = parse_address(control_address)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise AddressInUse(
                f"{control_address} (the control API, --http-port + {CONTROL_PORT_OFFSET}) is "
                f"already in use; pick another --http-port (and --host-block N if the "
                f"servers' addresses are taken too)"
            ) from None


def _free_block_hint(spec: ClusterSpec) -> str:
    counts = [n for _, n in spec.datacenters]
    try:
        block = free_host_block(counts, spec.http_port, range(spec.host_block + 1, 200))
    except RuntimeError:
        return ""
    return f" (--host-block {block} is free)"


async def serve_cluster(
    spec: ClusterSpec,
    *,
    log_level: str = "INFO",
    out: TextIO = sys.stdout,
    max_events: int = UP_MAX_EVENTS,
) -> None:
    """``consim up``: run until cancelled (Ctrl-C / SIGTERM), keeping the last ``max_events``.
    Raises :class:`AddressInUse` before starting anything when an address is taken."""
    from consim.http.serve import serve_http

    control_address = f"127.0.0.1:{spec.http_port + CONTROL_PORT_OFFSET}"
    check_addresses(spec, control_address)
    from consim.ui.live import LiveUI

    cluster, events = start_live_cluster_parts(spec, max_events=max_events)
    print_events(events, out, log_level)
    print(server_table(n.spec for n in cluster.servers.values()), file=out, flush=True)
    # One controller for consim ctl and the page: both remember the same last-killed/old-leader.
    controller = Controller(cluster)
    ui = LiveUI(cluster, controller, control_address=control_address)
    cluster.ui = ui  # before the servers start: each one's HTTP app serves /ui/ through it
    if spec.network is not None:
        print(f"==> Network model: {spec.network.describe()}", file=out, flush=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(ui.run)
        await nursery.start(cluster.net.run)
        await nursery.start(cluster.run)
        await nursery.start(serve_http, control_app(cluster, controller, ui), control_address)
        await serve_announced(
            nursery, cluster, control_address, "every server", _announce_leader, out
        )


async def serve_announced(
    nursery: trio.Nursery,
    cluster: Any,
    control_address: str,
    serves_ui: str,
    announce_leader: Callable[[Any, str, TextIO], Any],
    out: TextIO,
) -> None:
    """Once a cluster (one process, or ``--processes``) serves: record the control address for
    ``consim ctl``, say where it and the page are, announce each datacenter's leader, and run
    until cancelled (the record is removed on the way out)."""
    own = record_control(control_address)
    print(
        f"==> Control API on http://{control_address} (consim ctl finds it via {own})",
        file=out,
        flush=True,
    )
    first = next(iter(cluster.servers.values())).spec.http_address
    print(f"==> UI on http://{first}/ui/ ({serves_ui} serves it)", file=out, flush=True)
    for dc in cluster.spec.datacenter_names():
        nursery.start_soon(announce_leader, cluster, dc, out)
    try:
        await trio.sleep_forever()
    finally:
        forget_control(control_address)


async def _announce_leader(cluster: Cluster, dc: str, out: TextIO) -> None:
    leader = await cluster.wait_for_leader(dc, within=3600)
    print(f"==> {dc} has a leader: {leader.name} ({leader.address})", file=out, flush=True)


def server_table(specs: Iterable[ServerSpec]) -> str:
    """The addresses table ``consim up`` prints (one process or ``--processes``)."""
    rows = [("Node", "Datacenter", "RPC", "Serf LAN", "Serf WAN", "HTTP")]
    for s in specs:
        rows.append(
            (
                s.name,
                s.datacenter,
                s.rpc_address,
                s.serf_lan_address,
                s.serf_wan_address,
                s.http_address,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
