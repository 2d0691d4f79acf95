"""The HTML report: one self-contained file per run (inline CSS, script and data; no network).

A timeline with one lane per server: its role over time (follower, pre-vote candidate, candidate,
leader, down, paused) labelled with its term, its suffrage in the Raft configuration (with each
configuration change), its commit index and its gossip keyrings (LAN and WAN, coloured by the
primary key); crashes and restarts, partitions as shaded bands, client requests, and every step as
a box in the band on top (packed into rows, so none hides another). Zoom with the wheel or the
buttons, pan by dragging; a leader tenure too short to see is flagged, and a click zooms to it.
Below: the messages between servers for the window shown (a space-time diagram; recorded in
virtual runs), Consul's log lines for the window, the leaders' tenures and the steps with the
learner's notes. Everything is derived from the run (:mod:`consim.scenario.report_model`).

``write_reports(results, folder)`` writes one page per run and an ``index.html``.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from consim.scenario.report_js import SCRIPT
from consim.scenario.report_model import model
from consim.scenario.runner import RunResult


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _json_for_script(data: Any) -> str:
    # Inside <script>, "</" would end the element: escape it (JSON allows "<\/").
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")


_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1160px; }
h1 { margin-bottom: 4px; } h2 { font-size: 16px; margin: 22px 0 6px; }
.summary { color: #444; margin-top: 0; }
.verdict { font-weight: bold; padding: 6px 10px; display: inline-block; border-radius: 4px; }
.pass { background: #e8f5e9; color: #1b5e20; } .fail { background: #ffebee; color: #b71c1c; }
table { border-collapse: collapse; width: 100%; margin-top: 8px; font-size: 13px; }
td, th { border-bottom: 1px solid #ddd; padding: 4px 6px; vertical-align: top; text-align: left; }
td.ok { color: #1b5e20; font-weight: bold; } td.failed { color: #b71c1c; font-weight: bold; }
td.skipped { color: #888; } .note { color: #37474f; font-style: italic; }
tr.selected { background: #fff8e1; }
pre { margin: 2px 0; font-size: 12px; white-space: pre-wrap; }
.meta { color: #666; font-size: 12px; }
svg { font-family: sans-serif; font-size: 11px; width: 100%; height: auto; user-select: none; }
#timeline { cursor: grab; }
.controls { margin: 8px 0; font-size: 13px; } .controls button { margin-right: 4px; }
#messages-info { margin-left: 12px; color: #555; }
#details { background: #f5f5f5; padding: 6px 8px; min-height: 2.4em; font-size: 12px; }
#logs { font-family: ui-monospace, monospace; font-size: 11px; max-height: 320px; overflow: auto;
  border: 1px solid #ddd; padding: 4px; white-space: pre; }
.log.WARN { color: #8d6e00; } .log.ERROR { color: #b71c1c; } .log { cursor: pointer; }
.legend span { display: inline-block; margin-right: 14px; font-size: 12px; }
.legend i { display: inline-block; width: 12px; height: 12px; vertical-align: middle; margin-right: 4px; }
"""

_LEGEND = (
    ("follower", "#8fb8de"),
    ("pre-vote candidate (term unchanged)", "#fbe7a1"),
    ("candidate (term raised)", "#f2c14e"),
    ("leader", "#2e8b57"),
    ("down", "#d9d9d9"),
    ("paused", "#b39ddb"),
    ("voter", "#546e7a"),
    ("non-voter", "#cfd8dc"),
)


