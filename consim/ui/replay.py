"""Replay of a virtual-time run on the same page as the live view (``consim run FILE --ui OUT``).

:class:`ReplayRecorder` watches a run while it happens: on every event and every server-to-server
message (at most one frame per :data:`FRAME_GAP` virtual seconds, and always on a role change or
a fault) it takes the same snapshot the live page gets. It only reads: no task, no timer, no
random draw, so a recorded run keeps its trace hash. :func:`replay_data` adds the run's log lines
and the scenario's steps and notes; :func:`render_replay` writes one self-contained HTML file
(the page's CSS and JS inline, the data as JSON), which plays, pauses, changes speed, scrubs and
steps to the next event offline. The JSON alone (``--ui run.json``) opens in that page too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

import trio

from consim.cluster import Cluster
from consim.events import Event, level_enabled, node_log_line
from consim.ui.assets import asset
from consim.ui.live import cluster_tap, contained_subscribe
from consim.ui.snapshot import cluster_snapshot, note_down_reason

# Virtual seconds between two frames at most (the page interpolates election timers between).
FRAME_GAP = 0.02
# Events that always get a frame of their own: the moments a learner steps to.
_MARK = frozenset(
    [
        "kill",
        "restart",
        "stop",
        "pause",
        "resume",
        "partition",
        "isolate",
        "unisolate",
        "block",
        "heal",
        "loss",
        "delay",
        "role_change",
        "election_won",
        "election_timeout",
        "step",
        "note",
    ]
)


class ReplayRecorder:
    """Snapshots of one cluster through a run, for the replay page."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.frames: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self._down_reason: dict[str, str] = {}
        self._last = -1.0
        self.errors = 0  # snapshots that failed (a bug; counted, the run goes on)
        contained_subscribe(cluster.events, self._record_event, self)
        self.tap = cluster_tap(cluster, self._on_message, trio.current_time)
        try:
            self._frame(force=True)
        except Exception:
            self.errors += 1

    def _frame(self, force: bool = False) -> None:
        now = trio.current_time()
        if not force and now - self._last < FRAME_GAP:
            return
        self._last = now
        snap = cluster_snapshot(self.cluster, now, self._down_reason)
        if self.frames and self.frames[-1]["t"] == round(now, 6):
            self.frames[-1]["state"] = snap  # the latest view of one instant
        else:
            self.frames.append({"t": round(now, 6), "state": snap})

    def _record_event(self, event: Event) -> None:
        note_down_reason(self._down_reason, event)
        self._frame(force=event.kind in _MARK)

    def _on_message(self, message: dict[str, Any]) -> None:
        message["time"] = round(trio.current_time(), 6)
        self.messages.append(message)
        try:
            self._frame()
        except Exception:
            self.errors += 1


def record_run(scenario: Any, seed: int) -> tuple[Any, ReplayRecorder]:
    """Run ``scenario`` (a ``consim.scenario.model.Scenario``) at ``seed`` in virtual time with
    a :class:`ReplayRecorder` attached before any server starts: (its RunResult, the recorder)."""
    from consim.scenario.runner import run_scenario

    box: list[ReplayRecorder] = []
    result = run_scenario(scenario, seed=seed, observe=lambda c: box.append(ReplayRecorder(c)))
    return result, box[0]


def replay_data(result: Any, recorder: ReplayRecorder) -> dict[str, Any]:
    """The page's data for a finished run (a ``consim.scenario.runner.RunResult``)."""
    logs = []
    for event in result.events.events:
        if not level_enabled(event.level, "INFO"):
            continue
        logs.append(
            {
                "time": round(event.time, 6),
                "node": event.node,
                "kind": event.kind,
                "level": event.level,
                "line": node_log_line(event),
            }
        )
    notes = [
        {
            "time": round(step.started, 6),
            "step": step.number,
            "description": step.description,
            "note": step.note or "",
            "status": step.status,
            "detail": step.detail,
        }
        for step in result.steps
        if step.status != "skipped"
    ]
    end = max([result.end_time] + [f["t"] for f in recorder.frames])
    return {
        "mode": "replay",
        "scenario": result.scenario.name,
        "seed": result.seed,
        "ok": result.ok,
        "end": round(end, 6),
        "frames": recorder.frames,
        "logs": logs,
        "messages": recorder.messages,
        "notes": notes,
        "recorder_errors": recorder.errors,
    }


def render_replay(data: dict[str, Any]) -> str:
    """One HTML file that replays ``data`` offline: the page, its CSS and JS, the data inline."""
    page = asset("index.html").decode()
    css = asset("ui.css").decode()
    js = asset("ui.js").decode()
    # "</" inside a script would end it early; JSON allows the escaped form.
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    page = page.replace('<link rel="stylesheet" href="static/ui.css">', f"<style>\n{css}</style>")
    js = js.replace("</script", "<\\/script")  # (ui.js has none; the page must not end early)
    page = page.replace('<script src="static/ui.js"></script>', f"<script>\n{js}</script>")
    boot = json.dumps({"mode": "replay"})
    return page.replace(
        "<!--CONSIM-BOOT-->",
        f"<script>window.CONSIM_BOOT={boot};window.CONSIM_REPLAY={payload};</script>",
    )


def save_replay(path: str, data: dict[str, Any], out: TextIO) -> None:
    """Write ``data`` to ``path``: the replay page, or its data where ``path`` ends in .json."""
    text = json.dumps(data) if path.endswith(".json") else render_replay(data)
    Path(path).write_text(text, encoding="utf-8")
    print(
        f"==> replay written to {path} ({data['scenario']}, seed {data['seed']}, "
        f"{len(data['frames'])} frames)",
        file=out,
    )
