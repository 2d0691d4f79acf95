"""Declared dependencies match what the code imports: consim's imports are core dependencies
(a plain ``pip install -e .`` runs ``consim up``/``ctl``/``run --live``), the benchmarks' are core
or the ``bench`` extra, and each benchmark stops at once with one line naming a missing package."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
BENCHMARKS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))


def _names(requirements: list[str]) -> set[str]:
    return {_norm(re.match(r"[A-Za-z0-9_.-]+", r).group(0)) for r in requirements}


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


def _third_party_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods.add(node.module.split(".")[0])
    # A benchmark may reuse another's helpers (benchmarks/ is sys.path[0] when a script runs).
    local = {"consim", "_requires", "__future__"} | {p.stem for p in BENCHMARKS}
    return {m for m in mods if m not in sys.stdlib_module_names and m not in local}


def _distribution(module: str) -> str:
    dists = importlib.metadata.packages_distributions().get(module)
    return _norm(dists[0] if dists else module)


CORE = _names(PROJECT["dependencies"])
BENCH = _names(PROJECT["optional-dependencies"]["bench"])
# Opt-in features with their own extra, imported only where used (``consim check --scheduler``
# says which extra to install when it is missing).
FEATURE_EXTRAS = _names(PROJECT["optional-dependencies"]["dask"])


def test_everything_consim_imports_is_a_core_dependency():
    imported = set()
    for path in (ROOT / "consim").rglob("*.py"):
        imported |= _third_party_imports(path)
    missing = {_distribution(m) for m in imported} - CORE - FEATURE_EXTRAS
    assert "httpx" in {_distribution(m) for m in imported}  # live HTTP, ctl, consul commands
    assert not missing, f"consim imports {sorted(missing)}, not in [project] dependencies"


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_imports_are_declared_and_checked_first(script):
    imported = _third_party_imports(script)
    missing = {_distribution(m) for m in imported} - CORE - BENCH
    assert not missing, f"{script.name} imports {sorted(missing)}, not in core or [bench]"
    # The script's own require(...) names every package beyond consim's core.
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from _requires import CORE as CHECKED_CORE
    finally:
        sys.path.pop(0)
    tree = ast.parse(script.read_text())
    required = {
        a.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "require"
        for a in node.args
        if isinstance(a, ast.Constant) and isinstance(a.value, str)
    }
    assert imported <= set(CHECKED_CORE) | required, (imported, required)
    # ...and is called before any third-party or consim import runs.
    first_call = next(
        n.lineno
        for n in tree.body
        if isinstance(n, ast.Expr)
        and isinstance(n.value, ast.Call)
        and getattr(n.value.func, "id", "") == "require"
    )
    top_level = [
        n.lineno
        for n in tree.body
        if isinstance(n, ast.Import | ast.ImportFrom)
        and (n.module if isinstance(n, ast.ImportFrom) else n.names[0].name).split(".")[0]
        in imported | {"consim"}
    ]
    # (Imports inside functions run after the module's top level, so after the check.)
    assert first_call < min(top_level, default=first_call + 1)


@pytest.mark.parametrize(
    ("script", "hidden"),
    [(p, "msgpack") for p in BENCHMARKS]
    + [
        (ROOT / "benchmarks/forwarding.py", "httpx"),
        (ROOT / "benchmarks/raft_throughput.py", "pysyncobj"),
    ],
    ids=lambda v: v.name if isinstance(v, Path) else v,
)
def test_benchmark_without_a_package_stops_at_once_naming_it(tmp_path, script, hidden):
    shadow = tmp_path / hidden
    shadow.mkdir()
    (shadow / "__init__.py").write_text(f"raise ImportError('{hidden} hidden by the test')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 2, proc.stdout[-500:] + proc.stderr[-2000:]
    assert proc.stderr.strip() == (
        f"{script.name}: needs {hidden}, not installed; install with: "
        ".venv/bin/pip install -e '.[bench]'"
    )
    assert proc.stdout == ""  # nothing ran
    assert time.monotonic() - started < 20


# Runs each script as __main__ with --help in one interpreter (consim imported once, not per script).
_HELP_DRIVER = r"""
import contextlib, io, json, runpy, sys, traceback
sys.path.insert(0, sys.argv[1])
answers = {}
for path in sys.argv[2:]:
    sys.argv = [path, "--help"]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(path, run_name="__main__")
        answers[path] = "ran without exiting: " + out.getvalue()[:200]
    except SystemExit as exc:
        text = out.getvalue()
        ok = exc.code in (0, None) and text.startswith("usage:")
        answers[path] = "" if ok else f"exit {exc.code!r}: " + text[:200]
    except BaseException:
        answers[path] = traceback.format_exc()[-600:]
print(json.dumps(answers))
"""


def test_every_benchmark_answers_help_without_running():
    """``--help`` prints the script's usage and exits: no import broken by a moved helper, no
    benchmark that ignores its arguments and runs."""
    proc = subprocess.run(
        [sys.executable, "-c", _HELP_DRIVER, str(ROOT / "benchmarks"), *map(str, BENCHMARKS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    answers = json.loads(proc.stdout.splitlines()[-1])
    assert sorted(answers) == sorted(map(str, BENCHMARKS))
    failed = {Path(p).name: why for p, why in answers.items() if why}
    assert not failed, failed
