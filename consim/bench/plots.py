"""Small inline SVG charts of request latencies (no plotting library): a CDF per target, latency
over time per target, a histogram. Used by ``consim bench`` and the scenario report's load steps.

Every function returns one ``<svg>`` element as text; values are seconds, drawn in milliseconds.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from consim.bench.stats import percentile

COLOURS = ("#4c78a8", "#e45756", "#72b7b2", "#f58518", "#54a24b", "#b279a2", "#9d755d")
WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 60, 20, 34, 44


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _nice(top: float) -> float:
    """A round axis end at or above ``top``."""
    if top <= 0:
        return 1.0
    step = 10 ** len(str(int(top))) / 100 if top >= 1 else 0.001
    while step * 10 < top:
        step *= 10
    for mult in (1, 2, 2.5, 5, 10):
        if step * mult >= top:
            return step * mult
    return step * 10


def _frame(title: str, x_label: str, y_label: str, x_top: float, y_top: float) -> list[str]:
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="sans-serif" font-size="11" role="img" aria-label="{_esc(title)}">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" font-size="13">{_esc(title)}</text>',
    ]
    for i in range(5):
        y = TOP + ph - ph * i / 4
        x = LEFT + pw * i / 4
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{LEFT - 5}" y="{y + 4:.1f}" text-anchor="end">{y_top * i / 4:g}</text>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{TOP + ph + 15}" text-anchor="middle">{x_top * i / 4:g}</text>'
        )
    parts += [
        f'<line x1="{LEFT}" y1="{TOP + ph}" x2="{LEFT + pw}" y2="{TOP + ph}" stroke="#333"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + ph}" stroke="#333"/>',
        f'<text x="{LEFT + pw / 2}" y="{HEIGHT - 8}" text-anchor="middle">{_esc(x_label)}</text>',
        f'<text x="14" y="{TOP + ph / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + ph / 2})">{_esc(y_label)}</text>',
    ]
    return parts


def _legend(names: Sequence[str]) -> list[str]:
    parts = []
    for i, name in enumerate(names):
        x = LEFT + 10 + i * 110
        colour = COLOURS[i % len(COLOURS)]
        parts.append(f'<rect x="{x}" y="{TOP + 2}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{TOP + 11}">{_esc(name)}</text>')
    return parts


def cdf_svg(series: Mapping[str, Sequence[float]], title: str) -> str:
    """One step line per target: the fraction of requests answered within x ms."""
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    every = sorted(v for values in series.values() for v in values)
    # The x axis ends past the p99 of everything (a lone outlier would flatten the rest).
    x_top = _nice(percentile(every, 0.995) * 1000 * 1.05) if every else 1.0
    parts = _frame(title, "latency (ms)", "fraction answered", x_top, 1.0)
    for i, values in enumerate(series.values()):
        ordered = sorted(values)
        n = len(ordered)
        if not n:
            continue
        points = [f"{LEFT:.1f},{TOP + ph:.1f}"]
        step = max(1, n // 400)  # at most ~400 points a line
        for k in range(0, n, step):
            x = LEFT + pw * min(1.0, ordered[k] * 1000 / x_top)
            y = TOP + ph - ph * (k + 1) / n
            points.append(f"{x:.1f},{y:.1f}")
        x = LEFT + pw * min(1.0, ordered[-1] * 1000 / x_top)
        points.append(f"{x:.1f},{TOP:.1f}")
        colour = COLOURS[i % len(COLOURS)]
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
            f'points="{" ".join(points)}"/>'
        )
    parts += _legend(list(series))
    parts.append("</svg>")
    return "\n".join(parts)


def over_time_svg(series: Mapping[str, Sequence[tuple[float, float]]], title: str) -> str:
    """Each request as a dot: when it was sent (s from the first) against its latency (ms)."""
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    points = [p for values in series.values() for p in values]
    t0 = min((t for t, _ in points), default=0.0)
    x_top = _nice(max((t - t0 for t, _ in points), default=1.0))
    y_top = _nice(max((lat for _, lat in points), default=0.001) * 1000)
    time_label = "time since the first request (s)"
    parts = _frame(title, time_label, "latency (ms)", x_top, y_top)
    for i, values in enumerate(series.values()):
        colour = COLOURS[i % len(COLOURS)]
        step = max(1, len(values) // 2000)  # at most ~2000 dots a target
        for t, lat in list(values)[::step]:
            x = LEFT + pw * (t - t0) / x_top
            y = TOP + ph - ph * min(1.0, lat * 1000 / y_top)
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="1.6" fill="{colour}"/>')
    parts += _legend(list(series))
    parts.append("</svg>")
    return "\n".join(parts)


def histogram_svg(latencies: Sequence[float], title: str, bins: int = 30) -> str:
    """Requests per latency bin (ms)."""
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    ordered = sorted(latencies)
    x_top = _nice(ordered[-1] * 1000) if ordered else 1.0
    counts = [0] * bins
    for v in ordered:
        counts[min(bins - 1, int(v * 1000 / x_top * bins))] += 1
    y_top = _nice(max(counts, default=1))
    parts = _frame(title, "latency (ms)", "requests", x_top, y_top)
    bar = pw / bins
    for k, count in enumerate(counts):
        if count:
            h = ph * count / y_top
            parts.append(
                f'<rect x="{LEFT + k * bar:.1f}" y="{TOP + ph - h:.1f}" width="{bar - 1:.1f}" '
                f'height="{h:.1f}" fill="{COLOURS[0]}"><title>{count}</title></rect>'
            )
    parts.append("</svg>")
    return "\n".join(parts)
