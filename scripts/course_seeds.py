"""Run every course scenario over a range of seeds and print, per scenario, how many passed.

    .venv/bin/python scripts/course_seeds.py                 # scenarios/*.toml, seeds 1..200
    .venv/bin/python scripts/course_seeds.py --seeds 1..50 --jobs 2 scenarios/03-*.toml

The same check as ``consim run --seeds 1..200 scenarios/*.toml``, spread over ``--jobs`` processes
(each run is deterministic, so the split changes nothing but wall time). Prints a
``consim run FILE --seed N`` line for every failing seed and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _seed_range(text: str) -> range:
    a, sep, b = text.partition("..")
    if not sep or not a.isdigit() or not b.isdigit() or int(b) < int(a):
        raise argparse.ArgumentTypeError(f"expected A..B with A <= B, got {text!r}")
    return range(int(a), int(b) + 1)


def run_one(path: str, seed: int) -> tuple[str, int, bool, str]:
    from consim.scenario.model import load_scenario
    from consim.scenario.runner import run_scenario

    result = run_scenario(load_scenario(path), seed=seed)
    return path, seed, result.ok, result.failure or ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="scenario files (default: scenarios/*.toml)")
    parser.add_argument("--seeds", type=_seed_range, default=range(1, 201))
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    args = parser.parse_args(argv)
    files = args.files or [str(p) for p in sorted((ROOT / "scenarios").glob("*.toml"))]

    from consim.scenario.cli import load_all

    if load_all(files, sys.stderr) is None:
        return 2
    start = time.monotonic()
    work = [(f, s) for f in files for s in args.seeds]
    results: dict[str, list[tuple[int, bool, str]]] = {f: [] for f in files}
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            outcomes = pool.map(run_one, *zip(*work, strict=True), chunksize=8)
            for path, seed, ok, failure in outcomes:
                results[path].append((seed, ok, failure))
    else:
        for f, s in work:
            _, seed, ok, failure = run_one(f, s)
            results[f].append((seed, ok, failure))
    total_failed = 0
    print(f"seeds {args.seeds.start}..{args.seeds.stop - 1}, {len(work)} runs")
    for f in files:
        failed = [(s, why) for s, ok, why in results[f] if not ok]
        total_failed += len(failed)
        print(f"{Path(f).name:40} {len(results[f]) - len(failed):4}/{len(results[f])} passed")
        for s, why in failed:
            print(f"    seed {s}: {why}\n      reproduce: consim run {f} --seed {s}")
    print(f"{len(work) - total_failed}/{len(work)} runs passed in {time.monotonic() - start:.0f}s")
    return 1 if total_failed else 0


if __name__ == "__main__":
    sys.exit(main())
