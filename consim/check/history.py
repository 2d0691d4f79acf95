"""A client history in Jepsen's shape: one JSON object per line, invokes and completions.

``{"process": 3, "type": "invoke", "f": "write", "key": "k1", "value": "v7", "time": 12.345}``
then ``{"process": 3, "type": "ok", ...}``. ``type`` is ``invoke``, ``ok`` (it happened),
``fail`` (it certainly did not happen) or ``info`` (unknown: it may have happened, at any time
after its invoke). A read's ok value is what it read (``null`` = absent); a write's value is what
it writes; a cas's value is ``[expected, new]`` (expected ``null`` = the key must be absent).
Other fields (server, consistency, index, error, ...) ride along in ``extra``. Faults appear as
``{"process": "nemesis", "type": "info", "f": "start"|"stop", "value": {...}}``: the checker
ignores them, the report draws them.

Pure Python, deterministic: no clock, no randomness.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TYPES = ("invoke", "ok", "fail", "info")
COMPLETIONS = ("ok", "fail", "info")
CLIENT_FS = ("read", "write", "cas")
NEMESIS = "nemesis"
NEMESIS_FS = ("start", "stop")
CORE_FIELDS = ("process", "type", "f", "key", "value", "time")


class HistoryError(ValueError):
    """A history that cannot be checked; the message names where (file:line) and the field."""


@dataclass
class HistoryEvent:
    """One line of history.jsonl."""

    process: int | str
    type: str
    f: str
    key: str | None
    value: Any
    time: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_nemesis(self) -> bool:
        return isinstance(self.process, str)

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"process": self.process, "type": self.type, "f": self.f}
        if self.key is not None:
            obj["key"] = self.key
        obj["value"] = self.value
        obj["time"] = self.time
        for name, v in self.extra.items():
            if name not in obj:
                obj[name] = v
        return obj

    @classmethod
    def from_json(cls, obj: Any, *, where: str) -> HistoryEvent:
        """Validate one decoded JSON object; ``where`` (e.g. ``h.jsonl:12``) prefixes errors."""

        def bad(name: str, expected: str) -> HistoryError:
            got = json.dumps(obj.get(name)) if name in obj else "nothing"
            return HistoryError(f"{where}: field {name!r}: expected {expected}, got {got}")

        if not isinstance(obj, dict):
            raise HistoryError(f"{where}: expected a JSON object, got {json.dumps(obj)[:60]}")
        process = obj.get("process")
        if isinstance(process, str):
            if process != NEMESIS:
                raise bad("process", f'a client number or "{NEMESIS}"')
        elif not isinstance(process, int) or isinstance(process, bool) or process < 0:
            raise bad("process", f'a client number (0, 1, ...) or "{NEMESIS}"')
        typ = obj.get("type")
        if typ not in TYPES:
            raise bad("type", "one of " + ", ".join(f'"{t}"' for t in TYPES))
        time = obj.get("time")
        if (
            not isinstance(time, int | float)
            or isinstance(time, bool)
            or not math.isfinite(time)
            or time < 0
        ):
            raise bad("time", "seconds as a number >= 0")
        extra = {k: v for k, v in obj.items() if k not in CORE_FIELDS}
        f = obj.get("f")
        if isinstance(process, str):
            if typ != "info":
                raise bad("type", '"info" for a nemesis event')
            if f not in NEMESIS_FS:
                raise bad("f", '"start" or "stop" for a nemesis event')
            key = obj.get("key")
            if key is not None and not isinstance(key, str):
                raise bad("key", "a string or nothing for a nemesis event")
            return cls(process, typ, f, key, obj.get("value"), float(time), extra)
        if f not in CLIENT_FS:
            raise bad("f", "one of " + ", ".join(f'"{x}"' for x in CLIENT_FS))
        key = obj.get("key")
        if not isinstance(key, str) or not key:
            raise bad("key", "a non-empty string")
        if "value" not in obj:
            raise bad("value", "a value (null is allowed)")
        value = obj["value"]
        if typ == "invoke":
            if f == "read" and value is not None:
                raise bad("value", "null on a read's invoke")
            if f == "write" and value is None:
                raise bad("value", "the value written (not null) on a write's invoke")
            if f == "cas" and (not isinstance(value, list) or len(value) != 2 or value[1] is None):
                raise bad("value", "[expected, new] (expected null = absent) on a cas's invoke")
        return cls(process, typ, f, key, value, float(time), extra)


@dataclass
class Operation:
    """An invoke paired with its completion. ``type`` is ``ok``, ``fail`` or ``info``; an invoke
    never completed (still open at the end) is ``info`` with ``complete_time`` None."""

    index: int
    process: int
    f: str
    key: str
    value: Any  # the invoke's value: write value, cas [expected, new], read None
    type: str
    output: Any  # the completion's value: for an ok read, what it read
    invoke_time: float
    complete_time: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> float:
        """When the operation certainly no longer takes effect: infinity for an info op."""
        if self.type == "info" or self.complete_time is None:
            return math.inf
        return self.complete_time

    def describe(self) -> str:
        """``#12 p3 k1 write 'v7' -> ok  [1.200, 1.250]``"""
        if self.f == "read":
            what = "read"
            result = f"{show_value(self.output)} ok" if self.type == "ok" else self.type
        elif self.f == "cas":
            exp, new = self.value
            what = f"cas {show_value(exp)}->{show_value(new)}"
            result = self.type
        else:
            what = f"write {show_value(self.value)}"
            result = self.type
        if self.type == "info":
            result = "info (outcome unknown)"
        end = "..." if self.complete_time is None else f"{self.complete_time:.3f}"
        return f"#{self.index} p{self.process} {self.key} {what} -> {result}  [{self.invoke_time:.3f}, {end}]"

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "process": self.process,
            "f": self.f,
            "key": self.key,
            "value": self.value,
            "type": self.type,
            "output": self.output,
            "invoke_time": self.invoke_time,
            "complete_time": self.complete_time,
        }


