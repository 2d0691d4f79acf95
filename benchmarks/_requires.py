"""What the benchmark scripts need beyond the standard library, checked before any work starts.

    .venv/bin/pip install -e '.[bench]'

Each script calls :func:`require` first, so a missing package is one clear line (exit 2) instead
of an ImportError halfway through or a cluster that never answers.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

INSTALL = ".venv/bin/pip install -e '.[bench]'"
# consim itself and its own dependencies (pyproject's [project] dependencies), by import name.
CORE = (
    "consim",
    "trio",
    "msgpack",
    "cryptography",
    "hypercorn",
    "h11",
    "quart",
    "quart_trio",
    "httpx",
)
# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"quart_trio": "quart-trio"}


def require(script: str, *modules: str) -> None:
    """Exit 2 with one line naming every missing package and the install command."""
    missing = []
    for name in dict.fromkeys((*CORE, *modules)):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(DISTRIBUTIONS.get(name, name))
    if missing:
        print(
            f"{Path(script).name}: needs {', '.join(missing)}, not installed; "
            f"install with: {INSTALL}",
            file=sys.stderr,
        )
        raise SystemExit(2)
