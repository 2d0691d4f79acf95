"""Cost of leader forwarding on GET /v1/operator/raft/configuration, against the framework floor.

Starts the cluster ``consim up`` runs (3 servers, one process, raft_multiplier 1, via
``consim.live.serve_cluster``) in a subprocess, and loads each target from a separate process
(``wrk`` if installed, else a built-in keep-alive load generator in its own process):

  direct       GET /v1/operator/raft/configuration on the leader
  forwarded    the same on a follower (follower -> leader RPC -> back)
  stale        the same on a follower with ?stale (answered locally)
  floor        GET /hello on a bare quart-trio app on plain hypercorn, served from the cluster's process
  floor-consim the same bare app on consim's HTTP server (``consim.http.serve``: hypercorn with
               Go's connection rules), from the cluster's process
  floor-alone  the bare app on plain hypercorn in a process of its own (for reference, not a target)

The floor is the framework's own ceiling: a quart-trio app with one route returning a constant,
on hypercorn as it comes (``hypercorn.trio.serve``, default ``Config``). floor-consim/floor is
what consim's layer over hypercorn costs per request. The gated ratio,
direct/floor, takes the floor served *from the cluster's process* (same trio loop, same core,
same interpreter and heap, the 3 Raft servers' heartbeats and gossip running beside it), so it
compares the two request paths under the same conditions and isolates what consim adds per
request. ``floor-alone`` runs the same app in a process with nothing else in it; direct/floor-alone
is printed too, and the difference between the two floors is the cost of sharing the process with
an idle cluster (background Raft/gossip work), which is not part of the request path.

The machine these run on is usually shared, so throughput is noisy: the targets are measured
``--runs`` times, interleaved (floor-consim, floor, direct, forwarded, stale, floor-alone, then the same in
reverse), so that the pairs in each ratio are measured back to back; each run's ratio is shown
and the median is the figure. Each row also shows the serving process's CPU time per request
(from /proc).

The servers listen on 127.0.0.1-3 like ``consim up`` (HTTP on ``--port``), or on the first free
127.0.80-99.x block if another cluster holds those ports (``--host-block N`` to choose); the floors
on .9 and .11 (cluster process: plain hypercorn, consim.http.serve) and .10 (own process) of the
same block.

Prints requests/s, p50 and p99 for each, the forwarded/direct and direct/floor ratios (each run's
ratio, then the median), the server CPU a forwarded request costs over a direct one (the price of
the follower -> leader RPC), and writes an SVG chart of the medians to
benchmarks/out/forwarding.svg.

    .venv/bin/python benchmarks/forwarding.py [--runs 5] [--duration 3] [--connections 16] [--port 18700]
"""

from __future__ import annotations

from _requires import require  # benchmarks/ is sys.path[0] when a script runs

require(__file__, "httpx")

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "out"


# ---- the servers (subprocesses of this script) ---------------------------------------------
# Servers on 127.0.<block>.1-3 (consim up's layout is block 0); the floors on .9 and .10.
FLOOR_K = 9  # the floor served from the cluster's process
FLOOR_ALONE_K = 10  # the floor in a process of its own
FLOOR_CONSIM_K = 11  # the floor's app on consim.http.serve, in the cluster's process


def host(block: int, k: int) -> str:
    return f"127.0.{block}.{k}"


def ports_free(block: int, http_port: int) -> bool:
    """Can 127.0.<block>.1-3 take a server's ports, and .9/.10 the floors' HTTP port?"""
    from consim.live import ports_free as host_ports_free

    return all(host_ports_free(host(block, k), http_port) for k in (1, 2, 3, 9, 10, 11))


def choose_block(http_port: int) -> int:
    """127.0.0.x like ``consim up``; if another cluster holds it, the first free 127.0.80-99.x."""
    for block in (0, *range(80, 100)):
        if ports_free(block, http_port):
            return block
    raise SystemExit("no free 127.0.N.x block found; pass --host-block")


