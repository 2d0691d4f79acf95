"""Load generators for live ``consim bench``, each in a process of its own (so it never shares an
interpreter or a core's time slice accounting with the server it measures).

- :func:`run_wrk`: ``wrk`` with a Lua ``done`` hook that prints its latency percentiles as JSON
  (p0.5 to p99.5 every half percent, p99.9, max): exact figures, a CDF, no per-request samples.
- :func:`run_builtin`: ``python -m consim.bench.loadgen URL DURATION CONNECTIONS [RATE]``,
  keep-alive HTTP/1.1 clients, one thread per connection, every request's latency recorded.
  With RATE (requests per second over all connections) each connection sends on its own
  schedule (open loop; a late connection sends at once, so a stall shows as latency).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from consim.bench.targets import RunFigures

_WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('CONSIM-WRK {"requests": %d, "duration_us": %d, "socket_errors": %d, ' ..
    '"non2xx": %d, "max_us": %d, "cdf": [', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status, latency.max))
  for i = 1, 199 do
    io.write(string.format('%s[%g, %d]', i > 1 and ', ' or '', i / 2, latency:percentile(i / 2)))
  end
  io.write(string.format(', [99.9, %d]]}\n', latency:percentile(99.9)))
end
"""


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, duration: float, connections: int) -> RunFigures:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_LUA)
        script = f.name
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "-s", script, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        Path(script).unlink(missing_ok=True)
    m = re.search(r"^CONSIM-WRK (\{.*\})$", out, re.M)
    if m is None:
        raise RuntimeError(f"wrk gave no figures:\n{out}")
    data = json.loads(m.group(1))
    elapsed = data["duration_us"] / 1e6
    cdf = {p: us / 1e6 for p, us in data["cdf"]}
    answered = data["requests"] - data["non2xx"]
    figures = {
        "requests": answered,
        "rps": round(answered / elapsed, 3) if elapsed else None,
        "p50_ms": round(cdf[50] * 1000, 3),
        "p90_ms": round(cdf[90] * 1000, 3),
        "p99_ms": round(cdf[99] * 1000, 3),
        "max_ms": round(data["max_us"] / 1000, 3),
    }
    # The percentile points stand in for samples in the CDF plot (no per-request times).
    points = [cdf[p] for p in sorted(cdf)]
    return RunFigures(
        points,
        elapsed,
        data["non2xx"] + data["socket_errors"],
        figures=figures,
        tool="wrk",
    )


def run_builtin(url: str, duration: float, connections: int, rate: float | None) -> RunFigures:
    """The built-in generator, in a child process."""
    args = [sys.executable, "-m", "consim.bench.loadgen", url, str(duration), str(connections)]
    if rate is not None:
        args.append(str(rate))
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    samples = [(t, lat) for t, lat in data["samples"]]
    return RunFigures(
        [lat for _, lat in samples], data["elapsed"], data["errors"], samples, tool="builtin"
    )


def _client(
    host: str,
    port: int,
    path: str,
    until: float,
    interval: float | None,
    offset: float,
    out: list[tuple[float, float]],
    errors: list[int],
) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    due = time.perf_counter() + offset
    try:
        while time.perf_counter() < until:
            if interval is not None:
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                due += interval
            t0 = time.perf_counter()
            sock.sendall(request)
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            m = re.search(rb"(?i)content-length:\s*(\d+)", head)
            length = int(m.group(1)) if m else 0
            while len(buf) < length:
                buf += sock.recv(65536)
            buf = buf[length:]
            if head.startswith((b"HTTP/1.1 200", b"HTTP/1.1 404")):
                out.append((t0, time.perf_counter() - t0))
            else:
                errors.append(1)
    except OSError:
        errors.append(1)
    finally:
        sock.close()


def builtin_load(url: str, duration: float, connections: int, rate: float | None) -> dict[str, Any]:
    m = re.match(r"http://([\d.]+):(\d+)(/.*)", url)
    if m is None:
        raise ValueError(f"expected http://IP:PORT/PATH, got {url!r}")
    host, port, path = m.group(1), int(m.group(2)), m.group(3)
    samples: list[tuple[float, float]] = []
    errors: list[int] = []
    start = time.perf_counter()
    until = start + duration
    interval = connections / rate if rate else None
    threads = [
        threading.Thread(
            target=_client,
            args=(
                host,
                port,
                path,
                until,
                interval,
                (interval or 0) * k / connections,
                samples,
                errors,
            ),
        )
        for k in range(connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    samples.sort()
    return {
        "elapsed": elapsed,
        "errors": len(errors),
        "samples": [(round(t - start, 6), round(lat, 7)) for t, lat in samples],
    }


if __name__ == "__main__":
    rate_arg = float(sys.argv[4]) if len(sys.argv) > 4 else None
    print(json.dumps(builtin_load(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), rate_arg)))
