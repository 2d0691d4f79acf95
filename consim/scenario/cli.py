"""``consim run`` and ``consim validate``: the scenario commands behind ``consim/cli.py``.

Exit codes: 0 every run passed, 1 a run failed, 2 a file is invalid (nothing ran).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, TextIO

from consim.scenario.model import Scenario, ScenarioError, load_scenario

LOG_LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]


def _seed_range(text: str) -> range:
    m = re.fullmatch(r"(\d+)\.\.(\d+)", text)
    if not m or int(m.group(2)) < int(m.group(1)):
        raise argparse.ArgumentTypeError(f"expected A..B with A <= B (e.g. 1..50), got {text!r}")
    return range(int(m.group(1)), int(m.group(2)) + 1)


def load_all(files: list[str], err: TextIO) -> list[Scenario] | None:
    """Validate every file first; print every error; None if any is invalid."""
    scenarios = []
    bad = False
    for f in files:
        try:
            scenarios.append(load_scenario(f))
        except ScenarioError as exc:
            for line in exc.errors:
                print(f"error: {line}", file=err)
            if len(exc.errors) > 1:
                print(f"{f}: {len(exc.errors)} errors", file=err)
            bad = True
    return None if bad else scenarios


def cmd_validate(args: argparse.Namespace) -> int:
    scenarios = load_all(args.files, sys.stderr)
    if scenarios is None:
        return 2
    for s in scenarios:
        print(f"{s.path}: ok ({s.name}, {len(s.steps)} steps)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    return run_files(
        args.files,
        live=args.live,
        processes=args.processes,
        seed=args.seed,
        seeds=args.seeds,
        json_path=args.json,
        report_path=args.report,
        ui_path=args.ui,
        log_level=args.log_level,
        http_port=args.http_port,
        host_block=args.host_block,
        hclog=args.hclog,
        full=args.full,
    )


def run_files(
    files: list[str],
    *,
    live: bool = False,
    processes: bool = False,
    seed: int | None = None,
    seeds: range | None = None,
    json_path: str | None = None,
    report_path: str | None = None,
    ui_path: str | None = None,
    log_level: str = "INFO",
    http_port: int = 8500,
    host_block: int = 0,
    hclog: bool = False,
    full: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    from consim.scenario.runner import RunResult, run_scenario
    from consim.scenario.timeline import render_timeline, results_json, summary_line

    out = out or sys.stdout
    err = err or sys.stderr
    scenarios = load_all(files, err)
    if scenarios is None:
        return 2
    live = live or processes  # one process per server is live time on real ports
    if ui_path and live:
        flag = "--processes" if processes else "--live"
        print(f"consim run: error: --ui replays a virtual-time run (not with {flag})", file=err)
        return 2
    if processes:
        from consim.agent.remote import unsupported

        refused = [line for scenario in scenarios for line in unsupported(scenario)]
        for line in refused:
            print(f"consim run: error: {line}", file=err)
        if refused:
            return 2
    if live:
        from consim.live import AddressInUse, check_addresses
        from consim.scenario.runner import cluster_spec

        for scenario in scenarios:
            try:
                check_addresses(cluster_spec(scenario, 0, None, http_port, host_block))
            except AddressInUse as exc:
                print(f"consim run: error: {exc}", file=err)
                return 2
    results: list[RunResult] = []
    # A progress bar only for a person watching: not into a file, a pipe or CI's log.
    bar = err.isatty()
    if seeds is None:
        for scenario in scenarios:
            result = run_scenario(
                scenario,
                seed=seed,
                live=live,
                processes=processes,
                http_port=http_port,
                host_block=host_block,
                record=report_path is not None,  # the report's messages and commit indexes
            )
            results.append(result)
            print(
                render_timeline(result, log_level=log_level, hclog=hclog, full=full),
                file=out,
                flush=True,
            )
            print(file=out)
    else:
        for scenario in scenarios:
            failed: list[RunResult] = []
            for i, s in enumerate(seeds, start=1):
                result = run_scenario(
                    scenario,
                    seed=s,
                    live=live,
                    processes=processes,
                    http_port=http_port,
                    host_block=host_block,
                )
                results.append(result)
                if not result.ok:
                    failed.append(result)
                if bar:
                    _progress(err, scenario.name, i, len(seeds), len(failed))
            if bar:
                print(file=err)
            passed = len(seeds) - len(failed)
            print(
                f"==> {scenario.name}: {passed}/{len(seeds)} seeds passed "
                f"({seeds.start}..{seeds.stop - 1})",
                file=out,
            )
            for r in failed:
                print(f"    seed {r.seed} FAILED: {r.failure}", file=out)
                print(f"      reproduce: consim run {scenario.path} --seed {r.seed}", file=out)
            if failed:
                print(summary_line(failed[0]), file=out)
    if json_path:
        Path(json_path).write_text(json.dumps(results_json(results), indent=2) + "\n")
    if report_path:
        write_report(report_path, scenarios, results, out)
    if ui_path:
        write_replay(ui_path, results, out)
    return 0 if all(r.ok for r in results) else 1


def write_report(path: str, scenarios: list[Scenario], results: list[Any], out: TextIO) -> None:
    """``--report FILE.html``: one page, of the first failed run (else the last run).
    ``--report DIR``: a page per scenario (its first failed seed, else its last) and an index.
    A run picked from ``--seeds`` is run again with the recorder on (virtual runs replay
    exactly: same seed, same trace hash)."""
    from consim.scenario.report import render_report, write_reports
    from consim.scenario.runner import run_scenario

    def recorded(r: Any) -> Any:
        if r.recorder is None and r.mode == "virtual":
            return run_scenario(r.scenario, seed=r.seed, record=True)
        return r

    if path.endswith((".html", ".htm")):
        # The first failure if any (that is what needs looking at).
        chosen = recorded(next((r for r in results if not r.ok), results[-1]))
        Path(path).write_text(render_report(chosen), encoding="utf-8")
        print(
            f"==> report written to {path} ({chosen.scenario.name}, seed {chosen.seed})", file=out
        )
        return
    picked = []
    for scenario in scenarios:
        runs = [r for r in results if r.scenario is scenario]
        if runs:
            picked.append(recorded(next((r for r in runs if not r.ok), runs[-1])))
    pages = write_reports(picked, Path(path))
    index = Path(path) / "index.html"
    print(f"==> reports written to {path}: {len(pages)} page(s) and {index}", file=out)


def write_replay(path: str, results: list[Any], out: TextIO) -> None:
    """``--ui FILE``: the /ui replay of the first failed run (else the last), run again with the
    replay recorder on (a virtual run replays exactly: same seed, same trace hash)."""
    from consim.ui.replay import record_run, replay_data, save_replay

    chosen = next((r for r in results if not r.ok), results[-1])
    result, recorder = record_run(chosen.scenario, chosen.seed)
    save_replay(path, replay_data(result, recorder), out)


def _progress(err: TextIO, name: str, done: int, total: int, failed: int) -> None:
    width = 30
    filled = int(width * done / total)
    bar = "#" * filled + "." * (width - filled)
    print(
        f"\r{name} [{bar}] {done}/{total} seeds, {failed} failed",
        end="",
        file=err,
        flush=True,
    )


def register_scenario_commands(sub: Any) -> None:
    """Add ``run`` and ``validate`` to the ``consim`` subcommand parser."""
    run = sub.add_parser("run", help="run scenario files (virtual time unless --live)")
    run.add_argument("files", nargs="+", metavar="FILE")
    run.add_argument("--live", action="store_true", help="real sockets and the real clock")
    run.add_argument(
        "--processes",
        action="store_true",
        help="live, each server its own `consim agent` process (as `consim up --processes`)",
    )
    run.add_argument("--seed", type=int, help="override the file's seed")
    run.add_argument("--seeds", type=_seed_range, help="run seeds A..B and summarize")
    run.add_argument("--json", metavar="FILE", help="write results (with trace hashes) as JSON")
    run.add_argument(
        "--report",
        metavar="FILE.html|DIR",
        help="write a self-contained HTML report (a DIR: one page per scenario and index.html)",
    )
    run.add_argument(
        "--ui",
        metavar="FILE.html",
        help="write the run as a replay on consim's /ui page (self-contained; FILE.json: its data)",
    )
    run.add_argument("--log-level", default="INFO", choices=LOG_LEVELS)
    run.add_argument("--hclog", action="store_true", help="print raw Consul-style log lines")
    run.add_argument(
        "--full",
        action="store_true",
        help="print HTTP answers whole (shortened to one line otherwise; --json has them whole)",
    )
    run.add_argument(
        "--http-port",
        type=int,
        default=8500,
        help="HTTP port of every server with --live or --processes",
    )
    run.add_argument(
        "--host-block",
        type=int,
        default=0,
        help="with --live or --processes, put datacenter d's servers on 127.0.<N+d>.k (default 0)",
    )
    run.set_defaults(func=cmd_run)
    validate = sub.add_parser("validate", help="check scenario files without running them")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(func=cmd_validate)
