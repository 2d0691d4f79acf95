"""Build small histories from one line per operation."""

from __future__ import annotations

from typing import Any

from consim.check.history import History


def history(*ops: tuple[Any, ...]) -> History:
    """Each op: (process, f, key, value, invoke, complete, type[, read value]); complete None =
    never completed. Events are recorded in time order (invokes first at equal times)."""
    events = []
    for seq, op in enumerate(ops):
        process, f, key, value, invoke, complete, typ, *rest = op
        events.append((invoke, 0, seq, "invoke", process, f, key, value))
        if complete is not None:
            out = rest[0] if f == "read" else value
            events.append((complete, 1, seq, typ, process, f, key, out))
    events.sort()
    h = History()
    for time, _, _, typ, process, f, key, value in events:
        if typ == "invoke":
            h.invoke(process, f, key, value, time)
        else:
            h.complete(process, typ, value, time)
    return h
