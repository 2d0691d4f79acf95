"""``consim up`` with an address already taken: one line naming it and ``--host-block``, exit 2,
no traceback, and nothing started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from live_hosts import free_host_base

HTTP_PORT = 28871


def _up(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "consim.cli", "up", "--servers", "2", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_server_address_in_use_is_one_line_naming_it(tmp_path: Path) -> None:
    block = free_host_base([2], HTTP_PORT, range(150, 200, 3))
    host = f"127.0.{block}.2"
    with socket.socket() as holder:
        holder.bind((host, 8300))
        holder.listen()
        proc = _up(tmp_path, "--host-block", str(block), "--http-port", str(HTTP_PORT))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (
        proc.stderr
    )
    assert (
        f"{host} (ports 8300, 8301, 8302 or {HTTP_PORT}, for dc1-s2) is already in use"
        in proc.stderr
    )
    assert "--host-block N (--host-block" in proc.stderr
    assert not (tmp_path / "consim").exists()  # no state file: nothing was started


def test_control_address_in_use_names_http_port(tmp_path: Path) -> None:
    block = free_host_base([2], HTTP_PORT + 1, range(151, 200, 3))
    control = HTTP_PORT + 1 + 99
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", control))
        holder.listen()
        proc = _up(tmp_path, "--host-block", str(block), "--http-port", str(HTTP_PORT + 1))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert (
        f"127.0.0.1:{control} (the control API, --http-port + 99) is already in use" in proc.stderr
    )
    assert "pick another --http-port" in proc.stderr


def test_run_live_with_an_address_in_use_is_one_line_too(tmp_path: Path) -> None:
    block = free_host_base([3], HTTP_PORT + 2, range(152, 200, 3))
    host = f"127.0.{block}.1"
    scenario = Path(__file__).resolve().parents[2] / "scenarios" / "01-leader-loss.toml"
    with socket.socket() as holder:
        holder.bind((host, 8300))
        holder.listen()
        proc = subprocess.run(
            [sys.executable, "-m", "consim.cli", "run", "--live", str(scenario)]
            + ["--host-block", str(block), "--http-port", str(HTTP_PORT + 2)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"consim run: error: {host} (ports 8300, 8301, 8302")
    assert len(proc.stderr.strip().splitlines()) == 1 and "--host-block" in proc.stderr


def test_serf_tcp_port_in_use_is_one_line_not_an_exception_group(tmp_path: Path) -> None:
    # memberlist's push-pull listens on TCP at the serf port: a holder of tcp 8301 used to
    # surface as an 80-line exception group from the gossip pool's listener.
    block = free_host_base([2], HTTP_PORT + 3, range(153, 200, 3))
    host = f"127.0.{block}.2"
    with socket.socket() as holder:
        holder.bind((host, 8301))
        holder.listen()
        proc = _up(tmp_path, "--host-block", str(block), "--http-port", str(HTTP_PORT + 3))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (
        proc.stderr
    )
    assert f"{host} (ports 8300, 8301, 8302 or {HTTP_PORT + 3}, for dc1-s2)" in proc.stderr


def test_processes_refuse_what_the_agents_cannot_take_yet(capsys) -> None:  # noqa: ANN001
    from consim.cli import main

    acl = Path(__file__).resolve().parents[2] / "docs" / "examples" / "acl.toml"
    code = main(["up", "--processes", "--acl-file", str(acl)])
    assert code == 2
    assert capsys.readouterr().err == (
        "consim up: error: --acl-file: not available with --processes yet\n"
    )