def show_value(value: Any) -> str:
    """A value as the checker's text shows it: strings quoted, None as absent."""
    if value is None:
        return "absent"
    return json.dumps(value) if not isinstance(value, str) else repr(value)


class History:
    """The events of one run, in the order they happened."""

    def __init__(self, events: list[HistoryEvent] | None = None) -> None:
        self.events: list[HistoryEvent] = []
        self._open: dict[int, int] = {}  # process -> index of its open invoke in events
        for i, event in enumerate(events or []):
            self._add(event, where=f"event {i}")

    def _add(self, event: HistoryEvent, *, where: str) -> None:
        if event.is_nemesis:
            self.events.append(event)
            return
        process = event.process
        assert isinstance(process, int)
        if event.type == "invoke":
            if process in self._open:
                line = self._open[process]
                raise HistoryError(
                    f"{where}: field 'process': process {process} invokes again while its "
                    f"operation from event {line} is still open (one operation at a time)"
                )
            self._open[process] = len(self.events)
        else:
            if process not in self._open:
                raise HistoryError(
                    f"{where}: field 'type': {event.type!r} for process {process}, which has no "
                    f"open invoke"
                )
            invoke = self.events[self._open[process]]
            if event.f != invoke.f:
                raise HistoryError(
                    f"{where}: field 'f': {event.f!r} completes process {process}'s "
                    f"{invoke.f!r} invoke"
                )
            if event.key != invoke.key:
                raise HistoryError(
                    f"{where}: field 'key': {event.key!r} completes process {process}'s "
                    f"invoke on {invoke.key!r}"
                )
            if event.time < invoke.time:
                raise HistoryError(
                    f"{where}: field 'time': {event.time} is before its invoke at {invoke.time}"
                )
            del self._open[process]
        self.events.append(event)

    def invoke(self, process: int, f: str, key: str, value: Any, time: float, **extra: Any) -> None:
        """Record that ``process`` starts an operation."""
        self._add(
            HistoryEvent(process, "invoke", f, key, value, float(time), extra), where="invoke"
        )

    def complete(self, process: int, type: str, value: Any, time: float, **extra: Any) -> None:
        """Complete ``process``'s open invoke with ``ok``, ``fail`` or ``info``."""
        if type not in COMPLETIONS:
            raise HistoryError(f"complete: field 'type': expected ok, fail or info, got {type!r}")
        if process not in self._open:
            raise HistoryError(f"complete: process {process} has no open invoke")
        invoke = self.events[self._open[process]]
        event = HistoryEvent(process, type, invoke.f, invoke.key, value, float(time), extra)
        self._add(event, where="complete")

    def nemesis(self, f: str, value: Any, time: float, **extra: Any) -> None:
        """Record a fault starting (``f="start"``) or ending (``"stop"``)."""
        if f not in NEMESIS_FS:
            raise HistoryError(f"nemesis: field 'f': expected start or stop, got {f!r}")
        self._add(
            HistoryEvent(NEMESIS, "info", f, None, value, float(time), extra), where="nemesis"
        )

    def to_jsonl(self) -> str:
        return "".join(json.dumps(e.to_json()) + "\n" for e in self.events)

    def write_jsonl(self, path: Path) -> None:
        Path(path).write_text(self.to_jsonl(), encoding="utf-8")

    @classmethod
    def from_jsonl(cls, text: str, *, name: str = "<history>") -> History:
        history = cls()
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{name}:{number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HistoryError(f"{where}: not JSON: {exc.msg} (column {exc.colno})") from None
            history._add(HistoryEvent.from_json(obj, where=where), where=where)
        return history

    @classmethod
    def read_jsonl(cls, path: Path) -> History:
        """Read and validate a history file; errors name the file, line and field."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise HistoryError(f"{path}: cannot read: {exc}") from None
        return cls.from_jsonl(text, name=str(path))

    def operations(self) -> list[Operation]:
        """Invokes paired with completions, in invoke order; invokes still open at the end are
        info (their outcome is unknown)."""
        ops: list[Operation] = []
        open_ops: dict[int, Operation] = {}
        for event in self.events:
            if event.is_nemesis:
                continue
            process = event.process
            assert isinstance(process, int) and event.key is not None
            if event.type == "invoke":
                op = Operation(
                    index=len(ops),
                    process=process,
                    f=event.f,
                    key=event.key,
                    value=event.value,
                    type="info",
                    output=None,
                    invoke_time=event.time,
                    complete_time=None,
                    extra=dict(event.extra),
                )
                ops.append(op)
                open_ops[process] = op
            else:
                op = open_ops.pop(process)
                op.type = event.type
                op.output = event.value
                op.complete_time = event.time
                op.extra.update(event.extra)
        return ops

    def nemesis_events(self) -> list[HistoryEvent]:
        return [e for e in self.events if e.is_nemesis]

    def hash(self) -> str:
        """sha256 of the JSON lines: one seed, one hash."""
        return hashlib.sha256(self.to_jsonl().encode()).hexdigest()

    def __len__(self) -> int:
        return len(self.events)