def tenures(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every leader tenure, in time order: ``{server, term, s, e}``."""
    out = [
        {"server": name, "term": seg["term"], "s": seg["s"], "e": seg["e"]}
        for name, segs in data["segments"].items()
        for seg in segs
        if seg["role"] == "leader"
    ]
    return sorted(out, key=lambda t: (t["s"], t["server"]))


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.3f} s"


def render_report(result: RunResult, *, index_href: str | None = None) -> str:
    from consim.scenario.report_load import render_load_steps

    s = result.scenario
    data = model(result)
    verdict = (
        '<span class="verdict pass">PASS</span>'
        if result.ok
        else f'<span class="verdict fail">FAIL: {_esc(result.failure)}</span>'
    )
    rows = []
    for st in data["steps"]:
        note = f'<div class="note">{_esc(st["note"])}</div>' if st["note"] else ""
        detail = f"<pre>{_esc(st['detail'])}</pre>" if st["detail"] else ""
        zoom = f"{st['t']},{st['e']}"
        rows.append(
            f'<tr class="step" data-step="{st["n"]}"><td>{st["n"]}</td>'
            f'<td><a href="#" data-zoom="{zoom}">{st["t"]:.3f}s</a></td>'
            f'<td class="{st["status"]}">{st["status"]}</td><td>{note}'
            f"<code>{_esc(st['description'])}</code>{detail}</td>"
            f"<td>{st['e'] - st['t']:.3f}s</td></tr>"
        )
    leaders = "".join(
        f'<tr class="tenure"><td>{_esc(t["server"])}</td><td>{t["term"]}</td>'
        f'<td><a href="#" data-zoom="{t["s"]},{t["e"]}">{t["s"]:.3f}s</a></td>'
        f"<td>{_duration(t['e'] - t['s'])}</td></tr>"
        for t in tenures(data)
    )
    legend = "".join(f'<span><i style="background:{c}"></i>{_esc(r)}</span>' for r, c in _LEGEND)
    families = "".join(
        f'<label><input type="checkbox" id="family-{f}"> {f}</label> '
        for f in ("vote", "append", "heartbeat", "snapshot", "rpc", "gossip")
    )
    trace = f" · trace hash <code>{result.trace_hash}</code>" if result.mode == "virtual" else ""
    back = f'<p class="meta"><a href="{_esc(index_href)}">all runs</a></p>' if index_href else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>consim: {_esc(s.name)} (seed {result.seed})</title><style>{_CSS}</style></head>"
        f'<body>{back}<h1>{_esc(s.name)}</h1><p class="summary">{_esc(s.summary)}</p>'
        f'<p class="meta">{_esc(s.path)} · seed {result.seed} · {result.mode} time · '
        f"{result.end_time - result.start_time:.3f}s{trace}</p>"
        f"<p>{verdict}</p>"
        '<div class="controls"><button id="zoom-in">zoom in</button>'
        '<button id="zoom-out">zoom out</button><button id="zoom-reset">whole run</button> '
        'window: <span id="window"></span> · wheel to zoom, drag to pan, click for details</div>'
        '<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="1100" height="200"></svg>'
        f'<div class="legend">{legend}<span>✕ crash ↻ restart ■ stop ● request '
        "◆ configuration change ▼ short leader tenure; bottom strips: commit index, "
        "LAN/WAN keyring</span></div>"
        '<pre id="details"></pre>'
        f'<h2>Messages</h2><div class="controls">{families}<span id="messages-info"></span></div>'
        '<svg xmlns="http://www.w3.org/2000/svg" id="messages" width="1100" height="0"></svg>'
        '<h2>Consul log lines</h2><div class="meta" id="logs-info"></div><div id="logs"></div>'
        "<h2>Leaders</h2><table><thead><tr><th>server</th><th>term</th><th>from</th>"
        f"<th>for</th></tr></thead><tbody>{leaders}</tbody></table>"
        "<h2>Steps</h2>"
        "<table><thead><tr><th>#</th><th>at</th><th>result</th><th>step</th><th>took</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>{render_load_steps(result)}"
        f'<script type="application/json" id="run-data">{_json_for_script(data)}</script>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def page_name(result: RunResult) -> str:
    """``01-leader-loss-seed-3.html``: the scenario file's stem and the seed."""
    stem = Path(str(result.scenario.path)).stem or result.scenario.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{stem}-seed-{result.seed}") + ".html"


def render_index(results: list[RunResult]) -> str:
    rows = []
    for r in results:
        status = "pass" if r.ok else "fail"
        rows.append(
            f'<tr class="run {status}"><td><a href="{_esc(page_name(r))}">'
            f"{_esc(r.scenario.name)}</a></td><td>{r.seed}</td><td>{r.mode}</td>"
            f'<td class="{"ok" if r.ok else "failed"}">{"PASS" if r.ok else "FAIL"}</td>'
            f"<td>{_esc(r.scenario.summary)}"
            + (f"<pre>{_esc(r.failure)}</pre>" if r.failure else "")
            + f"</td><td>{r.end_time - r.start_time:.3f}s</td></tr>"
        )
    passed = sum(r.ok for r in results)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>consim: {passed}/{len(results)} runs passed</title><style>{_CSS}</style></head>"
        f"<body><h1>consim runs</h1><p>{passed} of {len(results)} passed.</p>"
        "<table><thead><tr><th>scenario</th><th>seed</th><th>time</th><th>result</th>"
        "<th>summary</th><th>took</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></body></html>\n"
    )


def write_reports(results: list[RunResult], folder: Path) -> list[Path]:
    """One page per run and ``index.html`` linking them; returns the pages written."""
    folder.mkdir(parents=True, exist_ok=True)
    pages = []
    for r in results:
        path = folder / page_name(r)
        path.write_text(render_report(r, index_href="index.html"), encoding="utf-8")
        pages.append(path)
    (folder / "index.html").write_text(render_index(results), encoding="utf-8")
    return pages