def floor_app():  # noqa: ANN201
    """The framework floor: a bare quart-trio app, one route, a constant JSON body."""
    from quart_trio import QuartTrio

    app = QuartTrio("floor")

    @app.route("/hello")
    async def hello():  # noqa: ANN202
        return b'"hello"', 200, {"Content-Type": "application/json"}

    return app


async def serve_plain_hypercorn(app, address: str, *, task_status=None) -> None:  # noqa: ANN001
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
        shutdown_trigger=trio.sleep_forever,
        task_status=task_status or trio.TASK_STATUS_IGNORED,
    )


def floor_server(port: int, block: int) -> None:
    """``--floor-server PORT BLOCK``: the floor alone in this process."""
    import trio

    trio.run(serve_plain_hypercorn, floor_app(), f"{host(block, FLOOR_ALONE_K)}:{port}")


def cluster_server(port: int, seed: int, block: int) -> None:
    """``--cluster-server PORT SEED BLOCK``: what ``consim up`` runs, plus the floor in the same
    trio loop.

    The cluster is built exactly as ``consim up --http-port PORT --seed SEED --raft-multiplier 1
    --host-block BLOCK`` builds it and served by the same function (``consim.live.serve_cluster``).
    """
    import trio

    from consim.cli import _cluster_spec, build_parser
    from consim.http.serve import serve_http
    from consim.live import serve_cluster

    args = build_parser().parse_args(
        ["up", "--http-port", str(port), "--seed", str(seed), "--raft-multiplier", "1",
         "--host-block", str(block), "--log-level", "ERROR"]
    )  # fmt: skip
    spec = _cluster_spec(args)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def stop_on_signal() -> None:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(stop_on_signal)
                floor, floor_consim = host(block, FLOOR_K), host(block, FLOOR_CONSIM_K)
                await nursery.start(serve_plain_hypercorn, floor_app(), f"{floor}:{port}")
                await nursery.start(serve_http, floor_app(), f"{floor_consim}:{port}")
                with open(os.devnull, "w") as out:
                    await serve_cluster(spec, log_level="ERROR", out=out)

    trio.run(main)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- load generation ------------------------------------------------------------------------
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(url: str, duration: float, connections: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(duration)}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": p50, "p99": p99, "non2xx": int(errors.group(1)) if errors else 0}


def _worker(host: str, port: int, path: str, until: float, latencies: list, errors: list) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    sock = socket.create_connection((host, port))
    buf = b""
    while time.monotonic() < until:
        t0 = time.perf_counter()
        sock.sendall(request)
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        head, _, buf = buf.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        while len(buf) < length:
            buf += sock.recv(65536)
        buf = buf[length:]
        latencies.append((time.perf_counter() - t0) * 1000)
        if not head.startswith(b"HTTP/1.1 200"):
            errors.append(head.split(b"\r\n")[0])
    sock.close()


def builtin_load(url: str, duration: float, connections: int) -> dict:
    """Keep-alive HTTP/1.1 clients, one thread per connection, in this (separate) process."""
    import threading

    m = re.match(r"http://([\d.]+):(\d+)(/.*)", url)
    host, port, path = m.group(1), int(m.group(2)), m.group(3)
    latencies: list[float] = []
    errors: list = []
    until = time.monotonic() + duration
    threads = [
        threading.Thread(target=_worker, args=(host, port, path, until, latencies, errors))
        for _ in range(connections)
    ]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50": q[49], "p99": q[98], "non2xx": len(errors)}


