"""Latency figures, the same everywhere they are shown (``consim bench``, the scenario ``load``
step, benchmarks/): nearest-rank percentiles over one list of samples, in milliseconds.

Pure Python: no clock, no I/O, so the same samples always give the same figures.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

QUANTILES = (("p50_ms", 0.50), ("p90_ms", 0.90), ("p99_ms", 0.99))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of values sorted ascending; nan if none."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(latencies: Sequence[float], elapsed: float | None = None) -> dict[str, Any]:
    """``requests``, ``rps`` (answered per second of ``elapsed``; None without it) and the
    p50/p90/p99/max of ``latencies`` (seconds) in milliseconds, rounded to microseconds."""
    ordered = sorted(latencies)
    out: dict[str, Any] = {"requests": len(ordered)}
    out["rps"] = round(len(ordered) / elapsed, 3) if elapsed and elapsed > 0 else None
    for name, q in QUANTILES:
        out[name] = _ms(percentile(ordered, q))
    out["max_ms"] = _ms(ordered[-1]) if ordered else None
    return out


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000, 3)


def format_summary(s: dict[str, Any]) -> str:
    """``20.0 req/s, latency p50 4.12ms p90 4.50ms p99 5.01ms max 5.01ms`` (``no answers``)."""
    if not s.get("requests"):
        return "no answers"
    rate = f"{s['rps']:.1f} req/s, " if s.get("rps") is not None else ""
    return (
        rate
        + "latency "
        + " ".join(
            f"{name[:-3]} {fmt_ms(s[name])}" for name in ("p50_ms", "p90_ms", "p99_ms", "max_ms")
        )
    )


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}ms"
    if value >= 10:
        return f"{value:.1f}ms"
    return f"{value:.2f}ms"


def spread(values: Sequence[float], fmt: str = ".0f") -> str:
    """``median (min-max)`` of several runs' figures."""
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def median_of_runs(runs: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """Per key, the median over runs (keys missing or None in a run are left out)."""
    out: dict[str, Any] = {}
    for key in keys:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = round(statistics.median(values), 3) if values else None
    return out
