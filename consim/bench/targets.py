"""What ``consim bench forwarding`` measures, the same in both modes: the targets, their
requests, the per-target results and how they are shown (table, JSON, SVG plots).

Targets (a request path each; ``consistency`` is the endpoint's query for direct/forwarded/dc):

  direct     the endpoint on dc1's leader
  forwarded  the same on a follower (follower -> leader RPC -> back)
  stale      the same on a follower with ``?stale`` (answered where it lands)
  dc         the endpoint on dc1's leader with ``?dc=dc2`` (a WAN RPC to a dc2 server, which
             may forward to its own leader)
  floor      a bare quart-trio app on plain hypercorn, served from the cluster's process (live
             only; ``floor-consim``: the same app on consim's HTTP server; ``floor-alone``: on
             plain hypercorn in a process of its own)
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consim.bench.plots import cdf_svg, over_time_svg
from consim.bench.stats import fmt_ms, median_of_runs, spread, summarize

TARGETS = ("direct", "forwarded", "stale", "dc", "floor")
LIVE_EXTRA = ("floor-consim", "floor-alone")
CONSISTENCY = ("default", "stale", "consistent")
DEFAULT_ENDPOINT = "/v1/operator/raft/configuration"
FIGURES = ("requests", "rps", "p50_ms", "p90_ms", "p99_ms", "max_ms")


def with_query(path: str, *params: str) -> str:
    """``path`` with ``params`` (``"stale"``, ``"dc=dc2"``) added to its query."""
    params = tuple(p for p in params if p)
    if not params:
        return path
    return path + ("&" if "?" in path else "?") + "&".join(params)


def target_paths(endpoint: str, consistency: str) -> dict[str, str]:
    """The request path of each cluster target."""
    mode = "" if consistency == "default" else consistency
    return {
        "direct": with_query(endpoint, mode),
        "forwarded": with_query(endpoint, mode),
        "stale": with_query(endpoint, "stale"),
        "dc": with_query(endpoint, mode, "dc=dc2"),
    }


@dataclass
class RunFigures:
    """One target's one run: its latencies (seconds) and what they add up to."""

    latencies: list[float]
    elapsed: float
    errors: int = 0
    # (sent, latency) pairs, seconds; empty when the load generator gives only percentiles.
    samples: list[tuple[float, float]] = field(default_factory=list)
    # Percentile figures from a tool that gives no samples (wrk): used instead of latencies.
    figures: dict[str, Any] | None = None
    cpu_us_per_request: float | None = None
    tool: str = ""

    def summary(self) -> dict[str, Any]:
        out = (
            dict(self.figures)
            if self.figures is not None
            else summarize(self.latencies, self.elapsed)
        )
        out["errors"] = self.errors
        if self.cpu_us_per_request is not None:
            out["cpu_us_per_request"] = round(self.cpu_us_per_request, 1)
        return out


@dataclass
class BenchResult:
    mode: str  # virtual | live
    endpoint: str
    consistency: str
    settings: dict[str, Any]
    runs: dict[str, list[RunFigures]]
    notes: list[str] = field(default_factory=list)

    def target_summary(self, name: str) -> dict[str, Any]:
        """Medians over the runs of each figure; ``runs`` lists every run's figures."""
        per_run = [r.summary() for r in self.runs[name]]
        keys = FIGURES + (("cpu_us_per_request",) if self.mode == "live" else ())
        out = median_of_runs(per_run, keys)
        out["requests"] = int(sum(r["requests"] or 0 for r in per_run) / max(1, len(per_run)))
        out["errors"] = sum(r["errors"] for r in per_run)
        out["runs"] = per_run
        return out

    def ratios(self) -> dict[str, list[float]]:
        """Per-run ratios of paired targets (measured back to back), for the table and JSON."""
        pairs = {
            "forwarded/direct rps": ("forwarded", "direct", "rps"),
            "forwarded/direct p50": ("forwarded", "direct", "p50_ms"),
            "forwarded/direct p99": ("forwarded", "direct", "p99_ms"),
            "stale/direct rps": ("stale", "direct", "rps"),
            "dc/direct p50": ("dc", "direct", "p50_ms"),
            "direct/floor rps": ("direct", "floor", "rps"),
            "direct/floor cpu": ("direct", "floor", "cpu_us_per_request"),
            "floor-consim/floor rps": ("floor-consim", "floor", "rps"),
        }
        out: dict[str, list[float]] = {}
        for label, (a, b, key) in pairs.items():
            if a not in self.runs or b not in self.runs:
                continue
            values = []
            for x, y in zip(self.runs[a], self.runs[b], strict=False):
                xv, yv = x.summary().get(key), y.summary().get(key)
                if xv is not None and yv:
                    values.append(round(xv / yv, 3))
            if values:
                out[label] = values
        return out

    def differences(self) -> dict[str, float]:
        """Median p50 differences against direct (ms): what each path adds per request."""
        out: dict[str, float] = {}
        if "direct" not in self.runs:
            return out
        direct = self.target_summary("direct")["p50_ms"]
        for name in ("forwarded", "stale", "dc"):
            if name in self.runs and direct is not None:
                p50 = self.target_summary(name)["p50_ms"]
                if p50 is not None:
                    out[f"{name} - direct p50_ms"] = round(p50 - direct, 3)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "endpoint": self.endpoint,
            "consistency": self.consistency,
            "settings": self.settings,
            "targets": {name: self.target_summary(name) for name in self.runs},
            "ratios": {
                k: {"median": statistics.median(v), "runs": v} for k, v in self.ratios().items()
            },
            "differences": self.differences(),
            "notes": self.notes,
        }


