"""Is a KV history linearizable? Wing & Gong's search with Lowe's memoization, per key.

Model: every key is a register holding a value or nothing (absent). ``write v`` sets it; an ok
``read`` returned the value it held (None = absent); ``cas [e, n]`` sets ``n`` if it held ``e``
(``e`` None = absent). A history is linearizable when each operation can be given one instant
between its invoke and its completion such that, run in that order, the register gives every ok
result. ``fail`` operations certainly did not happen and are dropped; ``info`` operations (outcome
unknown) may take effect at any time after their invoke, or never: their completion is at
infinity and the search need not place them (an info read constrains nothing and is dropped).

Keys are independent registers, so each is checked on its own (P-compositionality, Horn &
Kroening 2015): the search cost depends on one key's concurrency, not the whole history's.

The search (Wing & Gong 1993, with Lowe 2017's cache, as Porcupine does it): the invokes and
completions of one key sorted by time in a doubly linked list; repeatedly take the first call in
the list whose operation the model accepts from the current state, "lift" it (and its return)
out of the list and remember (operation, state) on a stack; meeting a return entry means the
operation it closes should have been linearized already: undo the last choice and try the next
call. The set of linearized operations (a bitset held in a Python int) and the register's state
are memoized: reaching the same pair twice explores nothing new.

An invalid verdict comes with the smallest window found: the shortest prefix of the key's
history that is already not linearizable (linearizability is prefix-closed, so a binary search
finds it; operations still open at the cut become info), then operations deleted one chunk at a
time while the rest stays non-linearizable (ddmin), a writer never deleted while a kept read
needs its value.

Pure Python and deterministic.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from consim.check.history import History, Operation

# search operation kinds
_READ, _WRITE, _CAS, _CAS_INFO = 0, 1, 2, 3

DEFAULT_BUDGET = 10_000_000
# the window's minimization gets its own, smaller allowance: it is a courtesy, not the verdict
MINIMIZE_BUDGET = 3_000_000
MINIMIZE_TESTS = 400


@dataclass
class LinearizabilityResult:
    """The verdict over all keys; for an invalid one, the failing key and its smallest window."""

    verdict: str  # "valid" | "invalid" | "unknown"
    keys: dict[str, str] = field(default_factory=dict)  # key -> verdict
    failing_key: str | None = None
    window: list[Operation] = field(default_factory=list)  # (invalid only), in invoke order
    explored: int = 0  # model steps tried by the search (all keys)
    reason: str = ""
    window_pending: list[int] = field(default_factory=list)  # op indices treated as info at the cut
    operations: int = 0  # operations checked (fail ones and info reads excluded)

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "keys": dict(self.keys),
            "failing_key": self.failing_key,
            "window": [op.to_json() for op in self.window],
            "window_pending": list(self.window_pending),
            "explored": self.explored,
            "operations": self.operations,
            "reason": self.reason,
        }

    def describe(self) -> str:
        """The verdict in words; for invalid, the window's operations one per line."""
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.keys.items()))
        lines = [
            f"linearizability: {self.verdict} ({self.operations} operations, "
            f"{len(self.keys)} keys{': ' + counts if counts else ''}; "
            f"{self.explored} search steps)"
        ]
        if self.verdict == "invalid":
            lines.append(
                f"smallest window that cannot be linearized, key {self.failing_key!r} "
                f"({len(self.window)} operations):"
            )
            pending = set(self.window_pending)
            for op in self.window:
                note = (
                    "  (still open at the cut: treated as unknown)" if op.index in pending else ""
                )
                lines.append("  " + op.describe() + note)
        if self.reason:
            lines.append(self.reason)
        return "\n".join(lines)


@dataclass
class _Item:
    """One operation as the search sees it."""

    op: Operation
    kind: int
    a: int
    b: int
    call: float
    ret: float  # math.inf: may take effect any time after call, or never

    @property
    def required(self) -> bool:
        return self.ret != math.inf


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


