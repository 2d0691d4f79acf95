"""Live mode: the same Cluster on real sockets, the real clock, and hypercorn on every server.

``consim up`` runs :func:`serve_cluster`. It also serves a small control API (JSON over HTTP on
``127.0.0.1:<http-port + 99>``, so 8599 by default) that ``consim ctl`` talks to, and writes the
control address to a state file (see :func:`control_file`) so ``consim ctl`` finds the cluster
without flags. ``CONSIM_CONTROL=host:port`` or ``consim ctl --control host:port`` override it.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

import trio

from consim.cluster import Cluster, ClusterError
from consim.events import Event, EventLog, format_hclog, level_enabled
from consim.raft.recovery import RecoveryError
from consim.server.config import ClusterSpec

CONTROL_PORT_OFFSET = 99


def control_file() -> Path:
    """Where ``consim up`` records its control address: ``$XDG_RUNTIME_DIR/consim/up.json``, or
    ``<tmp>/consim-<uid>/up.json``."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / "consim" / "up.json"
    return Path(tempfile.gettempdir()) / f"consim-{os.getuid()}" / "up.json"


def ports_free(host: str, http_port: int) -> bool:
    """Can a server bind RPC (tcp 8300), serf LAN/WAN (udp 8301/8302) and HTTP on ``host``?"""
    for kind, port in (
        (socket.SOCK_STREAM, 8300),
        (socket.SOCK_STREAM, http_port),
        (socket.SOCK_DGRAM, 8301),
        (socket.SOCK_DGRAM, 8302),
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


def start_live_cluster_parts(spec: ClusterSpec) -> tuple[Cluster, EventLog]:
    from consim.net.sockets import SocketNetwork

    events = EventLog(trio.current_time)
    network = SocketNetwork(random.Random(spec.seed * 7919 + 1))
    cluster = Cluster(spec, network=network, events=events, live=True)
    return cluster, events


def print_events(events: EventLog, out: TextIO, log_level: str) -> Callable[[], None]:
    wall_offset = _wall_offset()

    def show(event: Event) -> None:
        if level_enabled(event.level, log_level):
            shifted = Event(
                event.time + wall_offset,
                event.node,
                event.kind,
                {"node": event.node, **event.fields},
                event.level,
                event.subsystem,
                event.message,
            )
            print(format_hclog(shifted, virtual=False), file=out, flush=True)

    return events.subscribe(show)


def _wall_offset() -> float:
    import time

    return time.time() - trio.current_time()


def control_app(cluster: Cluster) -> Any:
    """JSON control API for ``consim ctl``: POST /ctl/<action> with a JSON body."""
    from quart import request
    from quart_trio import QuartTrio

    app = QuartTrio("consim-control")

    @app.route("/ctl/status", methods=["GET"])
    async def status() -> Any:
        return json.dumps(cluster.status()), 200, {"Content-Type": "application/json"}

    @app.route("/ctl/<action>", methods=["POST"])
    async def act(action: str) -> Any:
        body = await request.get_json(force=True, silent=True) or {}
        try:
            await apply_control(cluster, action, body)
        except (ClusterError, KeyError, ValueError, RecoveryError) as exc:
            return str(exc), 400, {"Content-Type": "text/plain"}
        return json.dumps(cluster.status()), 200, {"Content-Type": "application/json"}

    return app


async def apply_control(cluster: Cluster, action: str, body: dict[str, Any]) -> None:
    node = body.get("node", "")
    if action == "kill":
        cluster.kill(node)
    elif action == "restart":
        await cluster.restart(node)
    elif action == "stop":
        await cluster.stop(node)
    elif action == "pause":
        cluster.pause(node)
    elif action == "resume":
        cluster.resume(node)
    elif action == "isolate":
        cluster.isolate(node)
    elif action == "partition":
        cluster.partition([list(g) for g in body["groups"]])
    elif action == "heal":
        cluster.heal()
    elif action == "delay":
        cluster.set_delay(body["src"], body["dst"], float(body["seconds"]))
    elif action == "loss":
        cluster.set_loss(body["src"], body["dst"], float(body["probability"]))
    else:
        raise ValueError(f"unknown action {action!r}")


async def serve_cluster(
    spec: ClusterSpec, *, log_level: str = "INFO", out: TextIO = sys.stdout
) -> None:
    """``consim up``: run until cancelled (Ctrl-C / SIGTERM)."""
    from consim.http.serve import serve_http

    cluster, events = start_live_cluster_parts(spec)
    print_events(events, out, log_level)
    control_address = f"127.0.0.1:{spec.http_port + CONTROL_PORT_OFFSET}"
    print(_server_table(cluster), file=out, flush=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(cluster.net.run)
        await nursery.start(cluster.run)
        await nursery.start(serve_http, control_app(cluster), control_address)
        path = control_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"control": control_address, "pid": os.getpid()}))
        print(
            f"==> Control API on http://{control_address} (consim ctl finds it via {path})",
            file=out,
            flush=True,
        )
        for dc in spec.datacenter_names():
            nursery.start_soon(_announce_leader, cluster, dc, out)
        try:
            await trio.sleep_forever()
        finally:
            path.unlink(missing_ok=True)


async def _announce_leader(cluster: Cluster, dc: str, out: TextIO) -> None:
    leader = await cluster.wait_for_leader(dc, within=3600)
    print(f"==> {dc} has a leader: {leader.name} ({leader.address})", file=out, flush=True)


def _server_table(cluster: Cluster) -> str:
    rows = [("Node", "Datacenter", "RPC", "Serf LAN", "Serf WAN", "HTTP")]
    for node in cluster.servers.values():
        s = node.spec
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