def format_table(result: BenchResult) -> str:
    """The figures per target (medians over runs, min-max when there are several)."""
    several = any(len(v) > 1 for v in result.runs.values())
    cpu = result.mode == "live"
    head = ["target", "requests", "req/s", "p50", "p90", "p99", "max", "errors"]
    if cpu:
        head.append("cpu us/req")
    rows = [head]
    for name, runs in result.runs.items():
        per_run = [r.summary() for r in runs]
        s = result.target_summary(name)

        def cell(key: str, ms: bool = True, _per_run: list[dict[str, Any]] = per_run) -> str:
            values = [r[key] for r in _per_run if r.get(key) is not None]
            if not values:
                return "-"
            if several and not ms:
                return spread(values)
            if several:
                med = statistics.median(values)
                return f"{fmt_ms(med)} ({fmt_ms(min(values))}-{fmt_ms(max(values))})"
            return fmt_ms(values[0]) if ms else f"{values[0]:.0f}"

        row = [
            name,
            str(s["requests"]),
            cell("rps", ms=False),
            cell("p50_ms"),
            cell("p90_ms"),
            cell("p99_ms"),
            cell("max_ms"),
            str(s["errors"]),
        ]
        if cpu:
            row.append(cell("cpu_us_per_request", ms=False))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for label, values in result.ratios().items():
        each = " ".join(f"{v:.2f}" for v in values)
        lines.append(
            f"{label}: {statistics.median(values):.2f}" + (f" (runs: {each})" if several else "")
        )
    for label, value in result.differences().items():
        lines.append(f"{label}: {value:+.3f} ms")
    lines += result.notes
    return "\n".join(lines)


def write_plots(result: BenchResult, directory: Path, stem: str = "forwarding") -> list[Path]:
    """``<stem>-cdf.svg`` (latency CDF per target) and ``<stem>-over-time.svg`` (each request
    of the last run per target), where samples exist."""
    directory.mkdir(parents=True, exist_ok=True)
    clock = "virtual" if result.mode == "virtual" else "wall"
    title = f"{result.endpoint} ({result.mode})"
    cdf: dict[str, Sequence[float]] = {}
    over: dict[str, Sequence[tuple[float, float]]] = {}
    for name, runs in result.runs.items():
        latencies = [lat for r in runs for lat in r.latencies]
        if latencies:
            cdf[name] = latencies
        last = runs[-1] if runs else None
        if last is not None and last.samples:
            t0 = last.samples[0][0]
            over[name] = [(t - t0, lat) for t, lat in last.samples]
    written = []
    if cdf:
        path = directory / f"{stem}-cdf.svg"
        path.write_text(cdf_svg(cdf, f"latency CDF: {title}") + "\n")
        written.append(path)
    if over:
        path = directory / f"{stem}-over-time.svg"
        path.write_text(over_time_svg(over, f"latency over {clock} time, last run: {title}") + "\n")
        written.append(path)
    return written


def write_json(result: BenchResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