def load(url: str, duration: float, connections: int) -> dict:
    if shutil.which("wrk"):
        return run_wrk(url, duration, connections) | {"tool": "wrk"}
    # In its own process so the load generator never shares an interpreter with a server.
    out = subprocess.run(
        [sys.executable, __file__, "--load", url, str(duration), str(connections)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out) | {"tool": "builtin"}


# ---- orchestration --------------------------------------------------------------------------
def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    import httpx

    r = httpx.get(url, timeout=timeout)
    return r.status_code, r.content


def wait_leader(server: str, port: int, within: float = 60) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            status, body = _get(f"http://{server}:{port}/v1/status/leader")
            if status == 200 and json.loads(body):
                return json.loads(body)
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit("no leader")


def wait_http(url: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if _get(url)[0] == 200:
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} never answered")


def chart(results: dict[str, dict], path: Path) -> None:
    names = list(results)
    w, h, left, top, bar_w, gap = 1020, 360, 70, 50, 110, 50
    plot_h = h - top - 70
    top_rps = max(r["rps"] for r in results.values()) * 1.15
    colours = {
        "direct": "#4c78a8",
        "forwarded": "#e45756",
        "stale": "#72b7b2",
        "floor": "#999",
        "floor-consim": "#bbb",
        "floor-alone": "#ccc",
    }
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{w / 2}" y="24" text-anchor="middle" font-size="15">'
        "GET /v1/operator/raft/configuration: requests/s (p50 / p99 ms)</text>",
        f'<line x1="{left}" y1="{top + plot_h}" x2="{w - 20}" y2="{top + plot_h}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>',
    ]
    for i in range(5):
        v = top_rps * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{v:.0f}</text>')
        parts.append(
            f'<line x1="{left}" y1="{y}" x2="{w - 20}" y2="{y}" stroke="#eee"/>' if i else ""
        )
    for i, name in enumerate(names):
        r = results[name]
        x = left + gap / 2 + i * (bar_w + gap)
        bh = plot_h * r["rps"] / top_rps
        y = top + plot_h - bh
        parts.append(
            f'<rect x="{x}" y="{y}" width="{bar_w}" height="{bh}" fill="{colours.get(name, "#888")}"/>'
        )
        parts.append(
            f'<text x="{x + bar_w / 2}" y="{y - 6}" text-anchor="middle">{r["rps"]:.0f}/s</text>'
        )
        parts.append(
            f'<text x="{x + bar_w / 2}" y="{top + plot_h + 18}" text-anchor="middle">{name}</text>'
        )
        parts.append(
            f'<text x="{x + bar_w / 2}" y="{top + plot_h + 34}" text-anchor="middle" fill="#555">'
            f"{r['p50']:.2f} / {r['p99']:.2f} ms</text>"
        )
    parts.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(p for p in parts if p) + "\n")


