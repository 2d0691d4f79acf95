"""Same seed, same trace: three fresh processes with different PYTHONHASHSEED give one hash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("trace_run.py")


def _spawn(seed: int, hashseed: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _collect(proc: subprocess.Popen[str], what: str) -> tuple[str, int]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"{what}: exit {proc.returncode}\n{err}"
    digest, count = out.split()
    return digest, int(count)


def test_same_seed_same_trace_in_three_processes_different_seed_differs() -> None:
    seed, other = 5, 6
    runs = {h: _spawn(seed, h) for h in ("0", "1", "4242")}
    different = _spawn(other, "0")
    results = {h: _collect(p, f"seed={seed} PYTHONHASHSEED={h}") for h, p in runs.items()}
    digests = {h: r[0] for h, r in results.items()}
    assert len(set(digests.values())) == 1, f"seed={seed}: traces differ across processes {results}"
    digest, count = results["0"]
    assert count > 50, f"seed={seed}: suspiciously short trace ({count} events)"
    other_digest, _ = _collect(different, f"seed={other}")
    assert other_digest != digest, f"seeds {seed} and {other} gave the same trace {digest}"
