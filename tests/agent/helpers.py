"""Starting ``consim agent`` processes for tests: one per address, output to a file, HTTP with a
deadline (polls; never a fixed sleep as an assertion)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

KEY = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="


class AgentProc:
    """One ``consim agent -server`` child: its flags, data dir and output file."""

    def __init__(self, name: str, host: str, root: Path, extra: list[str]) -> None:
        self.name, self.host = name, host
        self.data_dir = root / name
        self.log = root / f"{name}.log"
        config = root / "performance.json"
        config.write_text(json.dumps({"performance": {"raft_multiplier": 1}}))
        self.argv = [
            "-server",
            f"-node={name}",
            f"-bind={host}",
            f"-client={host}",
            f"-data-dir={self.data_dir}",
            f"-config-file={config}",
            "-retry-interval=1s",
            *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"{self.host}:8500"

    @property
    def rpc(self) -> str:
        return f"{self.host}:8300"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "consim.cli", "agent", *self.argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 20) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def node_id(self) -> str:
        return (self.data_dir / "node-id").read_text().strip()

    def get(self, path: str, timeout: float = 5) -> Any:
        r = httpx.get(f"http://{self.http}{path}", timeout=timeout)
        r.raise_for_status()
        return r.json() if r.content else None


def until(what: str, check: Callable[[], Any], within: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy (errors count as not yet)."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as exc:  # noqa: BLE001 - not up yet, connection refused, ...
            last = exc
        else:
            if result:
                return result
            last = result
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {within}s (last: {last!r})")


def netns_skip_reason() -> str | None:
    """Why network namespaces cannot be used here (None: they can)."""
    import shutil

    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (apt-get install iproute2 nftables)"
    name = f"consim-probe-{os.getpid()}"
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"'ip netns add' fails here: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None
