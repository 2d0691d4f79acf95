"""Mutation testing for consim: inject one small bug at a time and check a test notices.

    .venv/bin/pip install -e '.[mutation]'
    nice -n 10 .venv/bin/python scripts/mutation.py --sample 80 --seed 1 --jobs 2

A small seeded mutator of its own (``ast``), not mutmut or cosmic-ray: it can draw a seeded random
sample of mutants (a full run over raft/ and server/ is thousands), it picks the tests per mutant from
a module -> test-directory map instead of a full-suite coverage pass first, and it runs plain pytest
in a subprocess, so pytest-trio and the suite's conftests behave exactly as in CI.

Each mutant changes one expression on one line (a comparison, an arithmetic or boolean operator, a
``not``, an integer or boolean constant, an augmented assignment). Each worker has its own copy of
``consim/`` put first on PYTHONPATH, so mutants run in parallel without touching the work tree.
A mutant is *killed* when its tests fail, *timed out* when they run past ``--timeout`` (counted as
killed in the score, as mutmut does), *survived* when they pass.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GLOBS = ("consim/raft/*.py", "consim/server/**/*.py")
# Module prefix -> the test directories that exercise it (first match wins). server/ is split
# across several test rooms; a restructure inside server/ keeps this map valid.
TEST_MAP: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("consim/raft/", ("tests/raft",)),
    # tests/server: where issue 12's "tests/ mirrors the source tree" puts them (skipped if absent).
    (
        "consim/server/",
        ("tests/server", "tests/runtime", "tests/http"),
    ),
)

COMPARE_SWAP: dict[type, type] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
BINOP_SWAP: dict[type, type] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.FloorDiv: ast.Mult,
    ast.Div: ast.Mult,
    ast.Mod: ast.FloorDiv,
}
BOOL_SWAP: dict[type, type] = {ast.And: ast.Or, ast.Or: ast.And}


@dataclass
class Mutant:
    path: str  # relative to ROOT
    line: int
    col: int
    end_col: int
    kind: str
    before: str
    after: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class Result:
    mutant: Mutant
    status: str  # killed | survived | timeout
    seconds: float
    tests: list[str]
    failed: str = ""  # the first failing test, for a killed mutant


def _skip_lines(tree: ast.Module) -> set[int]:
    """Lines not worth mutating: docstrings, annotations, ``if TYPE_CHECKING`` and ``__all__``."""
    skip: set[int] = set()

    def cover(node: ast.AST) -> None:
        skip.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))

    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            cover(node)  # docstrings and bare strings
        elif (
            isinstance(node, ast.AnnAssign)
            or isinstance(node, ast.arg)
            and node.annotation is not None
        ):
            cover(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            cover(node.returns)
        elif (
            isinstance(node, ast.If)
            and "TYPE_CHECKING" in ast.unparse(node.test)
            or isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
        ):
            cover(node)
    return skip


def _variants(node: ast.AST) -> list[tuple[str, ast.AST]]:
    """Each one-step mutation of ``node`` (the node itself, not its children)."""
    out: list[tuple[str, ast.AST]] = []

    def clone() -> ast.AST:
        return ast.parse(ast.unparse(node), mode="eval").body

    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            swap = COMPARE_SWAP.get(type(op))
            if swap:
                new = clone()
                new.ops[i] = swap()
                out.append(("compare", new))
    elif isinstance(node, ast.BinOp) and type(node.op) in BINOP_SWAP:
        # Skip string formatting ("%" on a str) and string concatenation.
        if not any(
            isinstance(side, ast.Constant | ast.JoinedStr)
            and isinstance(getattr(side, "value", ""), str)
            for side in (node.left, node.right)
        ):
            new = clone()
            new.op = BINOP_SWAP[type(node.op)]()
            out.append(("arith", new))
    elif isinstance(node, ast.BoolOp):
        new = clone()
        new.op = BOOL_SWAP[type(node.op)]()
        out.append(("boolean", new))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        out.append(("not", clone().operand))
    elif isinstance(node, ast.Constant) and type(node.value) is bool:
        out.append(("constant", ast.Constant(not node.value)))
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        out.append(("constant", ast.Constant(node.value + 1)))
    return out


def mutants_of(path: Path) -> list[Mutant]:
    """Every mutant of one file, each a replacement of one single-line expression."""
    source = path.read_text()
    lines = source.splitlines(keepends=True)
    tree = ast.parse(source)
    skip = _skip_lines(tree)
    rel = str(path.relative_to(ROOT))
    found: list[Mutant] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.expr) or node.lineno != node.end_lineno or node.lineno in skip:
            continue
        segment = lines[node.lineno - 1].encode()[node.col_offset : node.end_col_offset].decode()
        for kind, new in _variants(node):
            after = ast.unparse(new)
            if isinstance(node, ast.BinOp | ast.BoolOp | ast.Compare) or kind == "not":
                after = f"({after})"  # keeps precedence where the segment sits in a larger expr
            if after.strip("()") == segment.strip("()"):
                continue
            found.append(
                Mutant(rel, node.lineno, node.col_offset, node.end_col_offset, kind, segment, after)
            )
    return found


def apply(source: str, mutant: Mutant) -> str:
    lines = source.splitlines(keepends=True)
    raw = lines[mutant.line - 1].encode()
    raw = raw[: mutant.col] + mutant.after.encode() + raw[mutant.end_col :]
    lines[mutant.line - 1] = raw.decode()
    return "".join(lines)


def tests_for(path: str) -> list[str]:
    for prefix, dirs in TEST_MAP:
        if path.startswith(prefix):
            return [d for d in dirs if (ROOT / d).is_dir()]
    return ["tests"]


# Live tests bind real ports: parallel workers (and other people's live clusters) would collide,
# killing mutants for the wrong reason. Mutants run the virtual-time tests only; test_cli_up.py
# starts `consim up` on real ports too, and failed the unmutated baseline under load.
DESELECT = "not live and not test_cli_up"


def _pytest(workdir: Path, tests: list[str], timeout: float) -> tuple[str, float, str]:
    """Run ``tests`` against the copy in ``workdir``: (status, seconds, the first failing test)."""
    env = dict(os.environ, PYTHONPATH=str(workdir), PYTHONDONTWRITEBYTECODE="1")
    # -P: no cwd on sys.path, so the worker's copy of consim/ (PYTHONPATH) is the one imported.
    cmd = [sys.executable, "-P", "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    cmd += ["-k", DESELECT, *tests]
    start = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - start, ""
    elapsed = time.monotonic() - start
    # The first failing test names the killer, so a kill by a flaky test can be told apart.
    failed = next(
        (
            ln.split(" - ")[0]
            for ln in proc.stdout.splitlines()
            if ln.startswith(("FAILED", "ERROR"))
        ),
        "",
    )
    # 0 passed; 1 a test failed; anything else (collection error, crash) also means noticed.
    return ("survived" if proc.returncode == 0 else "killed"), elapsed, failed


class Workers:
    """A private copy of consim/ per worker; each mutant is written into a free copy."""

    def __init__(self, jobs: int) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="consim-mutation-"))
        self.free: list[Path] = []
        for i in range(jobs):
            work = self.base / f"w{i}"
            shutil.copytree(
                ROOT / "consim", work / "consim", ignore=shutil.ignore_patterns("__pycache__")
            )
            self.free.append(work)

    def run(self, mutant: Mutant, timeout: float) -> Result:
        work = self.free.pop()
        target = work / mutant.path
        original = target.read_text()
        try:
            target.write_text(apply(original, mutant))
            tests = tests_for(mutant.path)
            status, seconds, failed = _pytest(work, tests, timeout)
            return Result(mutant, status, round(seconds, 1), tests, failed)
        finally:
            target.write_text(original)
            self.free.append(work)

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def collect(globs: list[str]) -> list[Path]:
    paths: set[Path] = set()
    for pattern in globs:
        for name in glob.glob(str(ROOT / pattern), recursive=True):
            p = Path(name)
            if p.suffix == ".py" and p.is_file():
                paths.add(p.resolve())
    return sorted(paths)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("globs", nargs="*", default=list(DEFAULT_GLOBS), help="module globs")
    parser.add_argument(
        "--sample", type=int, default=0, help="run N mutants drawn at random (0: all)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed for --sample")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant")
    parser.add_argument("--json", metavar="OUT", help="write every result as JSON")
    parser.add_argument("--list", action="store_true", help="only list the mutants, run nothing")
    parser.add_argument(
        "--rerun", metavar="JSON", help="run again only the survivors recorded in an earlier --json"
    )
    args = parser.parse_args(argv)

    files = collect(args.globs)
    if not files:
        print(f"mutation.py: no module matches {' '.join(args.globs)}", file=sys.stderr)
        return 2
    every = [m for f in files for m in mutants_of(f)]
    chosen = every
    if args.rerun:
        earlier = json.loads(Path(args.rerun).read_text())["results"]
        wanted = {tuple(r["mutant"].values()) for r in earlier if r["status"] == "survived"}
        chosen = [m for m in every if tuple(asdict(m).values()) in wanted]
        # A survivor whose line has changed since is no longer the same mutant.
        print(f"rerun: {len(chosen)} of {len(wanted)} survivors of {args.rerun} still apply")
    elif args.sample and args.sample < len(every):
        chosen = random.Random(args.seed).sample(every, args.sample)
        chosen.sort(key=lambda m: (m.path, m.line, m.col))
    print(f"mutants generated: {len(every)} in {len(files)} modules", flush=True)
    if args.sample:
        print(f"sample: {len(chosen)} (--sample {args.sample} --seed {args.seed})", flush=True)
    if args.list:
        for m in chosen:
            print(f"{m.where}  {m.kind:8}  {m.before}  ->  {m.after}")
        return 0

    tty = sys.stderr.isatty()
    workers = Workers(args.jobs)
    results: list[Result] = []
    start = time.monotonic()
    try:
        # The unmutated code must pass first, or every mutant would count as killed.
        for tests in sorted({tuple(tests_for(m.path)) for m in chosen}):
            status, seconds, failed = _pytest(workers.free[0], list(tests), args.timeout)
            print(f"baseline {' '.join(tests)}: {status} in {seconds:.0f}s {failed}", flush=True)
            if status != "survived":
                print(
                    "mutation.py: the unmutated tests do not pass; fix that first", file=sys.stderr
                )
                return 2
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(workers.run, m, args.timeout) for m in chosen]
            for fut in concurrent.futures.as_completed(futures):
                results.append(fut.result())
                if tty:
                    r = results[-1]
                    print(
                        f"\r[{len(results)}/{len(chosen)}] {r.status:8} {r.mutant.where}".ljust(70),
                        end="",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        workers.close()
    if tty:
        print(file=sys.stderr)
    results.sort(key=lambda r: (r.mutant.path, r.mutant.line, r.mutant.col))
    counts = {s: sum(r.status == s for r in results) for s in ("killed", "survived", "timeout")}
    score = (counts["killed"] + counts["timeout"]) / len(results) if results else 1.0
    print(f"mutants run: {len(results)} in {time.monotonic() - start:.0f}s (--jobs {args.jobs})")
    print(
        f"killed: {counts['killed']}  survived: {counts['survived']}  timed out: {counts['timeout']}"
    )
    print(f"score: {score:.1%} (killed + timed out over run)")
    for r in results:
        if r.status == "survived":
            m = r.mutant
            print(f"SURVIVED {m.where}  {m.kind}: {m.before} -> {m.after}")
            print(f"  -{_line(m, False)}\n  +{_line(m, True)}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "generated": len(every),
                    "run": len(results),
                    "seed": args.seed,
                    "sample": args.sample,
                    **counts,
                    "score": score,
                    "results": [asdict(r) for r in results],
                },
                indent=1,
            )
        )
    return 0


def _line(m: Mutant, mutated: bool) -> str:
    text = (ROOT / m.path).read_text()
    if mutated:
        text = apply(text, m)
    return text.splitlines()[m.line - 1].strip()


if __name__ == "__main__":
    raise SystemExit(main())
