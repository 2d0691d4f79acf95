"""Two inner loops against another revision's, side by side: gossip's LZW compressor and the
linearizability checker's search.

Run: ``.venv/bin/python benchmarks/inner_loops.py [--base REV] [--rounds 15]``.

The base revision's ``consim/gossip/lzw.py`` and ``consim/check/linearizability.py`` are read with
``git show REV:path`` and loaded beside the working tree's (they import only the standard library
and consim modules that both share). Both get the same inputs, alternating which goes first round
by round; outputs must agree (compressed bytes; verdict and steps). Printed: the best time of each
and this/base per workload, and for the search the median of the per-round ratios.
"""

from __future__ import annotations

from _requires import require  # benchmarks/ is sys.path[0] when a script runs

require(__file__)

import argparse
import importlib.util
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from check import stale

from consim.check import linearizability
from consim.check.synthetic import linearizable_history
from consim.gossip import lzw

ROOT = Path(__file__).resolve().parent.parent


def base_module(rev: str, path: str, name: str, tmp: Path) -> ModuleType:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True, capture_output=True
    ).stdout
    file = tmp / f"{name}.py"
    file.write_bytes(source)
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def alternate(
    rounds: int, this: ModuleType, base: ModuleType, run: Callable[[ModuleType], None]
) -> tuple[list[float], list[float]]:
    """Per-round seconds of ``run(module)`` for this and base, the order swapped each round."""
    times: tuple[list[float], list[float]] = ([], [])
    for r in range(rounds):
        order = ((0, this), (1, base)) if r % 2 == 0 else ((1, base), (0, this))
        for slot, module in order:
            t0 = time.perf_counter()
            run(module)
            times[slot].append(time.perf_counter() - t0)
    return times


def report(name: str, times: tuple[list[float], list[float]]) -> None:
    this, base = times
    ratios = [t / b for t, b in zip(this, base, strict=True)]
    print(
        f"  {name:<34} base {min(base) * 1e3:9.2f} ms  this {min(this) * 1e3:9.2f} ms  "
        f"this/base best {min(this) / min(base):.3f}, median of rounds "
        f"{statistics.median(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="the revision to compare with")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old_lzw = base_module(args.base, "consim/gossip/lzw.py", "base_lzw", Path(tmp))
        old_lin = base_module(
            args.base, "consim/check/linearizability.py", "base_linearizability", Path(tmp)
        )
    rng = random.Random(7)
    print(f"== LZW compress, this tree vs {args.base} (20 calls a round)")
    payloads = {
        "1 KiB, 20 symbols": bytes(rng.choice(b'abcdefghij {}:,"0123') for _ in range(1024)),
        "64 KiB random (table resets)": rng.randbytes(65536),
    }
    for name, data in payloads.items():
        assert lzw.compress(data) == old_lzw.compress(data), name
        assert lzw.decompress(lzw.compress(data)) == data, name

        def run(module: ModuleType, data: bytes = data) -> None:
            for _ in range(20):
                module.compress(data)

        report(name, alternate(args.rounds, lzw, old_lzw, run))

    print(f"== linearizability search (_search per key), this tree vs {args.base}")
    work = []
    for seed, kw, back in (
        (1, {"ops": 10_000, "keys": 3, "clients": 5}, 4),
        (99, {"ops": 4000, "keys": 1, "clients": 10, "info_rate": 0.1}, 30),
    ):
        hrng = random.Random(seed)
        history = linearizable_history(hrng, **kw)
        for h in (history, stale(history, hrng, back=back)):
            by_key: dict[str, list] = {}
            for op in h.operations():
                by_key.setdefault(op.key, []).append(op)
            work += [linearizability._items(by_key[k]) for k in sorted(by_key)]
    budget = linearizability.DEFAULT_BUDGET
    for items in work:
        assert linearizability._search(items, budget) == old_lin._search(items, budget)
    steps = sum(linearizability._search(items, budget)[1] for items in work)
    print(f"  {len(work)} key histories, {steps} search steps a round; same verdicts and steps")

    def search(module: ModuleType) -> None:
        for items in work:
            module._search(items, budget)

    report("search", alternate(args.rounds, linearizability, old_lin, search))


if __name__ == "__main__":
    main()
