"""Wall time of ``consim run scenarios/*.toml`` (the whole course, virtual time), this tree side
by side with another revision.

    .venv/bin/python benchmarks/scenario_course.py [--base REV] [--runs 5] [FILE ...]

Each run is a fresh process (``python -c 'consim.cli.main(["run", ...])'``, imports included, as a
learner's ``consim run`` is), its output discarded. With ``--base`` the revision is unpacked with
``git archive`` into ``benchmarks/out/base-REV`` and run from there (``PYTHONPATH``) with the same
interpreter on the same files; the two alternate run by run so the shared machine's load falls on
both alike. Prints each run's wall and CPU time (the child's user + system: steadier than wall time on
a busy machine), the medians and min-max, and this/base. Runs from the repository
root; the runs are deterministic, so only the time differs.
"""

from __future__ import annotations

from _requires import require  # benchmarks/ is sys.path[0] when a script runs

require(__file__)

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = "import sys; from consim.cli import main; sys.exit(main(sys.argv[1:]))"


def unpack(rev: str) -> Path:
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    dest = ROOT / "benchmarks" / "out" / f"base-{sha}"
    if not (dest / "consim").is_dir():
        data = subprocess.run(
            ["git", "archive", sha, "consim"], cwd=ROOT, check=True, capture_output=True
        ).stdout
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=BytesIO(data)) as tar:
            tar.extractall(dest, filter="data")
    return dest


def imported_from(tree: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(tree))
    code = "import consim.scenario.runner as r; print(r.__file__)"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tree, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def one_run(tree: Path, files: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child: user + system)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        # cwd is the tree: ``python -c`` puts the working directory first on sys.path.
        [sys.executable, "-c", RUN, "run", *(str(ROOT / f) for f in files)],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"consim run failed in {tree} (exit {proc.returncode}): {proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return took, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="scenario files (default: scenarios/*.toml)")
    parser.add_argument("--base", help="a git revision to compare with (e.g. main)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    files = args.files or [str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("scenarios/*.toml"))]
    trees = {"this": ROOT}
    if args.base:
        trees["base"] = unpack(args.base)
    print(
        f"== consim run {len(files)} files, {args.runs} runs each"
        + (f", base {args.base}" if args.base else "")
    )
    for label, tree in trees.items():
        where = imported_from(tree)
        if not where.startswith(str(tree)):
            raise SystemExit(f"{label}: consim imported from {where}, not from {tree}")
        print(f"{label}: {where}")
    times: dict[str, list[float]] = {k: [] for k in trees}
    cpus: dict[str, list[float]] = {k: [] for k in trees}
    for i in range(args.runs):
        # Alternate which goes first, so neither always runs on a warmer machine.
        order = list(trees) if i % 2 == 0 else list(reversed(trees))
        for label in order:
            wall, cpu = one_run(trees[label], files)
            times[label].append(wall)
            cpus[label].append(cpu)
        print(
            f"run {i + 1}: "
            + ", ".join(f"{k} {times[k][-1]:.2f}s ({cpus[k][-1]:.2f}s CPU)" for k in trees),
            flush=True,
        )
    for label, ts in times.items():
        cs = cpus[label]
        print(
            f"{label:5} wall median {statistics.median(ts):.2f}s (min {min(ts):.2f}, "
            f"max {max(ts):.2f}); CPU median {statistics.median(cs):.2f}s (min {min(cs):.2f})"
        )
    if "base" in times:
        ratio = statistics.median(times["this"]) / statistics.median(times["base"])
        pairs = sorted(t / b for t, b in zip(times["this"], times["base"], strict=True))
        cpu_ratio = statistics.median(cpus["this"]) / statistics.median(cpus["base"])
        print(f"this/base wall {ratio:.3f}, CPU {cpu_ratio:.3f} (below 1: this tree is faster)")
        # Each run's pair ran back to back, so its ratio sees the same machine load.
        print(
            f"per-pair wall this/base: median {statistics.median(pairs):.3f} "
            f"(min {pairs[0]:.3f}, max {pairs[-1]:.3f})"
        )


if __name__ == "__main__":
    main()