def _spread(values: list[float], fmt: str = ".0f") -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5, help="interleaved repetitions (medians shown)")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per target per run")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--port", type=int, default=18700)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--host-block", type=int, help="127.0.N.x for the servers (default: free one)")
    args = ap.parse_args()
    port = args.port
    block = choose_block(port) if args.host_block is None else args.host_block
    runtime = tempfile.mkdtemp(prefix="consim-bench-")
    env = {**os.environ, "XDG_RUNTIME_DIR": runtime}
    me = [sys.executable, __file__]
    cluster = subprocess.Popen(
        [*me, "--cluster-server", str(port), str(args.seed), str(block)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    floor = subprocess.Popen([*me, "--floor-server", str(port), str(block)])
    try:
        leader = wait_leader(host(block, 1), port)
        leader_host = leader.split(":")[0]
        follower_host = next(h for h in (host(block, k) for k in (1, 2, 3)) if h != leader_host)
        floor_host, floor_alone_host = host(block, FLOOR_K), host(block, FLOOR_ALONE_K)
        floor_consim_host = host(block, FLOOR_CONSIM_K)
        for h in (floor_host, floor_alone_host, floor_consim_host):
            wait_http(f"http://{h}:{port}/hello")
        conf = "/v1/operator/raft/configuration"
        # name -> (url, pid of the process serving it). Each compared pair is measured back to
        # back (floor-consim|floor|direct|forwarded), and every other run goes in reverse order,
        # so a change in the machine's other load between two measurements mostly cancels out
        # of the ratios.
        targets = {
            "floor-consim": (f"http://{floor_consim_host}:{port}/hello", cluster.pid),
            "floor": (f"http://{floor_host}:{port}/hello", cluster.pid),
            "direct": (f"http://{leader_host}:{port}{conf}", cluster.pid),
            "forwarded": (f"http://{follower_host}:{port}{conf}", cluster.pid),
            "stale": (f"http://{follower_host}:{port}{conf}?stale", cluster.pid),
            "floor-alone": (f"http://{floor_alone_host}:{port}/hello", floor.pid),
        }
        for url, _ in targets.values():  # every target answers 200 before we measure
            status, body = _get(url)
            assert status == 200, (url, status, body)
        for url, _ in targets.values():
            load(url, 1.0, args.connections)  # warm-up
        runs: dict[str, list[dict]] = {name: [] for name in targets}
        for run in range(1, args.runs + 1):
            order = list(targets.items())
            for name, (url, pid) in order if run % 2 else reversed(order):
                cpu0 = cpu_seconds(pid)
                r = load(url, args.duration, args.connections)
                requests = r["rps"] * args.duration
                r["cpu_us"] = (cpu_seconds(pid) - cpu0) / requests * 1e6 if requests else 0.0
                runs[name].append(r)
                print(
                    f"run {run}  {name:<11} {r['rps']:>7.0f} req/s   p50 {r['p50']:7.2f} ms   "
                    f"p99 {r['p99']:7.2f} ms   cpu {r['cpu_us']:6.0f} us/req   "
                    f"non-2xx {r['non2xx']}   ({r['tool']})",
                    flush=True,
                )
        if wait_leader(host(block, 1), port) != leader:
            print("WARNING: leadership changed during the run", flush=True)

        print(f"\nmedians over {args.runs} interleaved runs (min-max):")
        results: dict[str, dict] = {}
        for name in ("direct", "forwarded", "stale", "floor", "floor-consim", "floor-alone"):
            rs = runs[name]
            results[name] = {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p99")}
            print(
                f"  {name:<11} {_spread([r['rps'] for r in rs]):>18} req/s   "
                f"p50 {_spread([r['p50'] for r in rs], '.2f'):>20} ms   "
                f"p99 {_spread([r['p99'] for r in rs], '.2f'):>20} ms   "
                f"cpu {_spread([r['cpu_us'] for r in rs]):>16} us/req"
            )

        def ratios(a: str, b: str, key: str = "rps") -> list[float]:
            return [x[key] / y[key] for x, y in zip(runs[a], runs[b], strict=True)]

        def extra_cpu() -> str:
            values = [
                f["cpu_us"] - d["cpu_us"]
                for f, d in zip(runs["forwarded"], runs["direct"], strict=True)
            ]
            each = " ".join(f"{v:.0f}" for v in values)
            return f"{statistics.median(values):.0f} us (runs: {each})"

        def show(values: list[float]) -> str:
            each = " ".join(f"{v:.2f}" for v in values)
            return f"{statistics.median(values):.2f} (runs: {each})"

        print(
            f"forwarded/direct throughput {show(ratios('forwarded', 'direct'))} (target >= 0.90)\n"
            f"forwarded/direct p99 {show(ratios('forwarded', 'direct', 'p99'))} (target <= 1.2)\n"
            f"direct/floor throughput {show(ratios('direct', 'floor'))} (target >= 0.85; floor "
            "served from the cluster's process)\n"
            f"direct/floor-alone throughput {show(ratios('direct', 'floor-alone'))} (reference: "
            "floor in a process of its own)\n"
            f"direct/floor cpu per request {show(ratios('direct', 'floor', 'cpu_us'))}\n"
            f"floor-consim/floor throughput {show(ratios('floor-consim', 'floor'))} (consim's "
            "layer over plain hypercorn)\n"
            f"forwarded - direct cpu per request {extra_cpu()} (what forwarding adds)"
        )
        print(
            f"leader {leader_host}, follower {follower_host}, {args.connections} connections, "
            f"{args.duration:.0f}s each, {args.runs} runs, {os.cpu_count()} CPUs, "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        chart(results, OUT / "forwarding.svg")
        print(f"chart: {OUT / 'forwarding.svg'}")
    finally:
        for p in (cluster, floor):
            p.send_signal(signal.SIGTERM)
        for p in (cluster, floor):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(runtime, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--floor-server":
        floor_server(int(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--cluster-server":
        cluster_server(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--load":
        print(json.dumps(builtin_load(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))))
    else:
        main()
