"""``consim replay RUN.json``: the replay page of a run recorded by ``consim run --json``.

A virtual-time run is its file and its seed: the same seed gives the same trace. So the replay is
made by running the scenario file again at the run's seed with the recorder on, and it is
checked to be that run (the trace hash must match the JSON's) before it is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO


class ReplayError(Exception):
    """The JSON cannot be replayed; the message says why."""


def pick_run(doc: Any, index: int | None) -> dict[str, Any]:
    """The run to replay: ``index`` (0-based), else the first failed run, else the last."""
    runs = doc.get("runs") if isinstance(doc, dict) else None
    if not isinstance(runs, list) or not runs or not all(isinstance(r, dict) for r in runs):
        raise ReplayError("not the JSON of 'consim run --json' (no \"runs\")")
    if index is not None:
        if not 0 <= index < len(runs):
            raise ReplayError(f"--run {index}: the JSON holds runs 0..{len(runs) - 1}")
        run = runs[index]
    else:
        run = next((r for r in runs if not r.get("ok")), runs[-1])
    if run.get("mode") != "virtual" or not run.get("trace_hash"):
        raise ReplayError(
            f"run of {run.get('scenario')!r} was {run.get('mode')}: only virtual-time runs replay"
        )
    return run


def replay_run(json_path: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Run ``run``'s scenario again at its seed, recorded; the page's data."""
    from consim.scenario.base import ScenarioError
    from consim.scenario.model import load_scenario
    from consim.ui.replay import record_run, replay_data

    file = Path(str(run.get("file", "")))
    candidates = [file] if file.is_absolute() else [file, json_path.parent / file]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise ReplayError(f"scenario file {str(file)!r} not found (the run was made from it)")
    try:
        scenario = load_scenario(found)
    except ScenarioError as exc:
        raise ReplayError("; ".join(exc.errors)) from None
    result, recorder = record_run(scenario, run["seed"])
    if result.trace_hash != run["trace_hash"]:
        raise ReplayError(
            f"{found} at seed {run['seed']} no longer gives that run (trace hash "
            f"{result.trace_hash[:12]}, the JSON says {str(run['trace_hash'])[:12]}): the file "
            "or consim changed since"
        )
    return replay_data(result, recorder)


def cmd_replay(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    from consim.ui.replay import save_replay

    out = out or sys.stdout
    err = err or sys.stderr
    path = Path(args.json)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        print(f"consim replay: error: {path}: {exc.strerror}", file=err)
        return 2
    except ValueError as exc:
        print(f"consim replay: error: {path}: not JSON ({exc})", file=err)
        return 2
    try:
        run = pick_run(doc, args.run)
        data = replay_run(path, run)
    except ReplayError as exc:
        print(f"consim replay: error: {exc}", file=err)
        return 2
    save_replay(args.out or str(path.with_suffix(".replay.html")), data, out)
    return 0


def register_ui_commands(sub: Any) -> None:
    """Add ``replay`` to the ``consim`` subcommand parser."""
    p = sub.add_parser("replay", help="the /ui replay page of a run from 'consim run --json'")
    p.add_argument("json", metavar="RUN.json")
    p.add_argument(
        "--run",
        type=int,
        help="which run of the file (0-based; default: the first failed, else the last)",
    )
    p.add_argument(
        "--out",
        metavar="FILE.html",
        help="where to write it (default RUN.replay.html; FILE.json: the data)",
    )
    p.set_defaults(func=cmd_replay)
