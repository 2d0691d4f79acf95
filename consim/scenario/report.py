"""The HTML report: one self-contained file (inline CSS and SVG, no scripts, no network).

An SVG timeline with one lane per server: its role over time as coloured bars (follower, candidate,
leader, down) labelled with the term, crashes and restarts as markers, partitions and isolation as
shaded bands, client requests as ticks with their answers, and every step's result along the top.
Below it, the steps with the learner's notes. Everything is derived from the event log.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

from consim.events import NO_NODE
from consim.scenario.runner import SCENARIO_NODE, RunResult

ROLE_COLOURS = {
    "follower": "#8fb8de",
    "candidate": "#f2c14e",
    "leader": "#2e8b57",
    "down": "#d9d9d9",
    "paused": "#b39ddb",
}
LANE_HEIGHT = 34
LEFT = 90
WIDTH = 1100
TOP = 60


@dataclass
class Segment:
    start: float
    end: float
    role: str
    term: int | None


def _lanes(result: RunResult) -> dict[str, list[Segment]]:
    """Role and term of each server over time, from role_change/kill/restart events."""
    state: dict[str, tuple[str, int | None, float]] = {}
    out: dict[str, list[Segment]] = {name: [] for name in result.servers}
    t0 = result.start_time

    def switch(name: str, role: str, term: int | None, t: float) -> None:
        prev = state.get(name)
        if prev is not None:
            if prev[0] == role and prev[1] == term:
                return
            if t > prev[2]:
                out[name].append(Segment(prev[2], t, prev[0], prev[1]))
        state[name] = (role, term, t)

    terms: dict[str, int] = {}
    for e in result.events.events:
        t = e.time - t0
        f = e.fields
        if e.node in out:
            if "term" in f and isinstance(f["term"], int):
                terms[e.node] = max(terms.get(e.node, 0), f["term"])
            if e.kind == "server_started":
                switch(e.node, "follower", terms.get(e.node), t)
            elif e.kind == "role_change":
                m = re.search(r"\[(\w+)\]", str(f.get("node") or f.get("leader") or ""))
                role = m.group(1).lower() if m else "follower"
                switch(e.node, role, terms.get(e.node), t)
            elif e.kind == "term_change" and e.node in state:
                switch(e.node, state[e.node][0], terms.get(e.node), t)
        elif e.node == NO_NODE and e.kind in ("kill", "stop", "pause", "resume"):
            name = str(f.get("server", ""))
            if name in out:
                if e.kind == "resume":
                    prev = state.get(name)
                    switch(name, "follower" if prev else "down", terms.get(name), t)
                else:
                    switch(name, "down" if e.kind != "pause" else "paused", terms.get(name), t)
    end = result.end_time - t0
    for name, (role, term, since) in state.items():
        out[name].append(Segment(since, max(end, since), role, term))
    return out


def _bands(result: RunResult) -> list[tuple[float, float, str, list[str]]]:
    """Network faults as (start, end, label, servers cut off) bands; heal ends them all."""
    bands: list[tuple[float, float, str, list[str]]] = []
    open_: list[tuple[float, str, list[str]]] = []
    t0 = result.start_time
    for e in result.events.events:
        if e.node != NO_NODE:
            continue
        t = e.time - t0
        f = e.fields
        if e.kind == "partition":
            groups = f.get("groups") or []
            label = " | ".join(",".join(g) for g in groups)
            # Shade every server not in the largest group: the side cut off from the majority.
            largest = max(groups, key=len) if groups else []
            cut = [n for g in groups if g is not largest for n in g]
            open_.append((t, f"partition {label}", cut))
        elif e.kind == "isolate":
            host = str(f.get("host", f.get("server", "")))
            open_.append((t, f"isolate {host}", [host]))
        elif e.kind == "heal":
            for start, label, cut in open_:
                bands.append((start, t, label, cut))
            open_ = []
    end = result.end_time - t0
    for start, label, cut in open_:
        bands.append((start, end, label, cut))
    return bands


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def render_svg(result: RunResult) -> str:
    lanes = _lanes(result)
    names = list(lanes)
    span = max(result.end_time - result.start_time, 0.001)
    scale = (WIDTH - LEFT - 20) / span
    height = TOP + LANE_HEIGHT * len(names) + 90

    def x(t: float) -> float:
        return round(LEFT + t * scale, 2)

    def y(name: str) -> float:
        return TOP + names.index(name) * LANE_HEIGHT

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">'
    ]
    # Time axis.
    step = _nice_step(span)
    t = 0.0
    while t <= span + 1e-9:
        parts.append(
            f'<line x1="{x(t)}" y1="{TOP - 6}" x2="{x(t)}" y2="{height - 70}" stroke="#eee"/>'
            f'<text x="{x(t)}" y="{height - 56}" text-anchor="middle" fill="#555">{t:g}s</text>'
        )
        t += step
    # Fault bands under the lanes.
    for start, end, label, cut in _bands(result):
        for name in cut:
            if name in lanes:
                parts.append(
                    f'<rect class="fault" x="{x(start)}" y="{y(name) - 3}" '
                    f'width="{max(1.0, x(end) - x(start))}" height="{LANE_HEIGHT - 2}" '
                    f'fill="#e53935" fill-opacity="0.15"><title>{_esc(label)}</title></rect>'
                )
        parts.append(
            f'<text x="{x(start) + 2}" y="{height - 40}" fill="#c62828">{_esc(label)}</text>'
        )
    # Lanes.
    for name in names:
        top = y(name)
        parts.append(f'<g class="lane" data-server="{_esc(name)}">')
        parts.append(
            f'<text x="{LEFT - 8}" y="{top + 17}" text-anchor="end" font-weight="bold">{_esc(name)}</text>'
        )
        for seg in lanes[name]:
            w = max(0.5, x(seg.end) - x(seg.start))
            term = "" if seg.term is None else f" term {seg.term}"
            parts.append(
                f'<rect x="{x(seg.start)}" y="{top + 4}" width="{w}" height="{LANE_HEIGHT - 12}" '
                f'fill="{ROLE_COLOURS.get(seg.role, "#999")}"><title>{_esc(name)}: {seg.role}{term} '
                f"({seg.start:.3f}s - {seg.end:.3f}s)</title></rect>"
            )
            if seg.term is not None and w > 40 and seg.role != "down":
                parts.append(
                    f'<text x="{x(seg.start) + 3}" y="{top + 19}" fill="#fff" font-size="10">'
                    f"{seg.role} t{seg.term}</text>"
                )
        parts.append("</g>")
    # Markers: crashes, restarts, requests, step results.
    t0 = result.start_time
    for e in result.events.events:
        t = e.time - t0
        f = e.fields
        if e.node == NO_NODE and e.kind in ("kill", "restart", "stop") and f.get("server") in lanes:
            name = str(f["server"])
            symbol = {"kill": "✕", "restart": "↻", "stop": "■"}[e.kind]
            colour = "#b71c1c" if e.kind == "kill" else "#1b5e20"
            parts.append(
                f'<text class="marker {e.kind}" x="{x(t)}" y="{y(name) + 21}" text-anchor="middle" '
                f'font-size="16" fill="{colour}"><title>{e.kind} {_esc(name)} at {t:.3f}s</title>'
                f"{symbol}</text>"
            )
        elif e.node == SCENARIO_NODE and e.kind == "client_request" and f.get("server") in lanes:
            name = str(f["server"])
            status = f.get("status")
            ok = isinstance(status, int) and status < 400
            parts.append(
                f'<circle class="request" cx="{x(t)}" cy="{y(name) + LANE_HEIGHT - 5}" r="4" '
                f'fill="{"#1565c0" if ok else "#e65100"}" stroke="#fff"><title>'
                f"{_esc(f.get('method'))} {_esc(f.get('path'))} → {_esc(status)} "
                f"{_esc(f.get('answer', ''))}</title></circle>"
            )
        elif e.node == SCENARIO_NODE and e.kind == "step":
            ok = f.get("status") == "ok"
            parts.append(
                f'<g class="step-result {"ok" if ok else "failed"}"><line x1="{x(t)}" y1="{TOP - 22}" '
                f'x2="{x(t)}" y2="{TOP - 8}" stroke="{"#2e7d32" if ok else "#c62828"}" '
                f'stroke-width="2"/><text x="{x(t)}" y="{TOP - 26}" text-anchor="middle" '
                f'font-size="9" fill="{"#2e7d32" if ok else "#c62828"}">{_esc(f.get("step"))}</text>'
                f"<title>step {_esc(f.get('step'))} {_esc(f.get('status'))}: "
                f"{_esc(f.get('description'))} {_esc(f.get('detail', ''))}</title></g>"
            )
    # Legend.
    lx = LEFT
    for role, colour in ROLE_COLOURS.items():
        parts.append(
            f'<rect x="{lx}" y="{height - 22}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{lx + 16}" y="{height - 12}">{role}</text>'
        )
        lx += 90
    parts.append(
        f'<text x="{lx}" y="{height - 12}">✕ crash  ↻ restart  ● request (blue ok, orange error)  '
        f"red band: cut off by a partition  | numbers on top: steps</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def _nice_step(span: float) -> float:
    for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000):
        if span / s <= 14:
            return float(s)
    return span / 10


_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1160px; }
h1 { margin-bottom: 4px; } .summary { color: #444; margin-top: 0; }
.verdict { font-weight: bold; padding: 6px 10px; display: inline-block; border-radius: 4px; }
.pass { background: #e8f5e9; color: #1b5e20; } .fail { background: #ffebee; color: #b71c1c; }
table { border-collapse: collapse; width: 100%; margin-top: 16px; font-size: 13px; }
td, th { border-bottom: 1px solid #ddd; padding: 4px 6px; vertical-align: top; text-align: left; }
td.ok { color: #1b5e20; font-weight: bold; } td.failed { color: #b71c1c; font-weight: bold; }
td.skipped { color: #888; } .note { color: #37474f; font-style: italic; }
pre { margin: 2px 0; font-size: 12px; white-space: pre-wrap; }
.meta { color: #666; font-size: 12px; }
"""


