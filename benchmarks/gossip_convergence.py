"""How fast does a keyring install reach every member? consim's gossip vs serf's analytic model.

Runs in virtual time on ``consim.gossip.harness`` (no sockets, no clock): for pools of 3, 5, 30,
100 and 1,000 members (LAN defaults: fanout 3, 200 ms gossip interval, 1-5 ms link latency), one
member starts ``_serf_install-key`` and we record when each member applied it.

Serf's convergence simulator (serf docs, "Convergence Simulator") models gossip as an epidemic:
after k rounds the infected fraction is

    f(k) = 1 / (1 + (n + 1) * exp(-c * n * k)),   c = fanout / n * (1 - loss) * (1 - failed) / 2

and the page plots rounds until f >= 99.99%, one round per gossip interval. We compute that
here (nothing hard-coded): 30 members -> 9 rounds (1.8 s), 1,000 -> 11 rounds (2.2 s).

Expect consim to beat the model: memberlist piggybacks broadcasts on probes and acks as well as
on gossip, members gossip on their own (random) beats so a fresh receiver waits half a round on
average, not a whole one, and the model's continuous logistic tail (the (n + 1) * 1e4 it must
shrink for 99.99%) is far slower than a finite pool really is once a few members are left. The chart is written to benchmarks/out/gossip_convergence.svg.

    .venv/bin/python benchmarks/gossip_convergence.py [--sizes 3,5,30,100,1000] [--seeds 5]
"""

from __future__ import annotations

from _requires import require  # benchmarks/ is sys.path[0] when a script runs

require(__file__)

import argparse
import base64
import math
import os
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from consim.gossip.config import GossipConfig  # noqa: E402
from consim.gossip.harness import Harness  # noqa: E402

TARGET = 0.9999
OLD_KEY = bytes(range(16))
NEW_KEY_B64 = base64.b64encode(bytes(range(100, 132))).decode()
OUT_SVG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "gossip_convergence.svg")


# ------------------------------------------------------------------------------ serf's model


def model_fraction(
    rounds: float, n: int, fanout: int, loss: float = 0.0, failed: float = 0.0
) -> float:
    contact = fanout / n * (1 - loss) * (1 - failed) * 0.5
    infected = n / (1 + (n + 1) * math.exp(-contact * n * rounds))
    return infected / n


def model_rounds(n: int, fanout: int, target: float = TARGET) -> int:
    rounds = 0
    while model_fraction(rounds, n, fanout) < target and rounds < 100:
        rounds += 1
    return rounds


# ------------------------------------------------------------------------------ measurement


@dataclass
class Run:
    n: int
    seed: int
    times: list[float]  # seconds after the query started, sorted, one per member
    query_done: float  # when the originator had every answer
    wall: float


def measure(n: int, seed: int, config: GossipConfig) -> Run:
    started = time.perf_counter()
    h = Harness(seed, record_trace=False)
    h.add_pool(n, keys=[OLD_KEY], config=config, preseeded=True)
    h.run_for(1.0)  # let probes and timers settle into their phases
    applied: dict[str, float] = {}

    def on_event(now: float, name: str, event) -> None:  # noqa: ANN001
        if event.kind == "key_installed" and event.fields.get("ok"):
            applied.setdefault(name, now)

    h.listeners.append(on_event)
    t0 = h.now
    qid = h.keyring_query("dc1-s1", "install", NEW_KEY_B64)
    ok = h.run_until_true(lambda: len(applied) == n, 60, step=0.05)
    if not ok:
        print(f"  n={n} seed={seed}: only {len(applied)}/{n} members got the key", file=sys.stderr)
    h.wait_result("dc1-s1", qid)
    done = h.result_times[("dc1-s1", qid)]
    times = sorted(t - t0 for t in applied.values())
    return Run(n, seed, times, done - t0, time.perf_counter() - started)


def quantile_time(times: list[float], n: int, q: float) -> float:
    """Time by which ceil(q * n) members had the key."""
    need = max(1, math.ceil(q * n - 1e-9))
    return times[need - 1] if len(times) >= need else math.inf


# ------------------------------------------------------------------------------ chart


COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def write_svg(runs: dict[int, list[Run]], interval: float, fanout: int, path: str) -> None:
    width, height, left, right, top, bottom = 860, 480, 70, 210, 40, 60
    t_max = 0.0
    for group in runs.values():
        for r in group:
            t_max = max(t_max, r.times[-1] if r.times else 0.0)
    t_max = max(t_max, max(model_rounds(n, fanout) * interval for n in runs)) * 1.05
    pw, ph = width - left - right, height - top - bottom

    def x(t: float) -> float:
        return left + pw * t / t_max

    def y(frac: float) -> float:
        return top + ph * (1 - frac)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="22" font-size="15" font-weight="bold">Keyring install convergence: '
        f"consim gossip (solid) vs serf model (dashed)</text>",
    ]
    for i in range(6):  # y grid
        frac = i / 5
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y(frac):.1f}" y2="{y(frac):.1f}" stroke="#ddd"/>'
        )
        parts.append(
            f'<text x="{left - 8}" y="{y(frac) + 4:.1f}" text-anchor="end">{frac * 100:.0f}%</text>'
        )
    step = 0.25 if t_max <= 3 else 0.5
    t = 0.0
    while t <= t_max + 1e-9:
        parts.append(
            f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{top + ph}" stroke="#eee"/>'
        )
        parts.append(f'<text x="{x(t):.1f}" y="{top + ph + 18}" text-anchor="middle">{t:g}</text>')
        t += step
    parts.append(
        f'<text x="{left + pw / 2}" y="{height - 15}" text-anchor="middle">seconds after the query started</text>'
    )
    parts.append(
        f'<text x="18" y="{top + ph / 2}" transform="rotate(-90 18 {top + ph / 2})" '
        f'text-anchor="middle">members with the new key</text>'
    )
    parts.append(
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>'
    )
    for idx, (n, group) in enumerate(sorted(runs.items())):
        color = COLORS[idx % len(COLORS)]
        # measured: median over seeds of the time the k-th member got the key
        times = [sorted(r.times[k] for r in group)[len(group) // 2] for k in range(n)]
        pts = [(0.0, 0.0)] + [(tk, (k + 1) / n) for k, tk in enumerate(times)]
        steps = []
        prev = 0.0
        for tk, frac in pts:
            steps.append(f"{x(tk):.1f},{y(prev):.1f} {x(tk):.1f},{y(frac):.1f}")
            prev = frac
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(steps)}"/>'
        )
        model_pts = []
        rounds = model_rounds(n, fanout)
        for k in range(rounds + 1):
            model_pts.append(f"{x(k * interval):.1f},{y(model_fraction(k, n, fanout)):.1f}")
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="6,4" '
            f'points="{" ".join(model_pts)}"/>'
        )
        ly = top + 20 + idx * 22
        parts.append(
            f'<line x1="{left + pw + 15}" x2="{left + pw + 45}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"/>'
        )
        parts.append(f'<text x="{left + pw + 52}" y="{ly + 4}">{n} members</text>')
    ly = top + 20 + len(runs) * 22 + 10
    parts.append(
        f'<line x1="{left + pw + 15}" x2="{left + pw + 45}" y1="{ly}" y2="{ly}" stroke="#333" stroke-dasharray="6,4"/>'
    )
    parts.append(f'<text x="{left + pw + 52}" y="{ly + 4}">serf model</text>')
    parts.append("</svg>")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


# ------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,5,30,100,1000")
    parser.add_argument(
        "--seeds", type=int, default=5, help="runs per size (1,000-member pools: 3)"
    )
    parser.add_argument("--out", default=OUT_SVG)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    config = GossipConfig.lan()
    interval, fanout = config.gossip_interval, config.gossip_nodes

    runs: dict[int, list[Run]] = {}
    total_start = time.perf_counter()
    for i, n in enumerate(sizes, 1):
        seeds = min(3, args.seeds) if n >= 1000 else args.seeds
        for s in range(seeds):
            print(
                f"[{i}/{len(sizes)}] {n:>5} members, run {s + 1}/{seeds} ...",
                end=" ",
                file=sys.stderr,
                flush=True,
            )
            run = measure(n, 1000 + s, config)
            runs.setdefault(n, []).append(run)
            print(
                f"all {n} in {run.times[-1]:.3f}s virtual ({run.wall:.1f}s wall)",
                file=sys.stderr,
                flush=True,
            )

    print()
    print(
        f"Keyring install convergence, LAN defaults (fanout {fanout}, {interval * 1000:.0f} ms gossip), virtual time"
    )
    header = f"{'members':>8} {'runs':>4} {'50% (s)':>9} {'99.99% (s)':>11} {'100% max (s)':>13} {'query done (s)':>15} {'serf model 99.99% (s)':>22} {'rounds':>7}"
    print(header)
    print("-" * len(header))
    for n, group in sorted(runs.items()):
        med = sorted(quantile_time(r.times, n, 0.5) for r in group)[len(group) // 2]
        p9999 = sorted(quantile_time(r.times, n, TARGET) for r in group)[len(group) // 2]
        worst = max(r.times[-1] for r in group)
        qdone = sorted(r.query_done for r in group)[len(group) // 2]
        rounds = model_rounds(n, fanout)
        print(
            f"{n:>8} {len(group):>4} {med:>9.3f} {p9999:>11.3f} {worst:>13.3f} {qdone:>15.3f} "
            f"{rounds * interval:>22.1f} {rounds:>7}"
        )
    print()
    print(
        "50%/99.99%: median over runs of the time by which that share of members applied the key;"
    )
    print("query done: when the originator had every answer (answers are direct datagrams).")
    write_svg(runs, interval, fanout, args.out)
    print(
        f"chart: {os.path.relpath(args.out)}   (total {time.perf_counter() - total_start:.1f}s wall)"
    )


if __name__ == "__main__":
    main()
