"""How fast the linearizability checker is, whether it agrees with brute force, and campaign speed.

Run: ``.venv/bin/python benchmarks/check.py [--histories 5] [--ops 10000] [--agreement 5000]
[--campaign-seeds 4] [--jobs 2] [--no-campaign]``.

1. Checker time on generated histories (a simulated linearizable register: 10,000 operations,
   3 keys, 5 clients; 3% fail, 3% info of which some take effect long after they timed out):
   valid ones, and the same with one read made stale (invalid: the time includes finding and
   minimizing the window). Side by side, the same search without bounding info operations by
   their last observer (the reason it is there). Target: under 5 s per history. Then one harder
   history for the record: one key, 10 clients, 10% info.
2. Agreement with the brute-force checker (every real-time-respecting order, no memoization, no
   per-key split) on N small generated histories and N mutated ones: counts of each verdict and
   of disagreements (must be 0).
3. Campaign throughput: seeds per minute of 60 virtual seconds each, default nemesis, 2 jobs,
   through ``consim.check.campaign.campaign_throughput`` when it is there.
"""

from __future__ import annotations

from _requires import require  # benchmarks/ is sys.path[0] when a script runs

require(__file__)

import argparse
import random
import statistics
import time

from consim.check import linearizability as lin
from consim.check.bruteforce import check_bruteforce
from consim.check.history import History
from consim.check.synthetic import linearizable_history, mutate


def stale(history: History, rng: random.Random, back: int = 4) -> History:
    """One ok read in the second half returns the value written ``back`` writes earlier."""
    events = history.events
    candidates = [
        i for i, e in enumerate(events) if e.f == "read" and e.type == "ok" and i > len(events) // 2
    ]
    for i in rng.sample(candidates, len(candidates)):
        key = events[i].key
        writes = [e.value for e in events[:i] if e.f == "write" and e.type == "ok" and e.key == key]
        if len(writes) >= back:
            events[i].value = writes[-back]
            return history
    raise RuntimeError("no read to make stale")


def timed(history: History, budget: int) -> tuple[float, lin.LinearizabilityResult]:
    t0 = time.perf_counter()
    result = lin.check_linearizable(history, budget=budget)
    return time.perf_counter() - t0, result


def checker_time(args: argparse.Namespace) -> None:
    print(
        f"== checker time: {args.histories} generated histories of {args.ops} operations, "
        f"3 keys, 5 clients (target < 5 s each)"
    )
    rows = {"valid": [], "invalid (stale read)": [], "invalid, info unbounded": []}
    for seed in range(1, args.histories + 1):
        rng = random.Random(seed)
        t0 = time.perf_counter()
        h = linearizable_history(rng, ops=args.ops, keys=3, clients=5)
        gen = time.perf_counter() - t0
        dt, r = timed(h, args.budget)
        assert r.verdict == "valid", r.describe()
        rows["valid"].append(dt)
        print(f"  seed {seed}: generated in {gen:.2f} s; valid in {dt:.3f} s ({r.explored} steps)")
        h = stale(h, rng)
        dt, r = timed(h, args.budget)
        assert r.verdict == "invalid", r.describe()
        rows["invalid (stale read)"].append(dt)
        print(
            f"           stale read: {r.verdict} in {dt:.3f} s ({r.explored} steps), window of "
            f"{len(r.window)} operations on {r.failing_key}"
        )
        lin._BOUND_INFO = False
        try:
            dt, r = timed(h, args.budget)
        finally:
            lin._BOUND_INFO = True
        rows["invalid, info unbounded"].append(dt)
        print(
            f"           the same, info operations unbounded: {r.verdict} in {dt:.3f} s "
            f"({r.explored} steps, budget {args.budget} per key)"
        )
    print(
        "  harder, for the record: 4000 operations on ONE key by 10 clients, 10% info "
        "(all concurrency on a single register)"
    )
    rng = random.Random(99)
    h = linearizable_history(rng, ops=4000, keys=1, clients=10, info_rate=0.1)
    dt, r = timed(h, args.budget)
    rows.setdefault("harder: valid", []).append(dt)
    print(f"           {r.verdict} in {dt:.3f} s ({r.explored} steps)")
    h = stale(h, rng, back=30)
    dt, r = timed(h, args.budget)
    rows.setdefault("harder: stale read", []).append(dt)
    print(
        f"           stale read: {r.verdict} in {dt:.3f} s ({r.explored} steps), window of "
        f"{len(r.window)} operations"
    )
    print("  summary (median / max seconds):")
    for name, times in rows.items():
        print(f"    {name:<26} {statistics.median(times):7.3f} / {max(times):7.3f}")


def agreement(args: argparse.Namespace) -> None:
    print(f"== agreement with brute force: {args.agreement} small histories, generated + mutated")
    counts = {"valid": 0, "invalid": 0}
    disagree = []
    sizes = []
    t0 = time.perf_counter()
    for seed in range(args.agreement):
        rng = random.Random(10_000 + seed)
        made = linearizable_history(
            rng,
            ops=rng.randint(1, 10),
            keys=rng.randint(1, 2),
            clients=rng.randint(1, 5),
            fail_rate=0.15,
            info_rate=0.2,
            cas_rate=0.3,
        )
        for h in (made, mutate(made, rng)):
            expected = check_bruteforce(h)
            got = lin.check_linearizable(h).verdict
            sizes.append(len(h.operations()))
            counts["valid" if expected else "invalid"] += 1
            if got != ("valid" if expected else "invalid"):
                disagree.append(10_000 + seed)
    wall = time.perf_counter() - t0
    total = counts["valid"] + counts["invalid"]
    print(
        f"  {total} histories of 1-{max(sizes)} operations (mean {statistics.mean(sizes):.1f}): "
        f"{counts['valid']} valid, {counts['invalid']} invalid by brute force; "
        f"{total - len(disagree)} agree, {len(disagree)} disagree ({wall:.1f} s)"
    )
    if disagree:
        print(f"  DISAGREEMENT on seeds {disagree[:20]}")


def campaign(args: argparse.Namespace) -> None:
    print(
        f"== campaign throughput: {args.campaign_seeds} seeds x 60 virtual s, default nemesis, "
        f"{args.jobs} jobs"
    )
    try:
        from consim.check.campaign import campaign_throughput
    except ImportError as exc:
        print(f"  not available: consim.check.campaign cannot be imported ({exc})")
        return
    figures = campaign_throughput(seeds=args.campaign_seeds, jobs=args.jobs, duration=60.0)
    for name, value in figures.items():
        print(f"  {name}: {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--histories", type=int, default=5)
    parser.add_argument("--ops", type=int, default=10_000)
    parser.add_argument("--budget", type=int, default=lin.DEFAULT_BUDGET)
    parser.add_argument("--agreement", type=int, default=5000)
    parser.add_argument("--campaign-seeds", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-campaign", action="store_true")
    args = parser.parse_args()
    checker_time(args)
    agreement(args)
    if not args.no_campaign:
        campaign(args)


if __name__ == "__main__":
    main()
