"""``consim run``/``validate`` output where it goes to files and pipes: every validation error at
once, no progress bar off a terminal, and a reader that leaves early (``| head``) ends it quietly."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from consim.scenario.cli import run_files

ROOT = Path(__file__).resolve().parents[2]
FIRST = ROOT / "scenarios" / "01-leader-loss.toml"

BAD = """name = 3
bogus = 1
[cluster]
raft_multiplier = "fast"
rpc_hold_timeout = 2
[[step]]
sleep = 3
[[step]]
wait = "leader"
[[step]]
kill = "dc1-s9"
[[step]]
http = "GET /v1/kv/x"
expect = { status = "200" }
"""


def _consim(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consim.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


def test_validate_reports_every_error_of_a_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    proc = _consim("validate", str(bad), str(FIRST))
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    expected = [
        f"error: {bad}: field 'bogus': unknown top-level field",
        f"error: {bad}: field 'name': expected a string, got 3",
        f"error: {bad}: [cluster]: field 'raft_multiplier': expected a number",
        f"error: {bad}: [cluster]: field 'rpc_hold_timeout': expected a duration",
        f"error: {bad}: step 1: field 'sleep': expected a duration",
        f"error: {bad}: step 3: field 'kill': expected a server name",
        f"error: {bad}: step 4: field 'expect.status': expected an integer >= 100",
    ]
    assert len(lines) == len(expected) + 1, proc.stderr
    for line, start in zip(lines, expected, strict=False):
        assert line.startswith(start), (line, start)
    assert lines[-1] == f"{bad}: 7 errors"
    assert "step 2" not in proc.stderr  # a valid step is not reported


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal():
    for err, bar in ((io.StringIO(), False), (_Terminal(), True)):
        out = io.StringIO()
        assert run_files([str(FIRST)], seeds=range(1, 3), out=out, err=err) == 0
        assert ("[###" in err.getvalue()) is bar, err.getvalue()
        assert "2/2 seeds passed (1..2)" in out.getvalue()


def test_reader_leaving_early_ends_quietly():
    proc = subprocess.Popen(
        [sys.executable, "-m", "consim.cli", "run", str(FIRST)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # like `| head -0`: nobody reads; the first write meets a closed pipe
    _, err = proc.communicate(timeout=120)
    assert "BrokenPipeError" not in err and "Traceback" not in err, err
    assert err == ""
    assert proc.returncode == 141
