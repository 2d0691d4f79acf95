"""What the HTML report draws, derived from a run: plain data (JSON) the page's script renders.

Everything comes from the event log, except the messages and commit indexes of a recorded
virtual run (:class:`~consim.scenario.recorder.RunRecorder`), which Consul does not log.

Terms: a server's term is what its ``term_change`` events say, and nothing else. hashicorp/raft's
"entering candidate state" line carries the term the candidate *asks for*; under pre-vote (which
hashicorp/raft and Consul run before every election) that is its term + 1, and it stays a wish
unless the pre-vote succeeds: only then does ``term_change`` raise the term. So a candidate
segment is ``prevote`` until the server's term changes while it is a candidate.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from consim.events import NO_NODE, format_hclog, level_enabled
from consim.gossip.keyring import fingerprint
from consim.scenario.runner import SCENARIO_NODE, RunResult

_ROLE = re.compile(r"\[(\w+)\]")
_OPERATOR = ("kill", "restart", "stop", "pause", "resume")
_KEY_OPS = {"key_installed": "install", "key_used": "use", "key_removed": "remove"}


def _r(t: float) -> float:
    return round(t, 6)


def segments(result: RunResult) -> dict[str, list[dict[str, Any]]]:
    """Per server: ``{s, e, role, term, prevote}`` covering the run (role down/paused too)."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in result.servers}
    # name -> (role, term, prevote, since)
    state: dict[str, tuple[str, int | None, bool, float]] = {}
    terms: dict[str, int] = {}
    t0 = result.start_time

    def switch(name: str, role: str, t: float, prevote: bool = False) -> None:
        term = terms.get(name)
        prev = state.get(name)
        if prev is not None:
            if prev[:3] == (role, term, prevote):
                return
            if t > prev[3]:
                out[name].append(
                    {
                        "s": _r(prev[3]),
                        "e": _r(t),
                        "role": prev[0],
                        "term": prev[1],
                        "prevote": prev[2],
                    }
                )
        state[name] = (role, term, prevote, t)

    for e in result.events.events:
        t = e.time - t0
        f = e.fields
        if e.node in out:
            name = e.node
            if e.kind == "term_change" and isinstance(f.get("term"), int):
                terms[name] = f["term"]
                if name in state:
                    # A candidate whose term rose is past its pre-vote: a real election now.
                    switch(name, state[name][0], t, prevote=False)
            elif e.kind == "server_started":
                switch(name, "follower", t)
            elif e.kind == "role_change":
                m = _ROLE.search(str(f.get("node") or f.get("leader") or f.get("follower") or ""))
                role = m.group(1).lower() if m else "follower"
                switch(name, role, t, prevote=role == "candidate")
        elif e.node == NO_NODE and e.kind in _OPERATOR:
            name = str(f.get("server", ""))
            if name not in out:
                continue
            if e.kind == "resume":
                switch(name, "follower" if name in state else "down", t)
            elif e.kind == "pause":
                switch(name, "paused", t)
            elif e.kind != "restart":  # a restart's server_started follows
                switch(name, "down", t)
    end = result.end_time - t0
    for name, (role, term, prevote, since) in state.items():
        out[name].append(
            {
                "s": _r(since),
                "e": _r(max(end, since)),
                "role": role,
                "term": term,
                "prevote": prevote,
            }
        )
    return out


def faults(result: RunResult) -> list[dict[str, Any]]:
    """Network faults as bands ``{s, e, label, cut}``; a heal ends them all."""
    bands: list[dict[str, Any]] = []
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
        elif e.kind in ("block", "loss", "delay"):
            label = f"{e.kind} " + " ".join(f"{k}={v}" for k, v in f.items())
            cut = [str(f[k]) for k in ("src", "dst", "from", "to") if k in f]
            open_.append((t, label, cut))
        elif e.kind == "heal":
            bands.extend({"s": _r(s), "e": _r(t), "label": lb, "cut": c} for s, lb, c in open_)
            open_ = []
    end = result.end_time - t0
    bands.extend({"s": _r(s), "e": _r(end), "label": lb, "cut": c} for s, lb, c in open_)
    return bands


def markers(result: RunResult) -> list[dict[str, Any]]:
    t0 = result.start_time
    return [
        {"t": _r(e.time - t0), "server": e.fields["server"], "kind": e.kind}
        for e in result.events.events
        if e.node == NO_NODE and e.kind in _OPERATOR and e.fields.get("server") in result.servers
    ]


