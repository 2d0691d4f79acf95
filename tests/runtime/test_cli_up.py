"""``consim up`` and ``consim ctl`` end to end, as subprocesses (live, real sockets).

``consim up`` uses Consul's addresses 127.0.0.1-3:8300 for dc1; the HTTP port is high (28541) and
the state file goes to a private XDG_RUNTIME_DIR so a developer's cluster is untouched. When another
``consim up`` on this machine already holds 127.0.0.x:8300, the same CLI entry point runs with dc1
moved to 127.0.45.x (``server_host`` patched in the child process) instead of failing on the clash.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

HTTP_PORT = 28541
CONTROL = f"127.0.0.1:{HTTP_PORT + 99}"
SHIFTED_NET = "127.0.45"
UP_ARGS = ["up", "--servers", "3", "--raft-multiplier", "1", "--http-port", str(HTTP_PORT)]
UP_ARGS += ["--seed", "1", "--max-events", str(MAX_EVENTS := 20)]
UP_ARGS += ["--http-max-conns-per-client", "2"]


def _rpc_ports_free(net: str) -> bool:
    for k in (1, 2, 3):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((f"{net}.{k}", 8300))
            except OSError:
                return False
    return True


def up_command(net: str) -> list[str]:
    args = list(UP_ARGS)
    if net != "127.0.0":
        args += ["--host-block", net.rsplit(".", 1)[1]]
    return [sys.executable, "-m", "consim.cli", *args]


def announce(net: str) -> re.Pattern[str]:
    host = re.escape(net + ".")
    return re.compile(rf"^==> dc1 has a leader: (dc1-s[123]) \(({host}[123]:8300)\)$")


class Up:
    def __init__(self, env: dict[str, str], command: list[str]) -> None:
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def wait_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.out):
                m = pattern.search(line)
                if m:
                    return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"no line matching {pattern.pattern!r} within {timeout}s; exit={self.proc.poll()}\n"
            + "\n".join(self.out[-40:])
            + "\n--- stderr ---\n"
            + "\n".join(self.err[-40:])
        )

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for t in self._threads:
            t.join(timeout=5)
        return code


def ctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consim.cli", "ctl", *args, "--control", CONTROL],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def status(env: dict[str, str]) -> list[dict[str, Any]]:
    done = ctl(env, "status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_status(env: dict[str, str], pred: Any, timeout: float, what: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    last: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        last = status(env)
        if pred(last):
            return last
        time.sleep(0.2)
    raise AssertionError(f"status never showed {what}: {last}")


def test_consim_up_and_ctl_end_to_end(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "XDG_RUNTIME_DIR": str(tmp_path),
        "PYTHONWARNINGS": "default",  # show ResourceWarning ("unclosed ...") if any
        "PYTHONUNBUFFERED": "1",
    }
    net = "127.0.0" if _rpc_ports_free("127.0.0") else SHIFTED_NET
    announce_re = announce(net)
    up = Up(env, up_command(net))
    try:
        m = up.wait_line(announce_re, 30)
        leader, leader_addr = m.group(1), m.group(2)

        # The server table printed at start.
        header = next(i for i, line in enumerate(up.out) if line.startswith("Node "))
        assert re.split(r"\s{2,}", up.out[header]) == [
            "Node",
            "Datacenter",
            "RPC",
            "Serf LAN",
            "Serf WAN",
            "HTTP",
        ], up.out[header]
        for k in (1, 2, 3):
            row = re.split(r"\s{2,}", up.out[header + k])
            assert row == [
                f"dc1-s{k}",
                "dc1",
                f"{net}.{k}:8300",
                f"{net}.{k}:8301",
                f"{net}.{k}:8302",
                f"{net}.{k}:{HTTP_PORT}",
            ], row
        state_file = tmp_path / "consim" / "up.json"
        assert json.loads(state_file.read_text())["control"] == CONTROL

        rows = status(env)
        assert [r["name"] for r in rows] == ["dc1-s1", "dc1-s2", "dc1-s3"], rows
        assert [r["name"] for r in rows if r["state"] == "leader"] == [leader], rows
        assert next(r for r in rows if r["name"] == leader)["address"] == leader_addr

        table = ctl(env, "status")
        assert table.returncode == 0 and table.stdout.startswith("Node"), table
        assert "Commit Index" in table.stdout.splitlines()[0]

        killed = ctl(env, "kill", leader)
        assert killed.returncode == 0, killed.stderr
        rows = wait_status(
            env,
            lambda rs: any(r["state"] == "leader" and r["name"] != leader for r in rs),
            15,
            "a new leader",
        )
        assert next(r for r in rows if r["name"] == leader)["state"] == "down", rows
        new_leader = next(r for r in rows if r["state"] == "leader")

        restarted = ctl(env, "restart", leader)
        assert restarted.returncode == 0, restarted.stderr
        wait_status(
            env,
            lambda rs: next(r for r in rs if r["name"] == leader)["state"] == "follower",
            15,
            f"{leader} back as a follower",
        )

        bad = ctl(env, "kill", "dc1-s9")
        assert bad.returncode == 1 and "no server named" in bad.stderr, bad

        # Roles, durations, a one-way block and a heal that clears everything, on the live API.
        for argv in (
            ("delay", "leader", "*", "200ms"),
            ("loss", "*", "follower", "0.1"),
            ("block", "dc1-s1", "dc1-s2"),
            ("heal",),
        ):
            done = ctl(env, *argv)
            assert done.returncode == 0, (argv, done.stderr)
        typo = ctl(env, "delay", "dc1-s1", "*", "abc")
        assert typo.returncode == 2 and "Traceback" not in typo.stderr, typo
        assert 'delay must be a duration like "200ms"' in typo.stderr
        own_file = tmp_path / "consim" / f"up-{CONTROL.replace(':', '-')}.json"
        assert json.loads(own_file.read_text())["control"] == CONTROL

        # Consul's HTTP API on server 1's address.
        deadline = time.monotonic() + 10
        while True:
            try:
                r = httpx.get(f"http://{net}.1:{HTTP_PORT}/v1/status/leader", timeout=5)
                if r.status_code == 200 and r.json():
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "HTTP /v1/status/leader never answered"
            time.sleep(0.2)
        assert r.json() == new_leader["address"], (r.json(), new_leader)

        # limits.http_max_conns_per_client: two held connections, the third is refused.
        held = []
        for _ in range(2):  # one at a time, each answered: both are counted before the third
            s = socket.create_connection((f"{net}.1", HTTP_PORT), timeout=5)
            s.sendall(b"GET /v1/agent/self HTTP/1.1\r\nHost: a\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200 OK")
            held.append(s)
        with socket.create_connection((f"{net}.1", HTTP_PORT), timeout=5) as third:
            refused = third.recv(65536)
        for s in held:
            s.close()
        assert refused.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), refused

        # The event log is a ring of --max-events; every event was printed all the same.
        log = httpx.get(f"http://{CONTROL}/ctl/events", timeout=5).json()
        assert log["max_events"] == MAX_EVENTS and log["kept"] == MAX_EVENTS, log
        assert log["emitted"] > MAX_EVENTS, log
        printed = sum(1 for line in up.out if re.match(r"^\d{4}-\d\d-\d\dT", line))
        assert printed > MAX_EVENTS, (printed, log)  # INFO and up, not only what is kept
    finally:
        started = time.monotonic()
        code = up.stop()
        took = time.monotonic() - started

    stdout, stderr = "\n".join(up.out), "\n".join(up.err)
    assert code == 0, f"exit {code}\n{stdout[-3000:]}\n{stderr[-3000:]}"
    assert took < 5, f"SIGTERM took {took:.1f}s to stop consim up"
    assert "Traceback" not in stdout + stderr, stderr[-3000:]
    assert "unclosed" not in (stdout + stderr).lower(), stderr[-3000:]
    assert "==> Caught signal, shutting down" in stdout
    assert up.out[-1] == "==> consim up stopped", up.out[-5:]
    assert not state_file.exists(), "the control state file should be removed on exit"
    assert not own_file.exists()
    # The leader announce line was printed exactly once, and kills/restarts were logged.
    assert sum(bool(announce_re.match(line)) for line in up.out) == 1
    assert any("server killed" in line for line in up.out), stdout[-2000:]
    assert any("server restarted" in line for line in up.out), stdout[-2000:]
