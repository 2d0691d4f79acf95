"""Synthetic histories from a simulated linearizable register, for tests and benchmarks.

Clients run one operation at a time; every operation that takes effect does so at one instant
between its invoke and its completion (an info one possibly long after its completion, or never),
and the register is applied in that order, so the history is linearizable by construction.
``mutate`` then breaks such a history in small ways (a read's value, an operation's times, a
completion type) so the result may or may not be linearizable.

Deterministic: all randomness comes from the ``random.Random`` passed in.
"""

from __future__ import annotations

import random
from typing import Any

from consim.check.history import History


def linearizable_history(
    rng: random.Random,
    *,
    ops: int,
    keys: int = 3,
    clients: int = 5,
    read_rate: float = 0.45,
    cas_rate: float = 0.2,
    fail_rate: float = 0.03,
    info_rate: float = 0.03,
    nemesis: bool = False,
) -> History:
    """``ops`` operations by ``clients`` concurrent processes over ``keys`` keys (k1, k2, ...)."""
    key_names = [f"k{i + 1}" for i in range(keys)]
    cursor = [rng.random() * 0.01 for _ in range(clients)]
    written: dict[str, list[Any]] = {k: [None] for k in key_names}
    planned = []  # (process, f, key, value, invoke, complete, type, effect time or None)
    counter = 0
    for _ in range(ops):
        process = min(range(clients), key=lambda c: (cursor[c], c))
        invoke = cursor[process]
        duration = 0.001 + rng.expovariate(1 / 0.01)
        complete = invoke + duration
        cursor[process] = complete + 0.0005 + rng.random() * 0.004
        key = rng.choice(key_names)
        r = rng.random()
        if r < read_rate:
            f, value = "read", None
        elif r < read_rate + cas_rate:
            counter += 1
            f, value = "cas", [rng.choice(written[key][-4:]), f"v{counter}"]
            written[key].append(value[1])
        else:
            counter += 1
            f, value = "write", f"v{counter}"
            written[key].append(value)
        r = rng.random()
        effect: float | None = invoke + rng.random() * duration
        if r < fail_rate and f != "read":
            typ, effect = "fail", None  # certainly not applied (e.g. refused by ACL)
        elif r < fail_rate + info_rate:
            typ = "info"  # e.g. a timeout: it took effect at some point, maybe later, or never
            if rng.random() < 0.4:
                effect = None
            elif rng.random() < 0.5:
                effect = invoke + rng.random() * duration * 20
        else:
            typ = "ok"
        planned.append([process, f, key, value, invoke, complete, typ, effect, None])
    # run the register in effect order to learn what reads returned and which cas succeeded
    state: dict[str, Any] = {}
    for op in sorted((p for p in planned if p[7] is not None), key=lambda p: p[7]):
        _, f, key, value, *_ = op
        if f == "read":
            op[8] = state.get(key)
        elif f == "write":
            state[key] = value
        elif state.get(key) == value[0]:
            state[key] = value[1]
        elif op[6] == "ok":
            op[6] = "fail"  # the compare failed: refused, so certainly not applied
    events = []
    for seq, (process, f, key, value, invoke, complete, typ, _effect, read) in enumerate(planned):
        events.append((invoke, 0, seq, process, f, key, value))
        out = read if f == "read" else value
        events.append((complete, 1, seq, process, typ, out))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    history = History()
    if nemesis:
        end = max(cursor)
        history.nemesis("start", {"fault": "partition", "groups": [["s1"], ["s2", "s3"]]}, 0.0)
        history.nemesis("stop", {"fault": "partition"}, end / 3)
    for e in events:
        if e[1] == 0:
            history.invoke(e[3], e[4], e[5], e[6], round(e[0], 6))
        else:
            history.complete(e[3], e[4], e[5], round(e[0], 6))
    if nemesis:
        history.events.sort(key=lambda ev: ev.time)  # stable: clients keep their order
    return history


def mutate(history: History, rng: random.Random) -> History:
    """A copy of ``history`` with one or two small changes; it may stop being linearizable."""
    events = [
        type(e)(e.process, e.type, e.f, e.key, e.value, e.time, dict(e.extra))
        for e in history.events
    ]
    client = [i for i, e in enumerate(events) if not e.is_nemesis]
    values: dict[str, list[Any]] = {}
    for e in events:
        if e.f == "write" and e.type == "invoke":
            values.setdefault(e.key or "", []).append(e.value)
    for _ in range(rng.choice((1, 1, 2))):
        reads = [j for j in client if events[j].f == "read" and events[j].type == "ok"]
        i = rng.choice(reads if reads and rng.random() < 0.5 else client)
        e = events[i]
        choice = rng.random()
        if e.type == "ok" and e.f == "read" and choice < 0.5:
            e.value = rng.choice([None, *values.get(e.key or "", [])])
        elif e.type != "invoke" and choice < 0.75:
            e.type = rng.choice(("ok", "fail", "info"))
            if e.f == "read" and e.type == "ok":
                e.value = rng.choice([None, *values.get(e.key or "", [])])
        else:
            # move the operation in time, keeping its process's events in order
            mine = [j for j in client if events[j].process == e.process]
            pos = mine.index(i)
            lo = events[mine[pos - 1]].time if pos > 0 else 0.0
            hi = events[mine[pos + 1]].time if pos + 1 < len(mine) else lo + 0.1
            e.time = round(lo + (hi - lo) * rng.random(), 6)
    events.sort(key=lambda ev: ev.time)
    return History(events)
