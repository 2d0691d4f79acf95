"""The history, the checker and the report are pure Python: no trio, sockets or clocks, so the
same history always gets the same verdict, window and page."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CHECK = Path(__file__).resolve().parents[2] / "consim" / "check"
PURE = ["history", "linearizability", "bruteforce", "synthetic", "report", "offline"]
FORBIDDEN = {"trio", "socket", "time", "asyncio", "threading", "datetime", "secrets", "os"}


@pytest.mark.parametrize("name", PURE)
def test_no_clock_socket_or_trio_imports(name):
    tree = ast.parse((CHECK / f"{name}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, sorted(imported & FORBIDDEN)
    # randomness only from a random.Random passed in
    calls = {
        f"{n.func.value.id}.{n.func.attr}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and isinstance(n.func.value, ast.Name)
    }
    assert not {c for c in calls if c.startswith("random.") and c != "random.Random"}


def test_importing_them_pulls_in_no_trio():
    code = (
        "import sys\n"
        + "".join(f"import consim.check.{n}\n" for n in PURE)
        + "print(sorted(m for m in ('trio', 'socket', 'quart', 'hypercorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