def requests(result: RunResult) -> list[dict[str, Any]]:
    t0 = result.start_time
    out = []
    for e in result.events.events:
        f = e.fields
        if (
            e.node == SCENARIO_NODE
            and e.kind == "client_request"
            and f.get("server") in result.servers
        ):
            status = f.get("status")
            out.append(
                {
                    "t": _r(e.time - t0),
                    "server": f["server"],
                    "ok": isinstance(status, int) and status < 400,
                    "text": f"{f.get('method')} {f.get('path')} -> {status} "
                    f"{str(f.get('answer', ''))[:300]}",
                }
            )
    return out


def steps(result: RunResult) -> list[dict[str, Any]]:
    t0 = result.start_time
    return [
        {
            "n": st.number,
            "t": _r(st.started - t0),
            "e": _r(max(st.finished, st.started) - t0),
            "status": st.status,
            "description": st.description,
            "detail": st.detail,
            "note": note_text(result, st.number) or st.note or "",
        }
        for st in result.steps
    ]


def note_text(result: RunResult, number: int) -> str | None:
    """The note as the run showed it (placeholders filled), from its ``note`` event."""
    for e in result.events.events:
        if e.node == SCENARIO_NODE and e.kind == "note" and e.fields.get("step") == number:
            return str(e.fields.get("text", ""))
    return None


def _server_ids(result: RunResult) -> dict[str, str]:
    ids: dict[str, str] = {}
    for e in result.events.events:
        if e.kind == "server_started" and e.node in result.servers and e.fields.get("id"):
            ids[str(e.fields["id"])] = e.node
    return ids


def configurations(result: RunResult) -> list[dict[str, Any]]:
    """Each Raft configuration change the leader logged: ``{t, leader, command, server,
    voters, nonvoters}`` (server names)."""
    ids = _server_ids(result)
    t0 = result.start_time
    out = []
    for e in result.events.events:
        if e.kind != "config_change" or e.node not in result.servers:
            continue
        f = e.fields
        servers = f.get("servers") or []
        voters = [
            ids.get(s.get("id"), s.get("id")) for s in servers if s.get("suffrage") == "Voter"
        ]
        others = [
            ids.get(s.get("id"), s.get("id")) for s in servers if s.get("suffrage") != "Voter"
        ]
        out.append(
            {
                "t": _r(e.time - t0),
                "leader": e.node,
                "command": f.get("command", ""),
                "server": ids.get(str(f.get("server_id", "")), f.get("server_id", "")),
                "index": f.get("index"),
                "voters": sorted(voters),
                "nonvoters": sorted(others),
            }
        )
    return out


def keyrings(result: RunResult) -> dict[str, Any]:
    """Each server's gossip keyring over time, per pool: ``{initial, changes}`` where changes are
    ``{t, server, pool, op, key}`` (keys by fingerprint, never the key)."""
    initial = None
    encrypt = result.scenario.cluster.encrypt
    if encrypt:
        try:
            initial = fingerprint(base64.b64decode(encrypt))
        except (binascii.Error, ValueError):
            initial = None
    t0 = result.start_time
    changes = [
        {
            "t": _r(e.time - t0),
            "server": e.node,
            "pool": e.fields.get("pool", "lan"),
            "op": _KEY_OPS[e.kind],
            "key": e.fields.get("key_id", ""),
        }
        for e in result.events.events
        if e.kind in _KEY_OPS and e.node in result.servers and e.fields.get("ok", True)
    ]
    return {"initial": initial, "changes": changes}


def log_lines(result: RunResult, level: str = "INFO") -> list[dict[str, Any]]:
    """Consul's log lines (hclog) of every server at ``level`` and above."""
    t0 = result.start_time
    virtual = result.mode == "virtual"
    return [
        {
            "t": _r(e.time - t0),
            "node": e.node,
            "level": e.level,
            "line": format_hclog(e, virtual=virtual),
        }
        for e in result.events.events
        if e.node in result.servers and level_enabled(e.level, level)
    ]


def model(result: RunResult) -> dict[str, Any]:
    rec = result.recorder
    return {
        "name": result.scenario.name,
        "seed": result.seed,
        "mode": result.mode,
        "span": _r(max(result.end_time - result.start_time, 0.001)),
        "servers": list(result.servers),
        # Server k of datacenter dc is named dc-sk (consim.spec).
        "datacenters": {n: n.rsplit("-s", 1)[0] for n in result.servers},
        "segments": segments(result),
        "faults": faults(result),
        "markers": markers(result),
        "requests": requests(result),
        "steps": steps(result),
        "configurations": configurations(result),
        "keyrings": keyrings(result),
        "logs": log_lines(result),
        "commits": rec.commit_series(result.start_time) if rec is not None else None,
        "messages": rec.messages(result.start_time) if rec is not None else None,
    }
