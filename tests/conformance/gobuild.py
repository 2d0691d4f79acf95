"""Build the Go judges (hashicorp/raft nodes, Consul RPC clients) from Debian's packaged sources.

Debian ships golang-go 1.19 and the sources of hashicorp/raft, net-rpc-msgpackrpc, go-msgpack and
yamux under /usr/share/gocode; Go builds them in GOPATH mode (no module download, no internet).
A program is one directory of .go files next to its test; the binary is cached under
``.pytest_cache/go/<hash of its sources>`` so the suite builds each program once.

Without Go or the sources a local run skips with the reason; with ``CI`` set it fails, because
``.ci/run`` installs them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

DEBIAN_GOCODE = Path("/usr/share/gocode")
APT_PACKAGES = (
    "golang-go golang-github-hashicorp-raft-dev golang-github-hashicorp-net-rpc-msgpackrpc-dev "
    "golang-github-hashicorp-go-msgpack-dev golang-github-hashicorp-yamux-dev"
)
_CACHE = Path(__file__).resolve().parents[2] / ".pytest_cache" / "go"


def require_go(*imports: str) -> str:
    """The path of the ``go`` binary, or skip (fail in CI) naming what is missing."""
    go = shutil.which("go") or (
        "/usr/lib/go/bin/go" if Path("/usr/lib/go/bin/go").exists() else None
    )
    missing = [] if go else ["go"]
    missing += [p for p in imports if not (DEBIAN_GOCODE / "src" / p).is_dir()]
    if missing:
        reason = f"Go judges need {', '.join(missing)} (apt-get install {APT_PACKAGES})"
        if os.environ.get("CI"):
            raise RuntimeError(reason)
        pytest.skip(reason)
    return go


def build(program_dir: Path, *imports: str) -> Path:
    """Build the Go program in ``program_dir`` (cached by source hash); returns the binary."""
    go = require_go(*imports)
    sources = sorted(program_dir.glob("*.go"))
    digest = hashlib.sha256(
        b"".join(p.name.encode() + p.read_bytes() for p in sources)
    ).hexdigest()[:16]
    binary = _CACHE / f"{program_dir.name}-{digest}"
    if binary.exists():
        return binary
    gopath = _CACHE / "gopath"
    src = gopath / "src" / program_dir.name
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for p in sources:
        shutil.copy(p, src / p.name)
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{gopath}:{DEBIAN_GOCODE}", GOFLAGS="")
    env.setdefault("GOCACHE", str(_CACHE / "gocache"))
    tmp = binary.with_suffix(".tmp")
    done = subprocess.run(
        [go, "build", "-o", str(tmp), "."],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"go build of {program_dir} failed:\n{done.stderr}")
    tmp.rename(binary)
    return binary
