"""Soak: does a long-running ``consim up`` keep its memory flat?

Starts ``consim up`` (3 servers, raft multiplier 1) in a subprocess on a free ``127.0.N.x`` block,
then sends ``--requests`` (100,000 by default) HTTP requests from ``--connections`` keep-alive
connections spread over the three servers (so two thirds are forwarded to the leader): per 20
requests, 11 KV reads, 5 KV writes (500 keys, 64-byte values, so the data set stays the same
size), 2 ``/v1/operator/raft/configuration``, 1 ``/v1/operator/autopilot/health`` and 1
``?keys&stale`` listing. Every 10,000 requests it prints the server process's RSS (VmRSS from
/proc), then the ratio last/first. ``--keep-all-events`` runs the same cluster keeping every
event (``--max-events`` huge), the behaviour before the event log was bounded, for a side-by-side
figure. Bounded in time by ``--max-seconds``. Needs consim's own dependencies only.

RSS grows while the servers' Raft logs fill to their steady size (snapshot threshold plus
trailing logs), then stays flat. With Consul's defaults (8192 + 10240 entries, ``--raft-logs 0``)
that takes about 18,000 writes, 75,000 requests of this mix, so by default the servers run with
``--raft-snapshot-threshold 1024 --raft-trailing-logs 1024 --raft-snapshot-interval 1s`` and the
logs are full before the first sample: the last/first ratio then measures what a leak would add.
The interval matters: a server checks the threshold only every random 1-2 x
``raft_snapshot_interval`` (Consul's 30 s), and in 30-60 s the log grows thousands of entries past
it; at 1 s it stays within two seconds' writes of the bound. ``--raft-logs 0`` runs Consul's
defaults for all three. The second-half ratio (last sample over the middle one) is printed too.

    .venv/bin/python benchmarks/soak.py [--requests 100000] [--connections 8] [--keep-all-events]
        [--raft-logs 1024] [--raft-snapshot-interval 1s]
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _requires import require  # benchmarks/ is sys.path[0] when a script runs

require(__file__)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consim.live import free_host_block  # noqa: E402


def tcp_port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None) -> int:
    conn.request(method, path, body=body)
    response = conn.getresponse()
    response.read()
    return response.status


def wait_for_leader(host: str, port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", "/v1/status/leader")
            body = conn.getresponse().read()
            conn.close()
            if body not in (b'""', b""):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("no leader")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--every", type=int, default=10_000, help="print RSS every N requests")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--http-port", type=int, default=18850)
    parser.add_argument("--keep-all-events", action="store_true")
    parser.add_argument(
        "--raft-logs",
        type=int,
        default=1024,
        help="raft_snapshot_threshold and raft_trailing_logs of the servers (default 1024, so the "
        "Raft logs reach their steady size in the first sample; 0 = Consul's 8192 / 10240)",
    )
    parser.add_argument(
        "--raft-snapshot-interval",
        default="1s",
        help="raft_snapshot_interval of the servers with --raft-logs N (default 1s, so the "
        "threshold is checked often enough to bound the log; 'default': not passed, the "
        "server's 30s, or a --source checkout that predates the option)",
    )
    parser.add_argument(
        "--fresh-connections",
        action="store_true",
        help="one connection per request (as curl in a loop) instead of keep-alive",
    )
    parser.add_argument(
        "--source",
        help="run consim from this source tree (e.g. an older checkout, for a side-by-side run)",
    )
    args = parser.parse_args()

    if not tcp_port_free("127.0.0.1", args.http_port + 99):  # consim up's control API
        print(f"control port 127.0.0.1:{args.http_port + 99} is taken; pass --http-port")
        return 1
    block = free_host_block([3], args.http_port, range(60, 100, 3))
    hosts = [f"127.0.{block}.{k}" for k in (1, 2, 3)]
    if args.source:
        launcher = f"import sys; sys.path.insert(0, {args.source!r}); from consim.cli import main; sys.exit(main())"
        consim = [sys.executable, "-c", launcher]
    else:
        consim = [str(Path(sys.executable).parent / "consim")]
    cmd = [
        *consim, "up", "--servers", "3", "--raft-multiplier", "1",
        "--host-block", str(block), "--http-port", str(args.http_port), "--log-level", "ERROR",
    ]  # fmt: skip
    if args.keep_all_events:
        cmd += ["--max-events", str(10**12)]
    if args.raft_logs:
        cmd += ["--raft-snapshot-threshold", str(args.raft_logs)]
        cmd += ["--raft-trailing-logs", str(args.raft_logs)]
        if args.raft_snapshot_interval != "default":
            cmd += ["--raft-snapshot-interval", args.raft_snapshot_interval]
    runtime = tempfile.mkdtemp(prefix="consim-soak-")
    # Its own runtime dir: the control file must not replace a developer's `consim up`'s.
    env = {**os.environ, "XDG_RUNTIME_DIR": runtime}
    print(f"==> {' '.join(cmd)}  (servers {', '.join(hosts)})", flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        wait_for_leader(hosts[0], args.http_port, time.monotonic() + 60)
        return soak(proc.pid, hosts, args)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def soak(pid: int, hosts: list[str], args: argparse.Namespace) -> int:
    lock = threading.Lock()
    done = 0
    errors: dict[str, int] = {}
    stop = threading.Event()
    value = b"v" * 64

    def next_index() -> int | None:
        nonlocal done
        with lock:
            if done >= args.requests or stop.is_set():
                return None
            done += 1
            return done

    def worker(w: int) -> None:
        host = hosts[w % len(hosts)]
        conn = http.client.HTTPConnection(host, args.http_port, timeout=30)
        while (i := next_index()) is not None:
            key = f"soak/k{i % 500}"
            r = i % 20
            if r < 11:
                method, path, body = "GET", f"/v1/kv/{key}", None
            elif r < 16:
                method, path, body = "PUT", f"/v1/kv/{key}", value
            elif r < 18:
                method, path, body = "GET", "/v1/operator/raft/configuration", None
            elif r < 19:
                method, path, body = "GET", "/v1/operator/autopilot/health", None
            else:
                method, path, body = "GET", "/v1/kv/soak/?keys&stale", None
            try:
                if args.fresh_connections:
                    conn.close()
                    conn = http.client.HTTPConnection(host, args.http_port, timeout=30)
                status = request(conn, method, path, body)
                if status not in (200, 404):
                    with lock:
                        errors[str(status)] = errors.get(str(status), 0) + 1
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                conn.close()
                conn = http.client.HTTPConnection(host, args.http_port, timeout=30)
        conn.close()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(args.connections)]
    start = time.monotonic()
    base = rss_mib(pid)
    print(f"{'requests':>9} {'seconds':>8} {'req/s':>7} {'RSS MiB':>8}", flush=True)
    print(f"{0:>9} {0.0:>8.1f} {'':>7} {base:>8.1f}", flush=True)
    for t in threads:
        t.start()
    samples: list[float] = []
    mark = args.every
    while any(t.is_alive() for t in threads):
        time.sleep(0.05)
        if time.monotonic() - start > args.max_seconds:
            stop.set()
        with lock:
            n = done
        if n >= mark:
            elapsed = time.monotonic() - start
            rss = rss_mib(pid)
            samples.append(rss)
            print(f"{n:>9} {elapsed:>8.1f} {n / elapsed:>7.0f} {rss:>8.1f}", flush=True)
            mark += args.every
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    print(f"==> {done} requests in {elapsed:.1f} s ({done / elapsed:.0f}/s); errors: {errors or 0}")
    if stop.is_set() and done < args.requests:
        print(f"==> stopped at --max-seconds {args.max_seconds:g}")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", args.http_port + 99, timeout=5)
        conn.request("GET", "/ctl/events")
        print(f"==> event log: {conn.getresponse().read().decode()}")
    except (OSError, http.client.HTTPException) as exc:  # an older consim has no /ctl/events
        print(f"==> event log: not available ({exc})")
    if len(samples) >= 2:
        mid = samples[(len(samples) - 1) // 2]
        print(
            f"==> RSS first sample {samples[0]:.1f} MiB, last {samples[-1]:.1f} MiB: "
            f"last/first {samples[-1] / samples[0]:.3f} (start {base:.1f} MiB); "
            f"second half: last/middle {samples[-1] / mid:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
