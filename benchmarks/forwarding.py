"""Cost of leader forwarding on GET /v1/operator/raft/configuration, against the framework floor.

Starts ``consim up`` (3 servers, one process, raft_multiplier 1) as a subprocess and a bare
quart-trio "hello" app on hypercorn in another subprocess, then loads each target from a separate
process (``wrk`` if installed, else a built-in keep-alive load generator in its own process):

  direct     GET /v1/operator/raft/configuration on the leader
  forwarded  the same on a follower (follower -> leader RPC -> back)
  stale      the same on a follower with ?stale (answered locally)
  floor      GET /hello on the bare quart-trio app (the framework's own ceiling)

Prints requests/s, p50 and p99 for each, the forwarded/direct and direct/floor ratios, and writes
an SVG chart to benchmarks/out/forwarding.svg.

    .venv/bin/python benchmarks/forwarding.py [--duration 5] [--connections 16] [--port 18700]
"""

from __future__ import annotations

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


# ---- the floor server (run as a subprocess: forwarding.py --floor-server PORT) --------------
def floor_server(port: int) -> None:
    import trio
    from quart_trio import QuartTrio

    from consim.http.serve import serve_http

    app = QuartTrio("floor")

    @app.route("/hello")
    async def hello():  # noqa: ANN202
        return b'"hello"', 200, {"Content-Type": "application/json"}

    trio.run(serve_http, app, f"127.0.0.9:{port}")


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


def wait_leader(port: int, within: float = 60) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            status, body = _get(f"http://127.0.0.1:{port}/v1/status/leader")
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
    w, h, left, top, bar_w, gap = 760, 360, 70, 50, 110, 60
    plot_h = h - top - 70
    top_rps = max(r["rps"] for r in results.values()) * 1.15
    colours = {"direct": "#4c78a8", "forwarded": "#e45756", "stale": "#72b7b2", "floor": "#999"}
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--port", type=int, default=18700)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    port = args.port
    runtime = tempfile.mkdtemp(prefix="consim-bench-")
    env = {**os.environ, "XDG_RUNTIME_DIR": runtime}
    up = subprocess.Popen(
        [sys.executable, "-m", "consim.cli", "up", "--http-port", str(port), "--seed",
         str(args.seed), "--raft-multiplier", "1", "--log-level", "ERROR"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    floor = subprocess.Popen([sys.executable, __file__, "--floor-server", str(port)])
    try:
        leader = wait_leader(port)
        leader_host = leader.split(":")[0]
        follower_host = next(h for h in ("127.0.0.1", "127.0.0.2", "127.0.0.3") if h != leader_host)
        wait_http(f"http://127.0.0.9:{port}/hello")
        conf = "/v1/operator/raft/configuration"
        targets = {
            "direct": f"http://{leader_host}:{port}{conf}",
            "forwarded": f"http://{follower_host}:{port}{conf}",
            "stale": f"http://{follower_host}:{port}{conf}?stale",
            "floor": f"http://127.0.0.9:{port}/hello",
        }
        for url in targets.values():  # every target answers 200 before we measure
            status, body = _get(url)
            assert status == 200, (url, status, body)
        results = {}
        for name, url in targets.items():
            load(url, 1.0, args.connections)  # warm-up
            results[name] = load(url, args.duration, args.connections)
            r = results[name]
            print(
                f"{name:<10} {r['rps']:>9.0f} req/s   p50 {r['p50']:7.2f} ms   p99 {r['p99']:7.2f} ms"
                f"   non-2xx {r['non2xx']}   ({r['tool']})",
                flush=True,
            )
        if wait_leader(port) != leader:
            print("WARNING: leadership changed during the run", flush=True)
        fwd, direct, floor_r = results["forwarded"], results["direct"], results["floor"]
        print(
            f"forwarded/direct throughput {fwd['rps'] / direct['rps']:.2f} (target >= 0.90), "
            f"p99 ratio {fwd['p99'] / direct['p99']:.2f} (target <= 1.2)"
        )
        print(f"direct/floor throughput {direct['rps'] / floor_r['rps']:.2f} (target >= 0.85)")
        print(
            f"leader {leader_host}, follower {follower_host}, {args.connections} connections, "
            f"{args.duration:.0f}s each, {os.cpu_count()} CPUs"
        )
        chart(results, OUT / "forwarding.svg")
        print(f"chart: {OUT / 'forwarding.svg'}")
    finally:
        for p in (up, floor):
            p.send_signal(signal.SIGTERM)
        for p in (up, floor):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(runtime, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--floor-server":
        floor_server(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--load":
        print(json.dumps(builtin_load(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))))
    else:
        main()