def render_report(result: RunResult) -> str:
    s = result.scenario
    verdict = (
        '<span class="verdict pass">PASS</span>'
        if result.ok
        else f'<span class="verdict fail">FAIL: {_esc(result.failure)}</span>'
    )
    rows = []
    for st in result.steps:
        note = f'<div class="note">{_esc(st.note)}</div>' if st.note else ""
        detail = f"<pre>{_esc(st.detail)}</pre>" if st.detail else ""
        rows.append(
            f'<tr class="step"><td>{st.number}</td><td>{st.started - result.start_time:.3f}s</td>'
            f'<td class="{st.status}">{st.status}</td><td>{note}<code>{_esc(st.description)}</code>'
            f"{detail}</td><td>{st.took:.3f}s</td></tr>"
        )
    trace = f" · trace hash <code>{result.trace_hash}</code>" if result.mode == "virtual" else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>consim: {_esc(s.name)} (seed {result.seed})</title><style>{_CSS}</style></head>"
        f'<body><h1>{_esc(s.name)}</h1><p class="summary">{_esc(s.summary)}</p>'
        f'<p class="meta">{_esc(s.path)} · seed {result.seed} · {result.mode} time · '
        f"{result.end_time - result.start_time:.3f}s{trace}</p>"
        f"<p>{verdict}</p>{render_svg(result)}"
        "<table><thead><tr><th>#</th><th>at</th><th>result</th><th>step</th><th>took</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table></body></html>\n"
    )
