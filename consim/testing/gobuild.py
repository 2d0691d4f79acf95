"""Build Go programs against Debian's packaged hashicorp sources (the suite's judges, benchmarks).

Debian ships golang-go and the sources of hashicorp/raft, net-rpc-msgpackrpc, go-msgpack and yamux
under /usr/share/gocode; Go builds them in GOPATH mode (no module download, no internet). A program
is one directory of .go files; its binary is cached under ``cache`` by a hash of its sources, so it
is built once. Safe when several processes build the same program at once (each builds in its own
directory and renames its binary into place).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

DEBIAN_GOCODE = Path("/usr/share/gocode")
APT_PACKAGES = (
    "golang-go golang-github-hashicorp-raft-dev golang-github-hashicorp-net-rpc-msgpackrpc-dev "
    "golang-github-hashicorp-go-msgpack-dev golang-github-hashicorp-yamux-dev"
)


class GoMissing(RuntimeError):
    """Go or a needed source package is not installed; the message names what to install."""


def find_go(*imports: str) -> str:
    """The path of the ``go`` binary; :class:`GoMissing` naming what is missing otherwise."""
    go = shutil.which("go") or (
        "/usr/lib/go/bin/go" if Path("/usr/lib/go/bin/go").exists() else None
    )
    missing = [] if go else ["go"]
    missing += [p for p in imports if not (DEBIAN_GOCODE / "src" / p).is_dir()]
    if missing or go is None:
        raise GoMissing(f"needs {', '.join(missing)} (apt-get install {APT_PACKAGES})")
    return go


def build(program_dir: Path, *imports: str, cache: Path) -> Path:
    """Build the Go program in ``program_dir`` (cached by source hash); returns the binary."""
    go = find_go(*imports)
    sources = sorted(program_dir.glob("*.go"))
    digest = hashlib.sha256(
        b"".join(p.name.encode() + p.read_bytes() for p in sources)
    ).hexdigest()[:16]
    binary = cache / f"{program_dir.name}-{digest}"
    if binary.exists():
        return binary
    gopath = cache / f"gopath-{os.getpid()}"
    src = gopath / "src" / program_dir.name
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for p in sources:
        shutil.copy(p, src / p.name)
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{gopath}:{DEBIAN_GOCODE}", GOFLAGS="")
    env.setdefault("GOCACHE", str(cache / "gocache"))
    tmp = binary.with_suffix(f".tmp{os.getpid()}")
    try:
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
        tmp.replace(binary)
    finally:
        shutil.rmtree(gopath, ignore_errors=True)
    return binary