class _Values:
    """Interns a key's values as small ints (0 = absent) so states hash cheaply."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def id(self, value: Any) -> int:
        if value is None:
            return 0
        c = _canon(value)
        got = self.ids.get(c)
        if got is None:
            got = self.ids[c] = len(self.ids) + 1
        return got


def _items(ops: list[Operation], values: _Values) -> list[_Item]:
    items = []
    for op in ops:
        if op.type == "fail":
            continue
        info = op.type == "info"
        ret = math.inf if info else float(op.complete_time)  # type: ignore[arg-type]
        if op.f == "read":
            if info:
                continue  # an unknown read changes nothing and constrains nothing
            items.append(_Item(op, _READ, values.id(op.output), 0, op.invoke_time, ret))
        elif op.f == "write":
            items.append(_Item(op, _WRITE, values.id(op.value), 0, op.invoke_time, ret))
        else:
            exp, new = op.value
            kind = _CAS_INFO if info else _CAS
            items.append(_Item(op, kind, values.id(exp), values.id(new), op.invoke_time, ret))
    return items


def _search(items: list[_Item], budget: int) -> tuple[str, int]:
    """Wing-Gong-Lowe over one key's items: ("valid" | "invalid" | "unknown", steps tried)."""
    n = len(items)
    required_left = sum(1 for it in items if it.required)
    if required_left == 0:
        return "valid", 0
    # entries: (time, 0=call/1=return, op); calls before returns at equal times (concurrent)
    order = []
    for i, it in enumerate(items):
        order.append((it.call, 0, i))
        if it.required:
            order.append((it.ret, 1, i))
    order.sort()
    size = len(order) + 1  # slot 0: the head sentinel
    nxt = list(range(1, size)) + [-1]
    prv = [-1] + list(range(0, size - 1))
    entry_op = [-1] * size
    match = [-2] * size  # return entry: -2; info call: -1; call: its return entry
    ret_slot = [-1] * n
    for slot in range(size - 1, 0, -1):
        _, kind, i = order[slot - 1]
        entry_op[slot] = i
        if kind == 1:
            ret_slot[i] = slot
        else:
            match[slot] = ret_slot[i]
    kinds = [it.kind for it in items]
    avals = [it.a for it in items]
    bvals = [it.b for it in items]
    required = [it.required for it in items]
    bits = [1 << i for i in range(n)]
    sbits = max(1, (max(max(avals), max(bvals)) + 1).bit_length())

    cache: set[int] = set()
    calls: list[tuple[int, int]] = []
    state = 0
    linearized = 0
    steps = 0
    entry = nxt[0]
    while True:
        m = match[entry] if entry != -1 else -2
        if m != -2:
            steps += 1
            if steps > budget:
                return "unknown", steps
            i = entry_op[entry]
            k = kinds[i]
            if k == _READ:
                ok = state == avals[i]
                new = state
            elif k == _WRITE:
                ok = True
                new = avals[i]
            elif k == _CAS:
                ok = state == avals[i]
                new = bvals[i]
            else:  # an info cas that ran and compared false changed nothing
                ok = True
                new = bvals[i] if state == avals[i] else state
            if ok:
                nl = linearized | bits[i]
                memo = (nl << sbits) | new
                if memo not in cache:
                    cache.add(memo)
                    calls.append((entry, state))
                    state = new
                    linearized = nl
                    # lift the call and its return out of the list
                    p, q = prv[entry], nxt[entry]
                    nxt[p] = q
                    if q != -1:
                        prv[q] = p
                    if m >= 0:
                        p, q = prv[m], nxt[m]
                        nxt[p] = q
                        if q != -1:
                            prv[q] = p
                    if required[i]:
                        required_left -= 1
                        if required_left == 0:
                            return "valid", steps
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
        else:
            # a return (or the end): its operation had to be linearized by now; backtrack
            if not calls:
                return "invalid", steps
            entry, state = calls.pop()
            i = entry_op[entry]
            linearized ^= bits[i]
            if required[i]:
                required_left += 1
            m = match[entry]
            if m >= 0:
                nxt[prv[m]] = m
                if nxt[m] != -1:
                    prv[nxt[m]] = m
            nxt[prv[entry]] = entry
            if nxt[entry] != -1:
                prv[nxt[entry]] = entry
            entry = nxt[entry]


def _unwritten(items: list[_Item]) -> _Item | None:
    """An ok read (or ok cas) expecting a value no write or cas could have produced: invalid
    without any search. The earliest such, by completion."""
    produced = {0}
    for it in items:
        if it.kind == _WRITE:
            produced.add(it.a)
        elif it.kind in (_CAS, _CAS_INFO):
            produced.add(it.b)
    bad = [it for it in items if it.kind in (_READ, _CAS) and it.a not in produced]
    return min(bad, key=lambda it: (it.ret, it.op.index)) if bad else None


def _prefix(items: list[_Item], cut: tuple[float, int, int]) -> list[_Item]:
    """The items whose call comes before ``cut`` in entry order; those whose return comes after
    become info (reads dropped)."""
    out = []
    for i, it in enumerate(items):
        if (it.call, 0, i) >= cut:
            continue
        if it.required and (it.ret, 1, i) >= cut:
            if it.kind == _READ:
                continue
            kind = _CAS_INFO if it.kind == _CAS else it.kind
            out.append(_Item(it.op, kind, it.a, it.b, it.call, math.inf))
        else:
            out.append(it)
    return out


