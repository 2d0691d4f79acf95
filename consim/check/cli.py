"""``consim check``: argument parsing and printing; the work is in campaign.py.

Exit codes: 0 every seed valid, 1 a seed invalid, 3 a verdict unknown (search budget exhausted),
2 bad usage or an unreadable history file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, TextIO

from consim.check.campaign import (
    EXIT_CODES,
    CheckConfig,
    describe,
    overall_verdict,
    progress_printer,
    run_campaign,
    summary_table,
)
from consim.check.nemesis import parse_nemesis
from consim.golike import GoError, parse_duration


def _seeds(text: str) -> range:
    m = re.fullmatch(r"(\d+)\.\.(\d+)", text)
    if not m or int(m.group(2)) < int(m.group(1)):
        raise argparse.ArgumentTypeError(f"expected A..B with A <= B (e.g. 1..20), got {text!r}")
    return range(int(m.group(1)), int(m.group(2)) + 1)


def _seconds(text: str) -> float:
    """``20`` or ``"20s"``, ``"1m"`` (Go durations)."""
    try:
        value = float(text)
    except ValueError:
        try:
            value = parse_duration(text)
        except GoError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration, got {text!r}")
    return value


def _nemesis(text: str) -> tuple[str, ...]:
    try:
        return parse_nemesis(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _scheduler(text: str) -> str:
    if not re.fullmatch(r"(tcp|tls|inproc|ws|wss)://\S+", text):
        raise argparse.ArgumentTypeError(f"expected tcp://HOST:PORT, got {text!r}")
    return text


def register_check_command(sub: Any) -> None:
    from consim.check.campaign import DEFAULT_NEMESIS
    from consim.testing.faults import RULES

    p = sub.add_parser(
        "check",
        help="run a workload under faults, record the history, check linearizability and invariants",
    )
    p.add_argument("--clients", type=int, default=5, help="concurrent clients (default 5)")
    p.add_argument("--keys", type=int, default=3, help="keys (default 3)")
    p.add_argument(
        "--rate", type=float, default=10.0, help="operations/s, all clients (default 10)"
    )
    p.add_argument(
        "--duration", type=_seconds, default=20.0, help="seconds of workload (default 20; 1m ok)"
    )
    p.add_argument("--consistency", choices=["default", "consistent", "stale"], default="default")
    p.add_argument(
        "--nemesis",
        type=_nemesis,
        default=DEFAULT_NEMESIS,
        help="comma-separated: partition,kill,pause,loss,delay,membership or none; "
        "partition:SHAPE (halves, isolate-leader, bridge, majority-ring, one-way), kill:leader, "
        f"pause:leader (default {','.join(DEFAULT_NEMESIS)})",
    )
    p.add_argument(
        "--interval", type=_seconds, default=5.0, help="seconds per fault and between (default 5)"
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        help="a client gives up after this long; the outcome is then unknown (default 10)",
    )
    p.add_argument("--quiet", type=float, default=5.0, help="seconds after the heal (default 5)")
    p.add_argument("--servers", type=int, default=3)
    p.add_argument("--raft-multiplier", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=_seeds, help="run seeds A..B (instead of --seed)")
    p.add_argument("--jobs", type=int, default=1, help="parallel processes for --seeds")
    p.add_argument(
        "--scheduler",
        type=_scheduler,
        help="send seeds to a Dask distributed scheduler at tcp://HOST:PORT (consim[dask])",
    )
    p.add_argument(
        "--json", metavar="FILE", help="write every seed's result as JSON ('-' = stdout)"
    )
    p.add_argument(
        "--store", metavar="DIR", help="keep DIR/seed-N/{history.jsonl,results.json,report.html}"
    )
    p.add_argument("--history", metavar="FILE", help="only check a history file (JSON lines)")
    p.add_argument(
        "--report",
        metavar="FILE.html",
        help="write the HTML report (of the first seed that is not valid, else the last)",
    )
    p.add_argument("--budget", type=int, default=10_000_000, help="search steps per key")
    p.add_argument("--live", action="store_true", help="real sockets and the wall clock")
    p.add_argument(
        "--host-block", type=int, help="with --live: 127.0.N.x block (default: a free one)"
    )
    # Test-only: break one safety rule on purpose (consim.testing.faults).
    p.add_argument(
        "--break", dest="broken", action="append", default=[], choices=RULES, help=argparse.SUPPRESS
    )
    p.set_defaults(func=main_check)


def main_check(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if args.history:
        from consim.check.offline import check_history_file

        return check_history_file(
            args.history,
            budget=args.budget,
            json_path=args.json,
            report_path=args.report,
            out=out,
            err=err,
        )
    try:
        config = CheckConfig.from_options(args)
    except ValueError as exc:
        print(f"consim check: error: {exc}", file=err)
        return 2
    seeds = args.seeds if args.seeds is not None else range(args.seed, args.seed + 1)
    store = Path(args.store) if args.store else None
    outcomes: dict[int, dict[str, Any]] = {}
    try:
        results = run_campaign(
            config,
            seeds,
            jobs=args.jobs,
            scheduler=args.scheduler,
            store=store,
            on_result=progress_printer(err) if len(seeds) > 1 else None,
            keep=outcomes if args.report else None,
        )
    except RuntimeError as exc:
        print(f"consim check: error: {exc}", file=err)
        return 2
    verdict = overall_verdict(results)
    if len(results) == 1:
        r = results[0]
        print(
            f"==> seed {r['seed']}: {r['ops']} operations, {r['faults']} faults, "
            f"{r['virtual_seconds'] or config.duration:g}s {'live' if config.live else 'virtual'}",
            file=out,
        )
        print(describe(r), file=out)
        if r["verdict"] == "valid":
            print(r["linearizability_text"].splitlines()[0], file=out)
    else:
        print(summary_table(results), file=out)
        bad = [r for r in results if r["verdict"] != "valid"]
        print(
            f"==> {len(results) - len(bad)}/{len(results)} seeds valid "
            f"({seeds.start}..{seeds.stop - 1}); verdict: {verdict}",
            file=out,
        )
        for r in bad:
            print(file=out)
            print(describe(r), file=out)
    if store is not None:
        print(f"==> store: {store}/seed-N/ (history.jsonl, results.json, report.html)", file=out)
    if args.report:
        from consim.check.campaign import render_report

        chosen = next((r for r in results if r["verdict"] != "valid"), results[-1])
        page = render_report(outcomes[chosen["seed"]])
        Path(args.report).write_text(page, encoding="utf-8")
        print(f"==> report written to {args.report} (seed {chosen['seed']})", file=out)
    if args.json:
        text = json.dumps({"verdict": verdict, "seeds": results}, indent=2) + "\n"
        if args.json == "-":
            out.write(text)
        else:
            Path(args.json).write_text(text, encoding="utf-8")
    return EXIT_CODES[verdict]
