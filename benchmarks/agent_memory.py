"""Memory and CPU of ``consim agent`` processes, against the same cluster in one process.

1. One idle agent: ``consim agent -server -bootstrap`` on its own, leading itself; its RSS after
   ``--idle`` seconds (VmRSS from /proc).
2. Five servers under the forwarding benchmark's load (``consim.bench.loadgen``, the load
   generator of ``consim bench --live`` and ``benchmarks/forwarding.py``: wrk when installed,
   else the built-in one, in a process of its own; keep-alive clients on
   ``GET /v1/operator/raft/configuration`` of a follower, so every request is forwarded to the
   leader), once as ``consim up`` (one process) and once as
   ``consim up --processes`` (five agent processes and the parent), interleaved ``--runs`` times:
   requests/s, CPU seconds of the whole process tree per 1,000 requests (utime + stime from
   /proc) and the tree's total RSS, then the ratios processes / in-process (each run's, then
   the median).

    .venv/bin/python benchmarks/agent_memory.py [--runs 2] [--duration 5] [--connections 16]
"""

from __future__ import annotations

from _requires import require  # benchmarks/ is sys.path[0] when a script runs

require(__file__, "httpx")

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from consim.bench.loadgen import run_builtin, run_wrk, wrk_available
from consim.live import free_host_block

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree(root: int) -> list[int]:
    """``root`` and every descendant (ppid is field 4 of /proc/PID/stat)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, IndexError):
                continue
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = _stat(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except OSError:
            continue
    return total * PAGE / 2**20


def load(url: str, duration: float, connections: int) -> dict:
    """``connections`` keep-alive clients on ``url`` for ``duration`` seconds: requests answered
    (200/404), their rate and the failures (non-2xx answers, socket errors)."""
    if wrk_available():
        run = run_wrk(url, duration, connections)
    else:
        run = run_builtin(url, duration, connections, None)
    figures = run.summary()
    return {
        "requests": figures["requests"],
        "rps": figures["rps"] or 0.0,
        "errors": figures["errors"],
        "tool": run.tool,
    }


def get(url: str) -> object:
    import httpx

    r = httpx.get(url, timeout=2)
    return r.json() if r.status_code == 200 and r.content else None


def wait(what: str, check, within: float = 90) -> object:  # noqa: ANN001
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # noqa: BLE001 - not up yet
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"agent_memory: {what} not within {within}s")


def idle_agent(block: int, idle: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        host = f"127.0.{block}.1"
        proc = subprocess.Popen(
            [sys.executable, "-m", "consim.cli", "agent", "-server", "-bootstrap", "-node=idle"]
            + [f"-bind={host}", f"-client={host}", f"-data-dir={tmp}/d"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait("the idle agent's leadership", lambda: get(f"http://{host}:8500/v1/status/leader"))
            time.sleep(idle)
            return rss_mib([proc.pid])
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def loaded_cluster(processes: bool, block: int, port: int, duration: float, conns: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "consim.cli", "up", "--servers", "5", "--raft-multiplier"]
        argv += ["1", "--host-block", str(block), "--http-port", str(port), "--data-dir", tmp]
        env = {**os.environ, "XDG_RUNTIME_DIR": tmp}
        proc = subprocess.Popen(
            argv + (["--processes"] if processes else []),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            hosts = [f"127.0.{block}.{k}" for k in range(1, 6)]
            leader = wait("a leader", lambda: get(f"http://{hosts[0]}:{port}/v1/status/leader"))
            # Every server in the configuration before measuring (process mode joins by gossip).
            wait(
                "five voters",
                lambda: (
                    len(
                        (get(f"http://{hosts[0]}:{port}/v1/operator/raft/configuration") or {}).get(
                            "Servers", []
                        )
                    )
                    == 5
                ),
            )
            follower = next(h for h in hosts if f"{h}:8300" != leader)
            time.sleep(2)  # settle: startup work is not the load's
            pids = tree(proc.pid)
            cpu0 = cpu_seconds(pids)
            result = load(
                f"http://{follower}:{port}/v1/operator/raft/configuration", duration, conns
            )
            cpu = cpu_seconds(pids) - cpu0
            requests = result["requests"]
            return {
                "rps": result["rps"],
                "cpu_per_1k": cpu / requests * 1000 if requests else float("nan"),
                "rss": rss_mib(pids),
                "procs": len(pids),
                "errors": result["errors"],
                "tool": result["tool"],
            }
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--idle", type=float, default=3.0)
    parser.add_argument("--port", type=int, default=18760)
    args = parser.parse_args()

    block = free_host_block([5], args.port, range(160, 200, 2))
    rss = idle_agent(block, args.idle)
    print(f"one idle agent (consim agent -server -bootstrap): RSS {rss:.1f} MiB")
    rows: dict[str, list[dict]] = {"in-process": [], "processes": []}
    for run in range(args.runs):
        order = ("in-process", "processes") if run % 2 == 0 else ("processes", "in-process")
        for mode in order:
            r = loaded_cluster(
                mode == "processes", block, args.port, args.duration, args.connections
            )
            rows[mode].append(r)
            print(
                f"run {run + 1} {mode:<10}  {r['rps']:8.0f} req/s  "
                f"CPU {r['cpu_per_1k']:.3f} s per 1k requests  RSS {r['rss']:6.1f} MiB "
                f"({r['procs']} processes, {r['errors']} errors, {r['tool']})"
            )
    print()
    for key, label in (("rps", "requests/s"), ("cpu_per_1k", "CPU per request"), ("rss", "RSS")):
        ratios = [
            p[key] / i[key] for p, i in zip(rows["processes"], rows["in-process"], strict=True)
        ]
        shown = ", ".join(f"{x:.2f}" for x in ratios)
        print(
            f"processes / in-process {label:<16} {statistics.median(ratios):.2f}  (runs: {shown})"
        )
    print(json.dumps({"idle_agent_rss_mib": round(rss, 1), "runs": rows}))


if __name__ == "__main__":
    main()
