"""The event log: the spine every view (timeline, report, trace hash, log lines) is built from.

Every fact worth seeing is one :class:`Event`. Protocol code never prints; it returns events
(as ``(kind, fields)`` pairs) and the server driver stamps them with time and node name here.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterable, MutableSequence
from dataclasses import dataclass, field
from typing import Any

# hclog levels, lowest first. ``--log-level`` filters on these.
LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")

# The node of events no Consul agent logs (faults, kills): log lines for them name no node.
NO_NODE = ""

# The epoch virtual time 0.0 is shown as, so virtual-time logs read like real Consul logs.
VIRTUAL_EPOCH = _dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=_dt.UTC)


@dataclass(frozen=True)
class Event:
    """One fact: at ``time`` (seconds on the cluster's clock), ``node`` saw ``kind`` with ``fields``.

    ``node`` is a server name (``dc1-s1``), ``"scenario"`` for scenario steps, or ``NO_NODE``
    (``""``) for what no Consul agent would log: network faults and the operator's kills and
    restarts.
    ``fields`` holds only msgpack/JSON-friendly values (str, int, float, bool, None, lists, dicts)
    so the trace hash is stable across processes.
    """

    time: float
    node: str
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    level: str = "INFO"
    # hclog subsystem name, e.g. "agent.server.raft"; views use it for log lines.
    subsystem: str = "agent"
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "time": round(self.time, 6),
            "node": self.node,
            "kind": self.kind,
            "level": self.level,
            "subsystem": self.subsystem,
            "message": self.message,
            "fields": self.fields,
        }


class EventLog:
    """An append-only list of events with subscribers (live printing, waits, the report).

    ``max_events`` bounds what is kept: the log becomes a ring of the latest ``max_events``
    (``consim up`` runs for days; its events are printed as they happen and only the recent ones
    are looked at). Subscribers still see every event, and ``emitted`` counts them all. A run
    whose trace hash or report needs every event (virtual runs, ``consim run``) keeps them all
    (``max_events=None``, the default).
    """

    def __init__(self, clock: Callable[[], float], *, max_events: int | None = None) -> None:
        if max_events is not None and max_events < 1:
            raise ValueError(f"max_events must be at least 1, got {max_events}")
        self._clock = clock
        self.max_events = max_events
        self.events: MutableSequence[Event] = [] if max_events is None else deque(maxlen=max_events)
        self.emitted = 0
        self._subscribers: list[Callable[[Event], None]] = []

    @property
    def dropped(self) -> int:
        """Events no longer kept (always 0 without ``max_events``)."""
        return self.emitted - len(self.events)

    def now(self) -> float:
        return self._clock()

    def emit(
        self,
        node: str,
        kind: str,
        fields: dict[str, Any] | None = None,
        *,
        level: str = "INFO",
        subsystem: str = "agent",
        message: str = "",
    ) -> Event:
        event = Event(
            time=self._clock(),
            node=node,
            kind=kind,
            fields=dict(fields or {}),
            level=level,
            subsystem=subsystem,
            message=message or kind.replace("_", " "),
        )
        self.events.append(event)
        self.emitted += 1
        for callback in list(self._subscribers):
            callback(event)
        return event

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` for every later event; returns a function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def of_kind(self, *kinds: str) -> list[Event]:
        return [e for e in self.events if e.kind in kinds]

    def trace_hash(self, events: Iterable[Event] | None = None) -> str:
        """SHA-256 over the canonical JSON of every event: same seed, same hash."""
        if events is None and self.dropped:
            raise ValueError(
                f"no trace hash: this log keeps the last {self.max_events} events "
                f"and {self.dropped} were dropped"
            )
        digest = hashlib.sha256()
        for event in self.events if events is None else events:
            line = json.dumps(event.to_json(), sort_keys=True, separators=(",", ":"), default=str)
            digest.update(line.encode())
            digest.update(b"\n")
        return digest.hexdigest()


def format_time(t: float, *, virtual: bool, epoch: _dt.datetime = VIRTUAL_EPOCH) -> str:
    """``2026-11-27T12:00:00.123Z``: virtual seconds are shown on a fixed epoch."""
    if virtual:
        stamp = epoch + _dt.timedelta(seconds=t)
    else:
        stamp = _dt.datetime.fromtimestamp(t, tz=_dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


# Go field names for the keys of configuration entries (hashicorp/raft's Server struct).
_GO_FIELDS = {"id": "ID", "address": "Address", "suffrage": "Suffrage", "addr": "Address"}
_GO_SUFFRAGE = {"voter": "Voter", "nonvoter": "Nonvoter", "staging": "Staging"}


def go_value(value: Any) -> str:
    """A value as Go's ``%+v`` prints it, which is how hashicorp's log lines show structs and
    slices: ``[{Suffrage:Voter ID:a Address:127.0.0.1:8300}]``, ``[[dc1-s1 dc1-s2] [dc1-s3]]``,
    ``true``, ``<nil>``. Dicts print as structs (keys become Go field names)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}" if value == value and abs(value) < 1e21 else repr(value)
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, dict):
        parts = []
        items = list(value.items())
        if set(value) == {"id", "address", "suffrage"}:
            # raft.Server's field order, as %+v prints it.
            items = [(k, value[k]) for k in ("suffrage", "id", "address")]
        for k, v in items:
            name = _GO_FIELDS.get(str(k), str(k)[:1].upper() + str(k)[1:])
            if name == "Suffrage" and isinstance(v, str):
                v = _GO_SUFFRAGE.get(v.lower(), v)
            parts.append(f"{name}:{go_value(v)}")
        return "{" + " ".join(parts) + "}"
    return str(value)


def _hclog_value(value: Any) -> str:
    text = go_value(value)
    if text == "" or any(c in text for c in ' "=\t\n'):
        return json.dumps(text)
    return text


def format_hclog(event: Event, *, virtual: bool = True, epoch: _dt.datetime = VIRTUAL_EPOCH) -> str:
    """Render an event the way Consul's hclog does.

    ``2026-11-27T12:00:00.123Z [INFO]  agent.server.raft: entering leader state: leader="..."``
    """
    level = f"[{event.level}]".ljust(7)
    pairs = " ".join(
        f"{k}={_hclog_value(v)}" for k, v in event.fields.items() if not k.startswith("_")
    )
    text = f"{format_time(event.time, virtual=virtual, epoch=epoch)} {level} {event.subsystem}: {event.message}"
    if pairs:
        text += f": {pairs}"
    return text


def node_log_line(event: Event, *, shift: float = 0.0, virtual: bool = True) -> str:
    """An event as Consul's log line with its node among the fields (``node=dc1-s2``), as
    ``consim up`` prints it and the page shows it; ``shift`` moves its time (live runs: from trio's
    clock to the wall clock)."""
    shown = Event(
        event.time + shift,
        event.node,
        event.kind,
        {"node": event.node, **event.fields} if event.node else event.fields,
        event.level,
        event.subsystem,
        event.message,
    )
    return format_hclog(shown, virtual=virtual)


def level_enabled(level: str, threshold: str) -> bool:
    return LEVELS.index(level) >= LEVELS.index(threshold.upper())
