"""Check a history file on its own: ``consim check --history FILE [--json OUT] [--report OUT]``.

The command line (``consim/check/cli.py``) parses the options and calls
:func:`check_history_file`; this prints the verdict (and the window), optionally writes the
result as JSON and the HTML report, and returns the exit code: 0 valid, 1 invalid, 3 unknown,
2 for a file that cannot be read or is not a valid history (file, line and field named).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from consim.check.history import History, HistoryError
from consim.check.linearizability import DEFAULT_BUDGET, check_linearizable
from consim.check.report import render_check_report

EXIT_CODES = {"valid": 0, "invalid": 1, "unknown": 3}


def check_history_file(
    path: Path | str,
    *,
    budget: int = DEFAULT_BUDGET,
    json_path: Path | str | None = None,
    report_path: Path | str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        history = History.read_jsonl(Path(path))
    except HistoryError as exc:
        print(f"consim check: error: {exc}", file=err)
        return 2
    result = check_linearizable(history, budget=budget)
    print(result.describe(), file=out)
    document = {
        "history": str(path),
        "verdict": result.verdict,
        "history_hash": history.hash(),
        "linearizability": result.to_json(),
    }
    try:
        if json_path is not None:
            text = json.dumps(document, indent=2) + "\n"
            if str(json_path) == "-":
                out.write(text)
            else:
                Path(json_path).write_text(text, encoding="utf-8")
        if report_path is not None:
            page = render_check_report(history, document, title=f"consim check: {path}")
            Path(report_path).write_text(page, encoding="utf-8")
    except OSError as exc:
        print(f"consim check: error: cannot write: {exc}", file=err)
        return 2
    return EXIT_CODES[result.verdict]