def _minimal_window(items: list[_Item], budget: int) -> tuple[list[_Item], bool]:
    """The shortest non-linearizable prefix, then ddmin; (window items, whether deleting any one
    of them makes the rest linearizable, i.e. ddmin finished within its budget)."""
    used = 0
    # the cut points: every required op's return entry, in entry order
    cuts = sorted((it.ret, 1, i) for i, it in enumerate(items) if it.required)
    lo, hi = -1, len(cuts) - 1  # prefix through cuts[hi] is known invalid (the whole history)
    while hi - lo > 1 and used < budget:
        mid = (lo + hi) // 2
        # the prefix that includes cuts[mid]: cut just after it
        verdict, steps = _search(_prefix(items, _after(cuts[mid])), budget - used)
        used += steps
        if verdict == "invalid":
            hi = mid
        else:
            lo = mid
    window = _prefix(items, _after(cuts[hi]))

    tests = 0

    def still_invalid(candidate: list[_Item]) -> bool:
        nonlocal used, tests
        if used >= budget or tests >= MINIMIZE_TESTS:
            return False
        tests += 1
        verdict, steps = _search(candidate, budget - used)
        used += steps
        return verdict == "invalid"

    minimal = False
    chunks = 2
    while len(window) >= 2 and used < budget and tests < MINIMIZE_TESTS:
        size = max(1, len(window) // chunks)
        reduced = False
        for start in range(0, len(window), size):
            drop = set(range(start, min(start + size, len(window))))
            candidate = _without(window, drop)
            if candidate is not None and len(candidate) < len(window) and still_invalid(candidate):
                window = candidate
                chunks = max(chunks - 1, 2)
                reduced = True
                break
        if not reduced:
            if size == 1:
                minimal = True
                break
            chunks = min(len(window), chunks * 2)
    return window, minimal or len(window) == 1


def _after(entry: tuple[float, int, int]) -> tuple[float, int, int]:
    """The sort position just after an entry (ties broken by op number)."""
    t, kind, i = entry
    return (t, kind, i + 1) if kind == 1 else (t, 1, -1)


def _without(window: list[_Item], drop: set[int]) -> list[_Item] | None:
    """``window`` minus the items at ``drop``, and minus the reads and ok cas operations left
    without any writer of the value they expect (deleting a writer must not fabricate a read of
    a value never written)."""
    kept = [it for j, it in enumerate(window) if j not in drop]
    while True:
        produced = {0}
        for it in kept:
            if it.kind == _WRITE:
                produced.add(it.a)
            elif it.kind in (_CAS, _CAS_INFO):
                produced.add(it.b)
        orphan = [it for it in kept if it.kind in (_READ, _CAS) and it.a not in produced]
        if not orphan:
            return kept
        gone = {id(it) for it in orphan}
        kept = [it for it in kept if id(it) not in gone]


def check_linearizable(history: History, *, budget: int = DEFAULT_BUDGET) -> LinearizabilityResult:
    """Check every key's register history; ``budget`` caps the search steps per key (exhausted:
    that key, and the verdict unless another key is invalid, is "unknown")."""
    return check_operations(history.operations(), budget=budget)


def check_operations(
    ops: list[Operation], *, budget: int = DEFAULT_BUDGET
) -> LinearizabilityResult:
    by_key: dict[str, list[Operation]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    result = LinearizabilityResult(verdict="valid")
    invalid: list[tuple[str, list[_Item], _Item | None]] = []
    for key in sorted(by_key):
        items = _items(by_key[key], _Values())
        result.operations += len(items)
        bad = _unwritten(items)
        if bad is not None:
            result.keys[key] = "invalid"
            invalid.append((key, items, bad))
            continue
        verdict, steps = _search(items, budget)
        result.explored += steps
        result.keys[key] = verdict
        if verdict == "invalid":
            invalid.append((key, items, None))
    if invalid:
        result.verdict = "invalid"
        key, items, bad = invalid[0]
        result.failing_key = key
        if bad is not None:
            window = [bad]
            what = "read" if bad.kind == _READ else "cas expecting"
            shown = bad.op.output if bad.kind == _READ else bad.op.value[0]
            result.reason = (
                f"why: {what} {json.dumps(shown)} by p{bad.op.process} (#{bad.op.index}), "
                f"a value that no write or cas on {key!r} ever wrote (failed writes never "
                f"happened)"
            )
        else:
            window, minimal = _minimal_window(items, min(budget, MINIMIZE_BUDGET))
            result.reason = (
                "why: no order of these operations gives every ok result while placing each "
                "between its invoke and its completion (an info operation anywhere after its "
                "invoke, or nowhere); "
                + (
                    "delete any one of them and an order exists"
                    if minimal
                    else "(the minimization's budget ran out: the window may not be minimal)"
                )
            )
        result.window = sorted((it.op for it in window), key=lambda op: op.index)
        result.window_pending = sorted(
            it.op.index for it in window if not it.required and it.op.type != "info"
        )
    elif any(v == "unknown" for v in result.keys.values()):
        result.verdict = "unknown"
        result.reason = f"the search budget ({budget} steps per key) ran out on " + ", ".join(
            repr(k) for k, v in sorted(result.keys.items()) if v == "unknown"
        )
    return result
