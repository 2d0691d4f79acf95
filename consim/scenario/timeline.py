"""The readable timeline ``consim run`` prints: a view of the event log, nothing else.

One line per event at or above ``log_level`` (DEBUG Raft noise stays out by default), the learner's
notes set off with ``#``, each step's result, and the output of Consul commands indented under
them. Times are seconds since the run started (virtual or wall clock).
"""

from __future__ import annotations

from typing import Any

from consim.events import Event, format_hclog, go_value, level_enabled
from consim.scenario.runner import SCENARIO_NODE, RunResult, short

# Scenario events shown by their own renderer (or hidden: per-request load noise).
_HIDDEN_KINDS = {"load_request", "consul_http", "http_request"}
# Fields that make lines long without teaching anything.
_NOISY_FIELDS = {"id", "incarnation", "leader-id", "last-leader-id", "step"}


def _fields(event: Event) -> str:
    pairs = []
    for k, v in event.fields.items():
        if k in _NOISY_FIELDS or k.startswith("_"):
            continue
        text = go_value(v)  # Go's %+v, as Consul's own log lines show values
        if text == "" or " " in text or "=" in text:
            text = f'"{text}"'
        pairs.append(f"{k}={text}")
    return " ".join(pairs)


# What the node column shows for events no Consul agent logs (NO_NODE).
_OPERATOR_KINDS = {"kill", "restart", "stop", "stop_remove_failed", "pause", "resume"}


def _who(event: Event) -> str:
    if event.node:
        return event.node
    return "operator" if event.kind in _OPERATOR_KINDS else "network"


def _wrap(text: str, width: int, indent: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent) or [
        indent
    ]


def render_timeline(
    result: RunResult, *, log_level: str = "INFO", hclog: bool = False, full: bool = False
) -> str:
    """The whole run as text. ``hclog=True`` prints raw Consul-style log lines instead.
    HTTP answers are shortened to one line unless ``full`` (then printed whole, indented)."""
    s = result.scenario
    lines = [
        f"==> {s.name} ({s.path}) seed {result.seed}, {result.mode} time"
        + (", one process per server" if result.processes else ""),
    ]
    if s.summary:
        lines.extend(_wrap(s.summary, 96, "    "))
    lines.append("")
    t0 = result.start_time
    width = max([len(n) for n in result.servers] + [len(SCENARIO_NODE), len("operator"), 7])
    pad = " " * (10 + width + 2)
    # Gossip joins while the cluster boots are many and alike: one line for them all.
    startup_joins = 0
    started = False
    cut = 0  # HTTP answers shortened to one line
    for event in result.events.events:
        if not started and event.kind == "member_join":
            startup_joins += 1
            continue
        if not started and event.kind == "step":
            started = True
            if startup_joins:
                lines.append(
                    f"{event.time - t0:8.3f}s  {'gossip'.ljust(width)}  "
                    f"{startup_joins} member joins while the servers boot (LAN and WAN pools)"
                )
        if hclog:
            if level_enabled(event.level, log_level):
                line = format_hclog(event, virtual=result.mode == "virtual")
                lines.append(line + f"  [{event.node}]" if event.node else line)
            continue
        if event.kind in _HIDDEN_KINDS and not level_enabled("DEBUG", log_level):
            continue
        t = f"{event.time - t0:8.3f}s"
        node = _who(event).ljust(width)
        f = event.fields
        if event.kind == "note":
            lines.append("")
            lines.extend(_wrap(str(f.get("text", "")), 96, pad + "# "))
            continue
        if event.kind == "step":
            mark = {"ok": "ok", "failed": "FAILED", "skipped": "skipped"}[str(f["status"])]
            detail = str(f.get("detail", ""))
            if f.get("action") in ("http", "consul") and f["status"] == "ok":
                detail = ""  # the request line above already shows the answer
            first, _, rest = detail.partition("\n")
            head = f"{t}  {'step ' + str(f['step']):<{width}}  [{mark}] {f['description']}"
            if first:
                head += f": {first}"
            lines.append(head)
            lines.extend(pad + line for line in rest.splitlines())
            continue
        if event.kind == "client_request":
            status = f.get("status")
            answer = str(f.get("answer", ""))
            head = (
                f"{t}  {node}  {f['method']} {f['path']} on {f['server']} -> "
                f"{status if status is not None else 'no answer'}"
            )
            if full and "\n" in answer.strip():
                lines.append(head)
                lines.extend(pad + "  " + line for line in answer.strip("\n").splitlines())
            else:
                shown = answer if full else short(answer)
                cut += shown != answer.strip()
                lines.append(f"{head} {shown}".rstrip())
            continue
        if event.kind == "consul_command":
            lines.append(f"{t}  {node}  $ {f['command']}   (on {f['server']}, exit {f['exit']})")
            output = (str(f.get("stdout", "")) + str(f.get("stderr", ""))).rstrip("\n")
            lines.extend(pad + "  " + line for line in output.splitlines())
            continue
        if not level_enabled(event.level, log_level):
            continue
        extra = _fields(event)
        text = f"{t}  {node}  {event.message}"
        if extra:
            text += f": {extra}"
        lines.append(text)
    lines.append("")
    if cut:
        lines.append(
            f"    ({cut} HTTP answer{'s' * (cut > 1)} shortened: --full or --json shows them whole)"
        )
    lines.append(summary_line(result))
    return "\n".join(lines)


def summary_line(result: RunResult) -> str:
    ok = sum(1 for st in result.steps if st.status == "ok")
    took = result.end_time - result.start_time
    if result.ok:
        text = (
            f"==> PASS {result.scenario.name}: {ok}/{len(result.steps)} steps ok "
            f"in {took:.3f}s of {result.mode} time"
        )
    else:
        text = (
            f"==> FAIL {result.scenario.name} (seed {result.seed}): {result.failure}\n"
            f"    reproduce: consim run {result.scenario.path} --seed {result.seed}"
        )
    if result.mode == "virtual":
        text += f"\n    trace hash {result.trace_hash}"
    return text


def results_json(results: list[RunResult]) -> dict[str, Any]:
    return {
        "ok": all(r.ok for r in results),
        "runs": [r.to_json() for r in results],
    }
