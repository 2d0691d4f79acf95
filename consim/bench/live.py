"""``consim bench forwarding --live``: the real cost of consim's HTTP and RPC paths on loopback.

The cluster ``consim up`` runs (``consim.live.serve_cluster``, raft multiplier 1; dc1 and, for the
``dc`` target, dc2) serves from a child process, with two framework floors in the same trio loop:

  floor         a bare quart-trio app (one route, a constant body) on plain hypercorn
  floor-consim  the same app on consim's HTTP server (hypercorn with the Go layer)

and ``floor-alone`` (the bare app in a process of its own, for reference). direct/floor compares
consim's request path with the framework's under the same conditions (same process, same idle
cluster beside it); floor-consim/floor is what consim's layer over hypercorn costs.

Load comes from another process (``wrk`` when installed, else ``consim.bench.loadgen``), one
target at a time, ``runs`` times, interleaved (every other run in reverse), so the two sides of a
ratio are measured back to back and a change in the machine's other load mostly cancels out of
it. CPU per request is the serving process's user+system time (Linux ``/proc``) over the answered
requests.

Servers: dc1 on 127.0.B.1-3, dc2 on 127.0.B+1.1-3, floors on 127.0.B.9-11: B = 0 (``consim up``'s
layout) or the first free block of 80-98 when those ports are taken.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from consim.bench.loadgen import run_builtin, run_wrk, wrk_available
from consim.bench.targets import LIVE_EXTRA, BenchResult, target_paths
from consim.spec import ClusterSpec, NetworkModel

FLOOR_K = 9  # the floor served from the cluster's process
FLOOR_ALONE_K = 10  # the floor in a process of its own
FLOOR_CONSIM_K = 11  # the floor's app on consim.http.serve, in the cluster's process
LIVE_TARGETS = ("floor-consim", "floor", "direct", "forwarded", "stale", "dc", "floor-alone")


def host(block: int, k: int) -> str:
    return f"127.0.{block}.{k}"


def choose_block(
    http_port: int, datacenters: int, bases: Iterable[int] = (0, *range(80, 99))
) -> int:
    """127.0.0.x like ``consim up``; if another cluster holds it, the first free 127.0.80-98.x
    (every server host of every datacenter, and the floors' hosts)."""
    from consim.live import ports_free

    for block in bases:
        hosts = [host(block + d, k) for d in range(datacenters) for k in (1, 2, 3)]
        hosts += [host(block, k) for k in (FLOOR_K, FLOOR_ALONE_K, FLOOR_CONSIM_K)]
        if all(ports_free(h, http_port) for h in hosts):
            return block
    raise RuntimeError("no free 127.0.N.x block found; pass --host-block")


def floor_app() -> Any:
    """The framework floor: a bare quart-trio app, one route, a constant JSON body."""
    from quart_trio import QuartTrio

    app = QuartTrio("floor")

    @app.route("/hello")
    async def hello() -> Any:
        return b'"hello"', 200, {"Content-Type": "application/json"}

    return app


async def serve_plain_hypercorn(app: Any, address: str, *, task_status: Any = None) -> None:
    """``app`` on hypercorn as it comes (default ``Config``, only the bind and logs set)."""
    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = [address]
    config.accesslog = None
    config.errorlog = None
    await serve(
        app,
        config,
        shutdown_trigger=trio.sleep_forever,  # type: ignore[arg-type]
        task_status=task_status or trio.TASK_STATUS_IGNORED,
    )


def cluster_server(spec: ClusterSpec, block: int) -> None:
    """The child process: ``consim up``'s cluster plus the two floors in the same trio loop."""
    import trio

    from consim.http.serve import serve_http
    from consim.live import serve_cluster

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def stop_on_signal() -> None:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(stop_on_signal)
                port = spec.http_port
                floor, floor_consim = host(block, FLOOR_K), host(block, FLOOR_CONSIM_K)
                await nursery.start(serve_plain_hypercorn, floor_app(), f"{floor}:{port}")
                await nursery.start(serve_http, floor_app(), f"{floor_consim}:{port}")
                with open(os.devnull, "w") as out:
                    await serve_cluster(spec, log_level="ERROR", out=out)

    trio.run(main)


def floor_server(address: str) -> None:
    import trio

    trio.run(serve_plain_hypercorn, floor_app(), address)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (Linux /proc; nan elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - our own loopback
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait(
    url: str,
    ok: Callable[[int, bytes], bool],
    within: float,
    what: str,
    alive: Callable[[], str | None] = lambda: None,
) -> bytes:
    deadline = time.monotonic() + within
    last = "no answer"
    while time.monotonic() < deadline:
        died = alive()
        if died is not None:
            raise RuntimeError(f"{what}: the cluster process exited: {died}")
        try:
            status, body = _get(url)
            if ok(status, body):
                return body
            last = f"{status} {body[:80]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{what}: {url} within {within:.0f}s (last: {last})")


def _has_leader(status: int, body: bytes) -> bool:
    return status == 200 and bool(json.loads(body or b'""'))


def run_live_bench(
    *,
    targets: tuple[str, ...] = LIVE_TARGETS,
    endpoint: str = "/v1/operator/raft/configuration",
    consistency: str = "default",
    connections: int | None = 16,
    rate: float | None = None,
    duration: float = 3.0,
    runs: int = 3,
    model: NetworkModel | None = None,
    http_port: int = 18700,
    host_block: int | None = None,
    seed: int = 1,
    tool: str = "auto",
    progress: Callable[[str], None] | None = None,
    warmup: float = 1.0,
) -> BenchResult:
    """Start the servers, warm every target up (``warmup`` seconds of load each), measure, stop
    the servers."""
    if rate is not None and tool == "wrk":
        raise ValueError("wrk has no fixed rate; use the built-in load generator for --rate")
    use_wrk = tool == "wrk" or (tool == "auto" and rate is None and wrk_available())
    if tool == "wrk" and not wrk_available():
        raise RuntimeError("wrk is not installed")
    n_dc = 2 if "dc" in targets else 1
    block = choose_block(http_port, n_dc) if host_block is None else host_block
    datacenters = (("dc1", 3), ("dc2", 3))[:n_dc]
    spec_json = json.dumps(
        {
            "datacenters": datacenters,
            "seed": seed,
            "http_port": http_port,
            "host_block": block,
            "network": asdict(model) if model is not None else None,
        }
    )
    runtime = tempfile.mkdtemp(prefix="consim-bench-")
    env = {**os.environ, "XDG_RUNTIME_DIR": runtime}
    me = [sys.executable, "-m", "consim.bench.live"]
    procs: list[subprocess.Popen[bytes]] = []
    errors_path = Path(runtime) / "cluster.stderr"
    with errors_path.open("wb") as errors_file:
        cluster = subprocess.Popen(
            [*me, "cluster", spec_json, str(block)],
            stdout=subprocess.DEVNULL,
            stderr=errors_file,
            env=env,
        )
    procs.append(cluster)

    def cluster_died() -> str | None:
        if cluster.poll() is None:
            return None
        lines = errors_path.read_text(errors="replace").splitlines()
        # The exception's own line (a traceback of an exception group ends in box lines).
        said = [ln.strip(" |+-") for ln in lines if ln.strip(" |+-")]
        errors = [ln for ln in said if "Error" in ln or "error" in ln]
        return (errors or said or [f"exit status {cluster.returncode}"])[-1]

    floor_alone = None
    if "floor-alone" in targets:
        floor_alone = subprocess.Popen(
            [*me, "floor", f"{host(block, FLOOR_ALONE_K)}:{http_port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(floor_alone)
    result = BenchResult(
        "live",
        endpoint,
        consistency,
        {
            "network": model.describe() if model is not None else "loopback, no added delay",
            "connections": connections,
            "rate": rate,
            "duration_s": duration,
            "runs": runs,
            "load_generator": "wrk" if use_wrk else "builtin",
            "cpus": os.cpu_count(),
            "clock": "wall seconds",
        },
        {name: [] for name in targets},
    )
    try:
        base = f"http://{host(block, 1)}:{http_port}"
        leader = json.loads(
            _wait(f"{base}/v1/status/leader", _has_leader, 60, "no dc1 leader", cluster_died)
        )
        leader_host = leader.split(":")[0]
        follower_host = next(h for h in (host(block, k) for k in (1, 2, 3)) if h != leader_host)
        if "dc" in targets:
            _wait(f"{base}/v1/status/leader?dc=dc2", _has_leader, 60, "no route to dc2's leader")
        paths = target_paths(endpoint, consistency)
        urls: dict[str, tuple[str, int]] = {}
        for name in targets:
            if name in ("floor", "floor-consim", "floor-alone"):
                k = {
                    "floor": FLOOR_K,
                    "floor-consim": FLOOR_CONSIM_K,
                    "floor-alone": FLOOR_ALONE_K,
                }[name]
                pid = floor_alone.pid if name == "floor-alone" and floor_alone else cluster.pid
                urls[name] = (f"http://{host(block, k)}:{http_port}/hello", pid)
            else:
                on = leader_host if name in ("direct", "dc") else follower_host
                urls[name] = (f"http://{on}:{http_port}{paths[name]}", cluster.pid)
        for name, (url, _) in urls.items():  # every target answers before anything is measured
            _wait(url, lambda s, b: s in (200, 404), 30, f"{name} never answered")

        def load(url: str, seconds: float) -> Any:
            if use_wrk:
                return run_wrk(url, seconds, connections or 16)
            return run_builtin(url, seconds, connections or 16, rate)

        for url, _ in urls.values():
            load(url, warmup)
        for run in range(1, runs + 1):
            order = list(urls.items())
            for name, (url, pid) in order if run % 2 else list(reversed(order)):
                cpu0 = cpu_seconds(pid)
                figures = load(url, duration)
                answered = figures.summary()["requests"] or 0
                cpu = cpu_seconds(pid) - cpu0
                figures.cpu_us_per_request = cpu / answered * 1e6 if answered else None
                result.runs[name].append(figures)
                if progress is not None:
                    s = figures.summary()
                    progress(
                        f"run {run}  {name:<12} {s['rps'] or 0:>7.0f} req/s  p50 {s['p50_ms']} ms  "
                        f"p99 {s['p99_ms']} ms  cpu {s.get('cpu_us_per_request')} us/req  "
                        f"errors {s['errors']}  ({figures.tool})"
                    )
        if use_wrk:
            result.notes.append(
                "wrk gives percentiles, not each request: no latency-over-time plot "
                "(--load-generator builtin has one)"
            )
        now = json.loads(_wait(f"{base}/v1/status/leader", _has_leader, 30, "no dc1 leader"))
        if now != leader:
            result.notes.append("WARNING: dc1's leadership changed during the measurement")
        result.notes.append(
            f"leader {leader_host}, follower {follower_host}; load average "
            + " ".join(f"{x:.2f}" for x in os.getloadavg())
        )
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        import shutil

        shutil.rmtree(runtime, ignore_errors=True)
    return result


def _main(argv: list[str]) -> None:
    if argv[0] == "cluster":
        raw = json.loads(argv[1])
        network = raw["network"]
        spec = ClusterSpec(
            datacenters=tuple((dc, n) for dc, n in raw["datacenters"]),
            seed=raw["seed"],
            raft_multiplier=1.0,
            http_port=raw["http_port"],
            host_block=raw["host_block"],
            network=NetworkModel(
                **{k: tuple(map(tuple, v)) if k == "wan" else v for k, v in network.items()}
            )
            if network
            else None,
        )
        cluster_server(spec, int(argv[2]))
    elif argv[0] == "floor":
        floor_server(argv[1])
    else:
        raise SystemExit(f"unknown role {argv[0]!r}")


if __name__ == "__main__":
    _main(sys.argv[1:])


__all__ = ["LIVE_EXTRA", "LIVE_TARGETS", "run_live_bench"]
