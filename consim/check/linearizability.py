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
are memoized: reaching the same pair twice explores nothing new. Three exact refinements (see
``_plan``, ``_search``, ``_too_early``): info operations must be placed (or declared never to
have happened) before the last operation that needs their value completes; a read matching the
state is placed without branching; a read of a value nothing could have produced before it
completed is invalid without a search.

An invalid verdict comes with the smallest window found: the history up to the furthest
completion the search was stopped at (already not linearizable; operations still open there
become info), then the last 8, 16, 32, ... operations before that point, then operations deleted
a chunk at a time while the rest stays non-linearizable (ddmin); deleting a writer deletes the
reads that needed its value, so the window never fails for a made-up reason.

Pure Python and deterministic.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from consim.check.history import History, Operation, show_value

# search operation kinds
_READ, _WRITE, _CAS = 0, 1, 2

DEFAULT_BUDGET = 10_000_000
# the window's minimization gets its own, smaller allowance: it is a courtesy, not the verdict
MINIMIZE_BUDGET = 3_000_000
MINIMIZE_TESTS = 400
# benchmarks/check.py turns this off to measure what bounding info operations buys
_BOUND_INFO = True


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
    """One operation as the search sees it (its value ids interned per key)."""

    op: Operation
    kind: int
    a: int  # read: the value read; write: the value written; cas: the expected value
    b: int  # cas: the new value
    call: float
    ret: float  # math.inf for an info operation
    seq: int  # position in the key's list, to break ties between equal times

    @property
    def info(self) -> bool:
        return self.ret == math.inf

    @property
    def produces(self) -> int | None:
        return self.a if self.kind == _WRITE else self.b if self.kind == _CAS else None


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


def _items(ops: list[Operation]) -> list[_Item]:
    """One key's operations for the search: fail ones and info reads dropped."""
    values = _Values()
    items = []
    for op in ops:
        if op.type == "fail" or (op.type == "info" and op.f == "read"):
            continue  # never happened / changed nothing and told us nothing
        ret = math.inf if op.type == "info" else float(op.complete_time)  # type: ignore[arg-type]
        if op.f == "read":
            kind, a, b = _READ, values.id(op.output), 0
        elif op.f == "write":
            kind, a, b = _WRITE, values.id(op.value), 0
        else:
            kind, a, b = _CAS, values.id(op.value[0]), values.id(op.value[1])
        items.append(_Item(op, kind, a, b, op.invoke_time, ret, len(items)))
    return items


@dataclass
class _Plan:
    """Search input: per item (kind, a, b, call, deadline, optional)."""

    kinds: list[int]
    a: list[int]
    b: list[int]
    call: list[float]
    deadline: list[float]  # math.inf: need never be placed
    optional: list[bool]  # may be placed as a no-op (it never took effect)
    seq: list[int]  # the item's seq


def _plan(items: list[_Item]) -> _Plan:
    """Bound the info operations. An info write (or cas) of value v only matters while some
    operation that needs v may still be placed: an ok read of v or an ok cas expecting v (until
    it completes), or an info cas expecting v (until its own bound). Once all of those are
    placed, v in the register is a dead end that not applying it dominates. So an info operation
    whose value nobody needs is dropped, and the others must be placed, as themselves or as a
    no-op, before their bound: the last completion of an operation needing their value (a
    fixpoint, since info cas operations need values too). Without this every info operation of
    the run stays placeable to the end and the search space doubles with each (an invalid
    history could not be searched to the end)."""
    ok_need: dict[int, float] = {}
    for it in items:
        if it.kind == _READ or (it.kind == _CAS and not it.info):
            ok_need[it.a] = max(ok_need.get(it.a, -math.inf), it.ret)
    bound = {it.seq: -math.inf for it in items if it.info}
    info_cas = [it for it in items if it.info and it.kind == _CAS]
    while _BOUND_INFO:
        need = dict(ok_need)
        for it in info_cas:
            if bound[it.seq] >= it.call:
                need[it.a] = max(need.get(it.a, -math.inf), bound[it.seq])
        changed = False
        for it in items:
            if it.info:
                b = need.get(it.produces, -math.inf)  # type: ignore[arg-type]
                if b > bound[it.seq]:
                    bound[it.seq] = b
                    changed = True
        if not changed:
            break
    plan = _Plan([], [], [], [], [], [], [])
    for it in items:
        deadline, optional = it.ret, False
        if it.info and _BOUND_INFO:
            if bound[it.seq] < it.call:
                continue  # no one can ever see its value
            deadline, optional = bound[it.seq], True
        plan.kinds.append(it.kind)
        plan.a.append(it.a)
        plan.b.append(it.b)
        plan.call.append(it.call)
        plan.deadline.append(deadline)
        plan.optional.append(optional)
        plan.seq.append(it.seq)
    return plan


Cut = tuple[float, int, int]  # a position in entry order: (time, 0 call / 1 return, seq)
END: Cut = (math.inf, 2, 0)


def _search(items: list[_Item], budget: int) -> tuple[str, int, Cut]:
    """Wing-Gong-Lowe over one key's items: ("valid" | "invalid" | "unknown", steps tried, and
    for invalid the position just after the furthest return the search was stopped at: the
    prefix up to there is already not linearizable)."""
    plan = _plan(items)
    n = len(plan.kinds)
    required_left = sum(1 for d in plan.deadline if d != math.inf)
    if required_left == 0:
        return "valid", 0, END
    # entries: (time, 0=call/1=return, op); calls before returns at equal times (concurrent)
    order = []
    for i in range(n):
        order.append((plan.call[i], 0, i))
        if plan.deadline[i] != math.inf:
            order.append((plan.deadline[i], 1, i))
    order.sort()
    size = len(order) + 1  # slot 0: the head sentinel
    nxt = list(range(1, size)) + [-1]
    prv = [-1] + list(range(0, size - 1))
    entry_op = [-1] * size
    match = [-2] * size  # return entry: -2; call without a return: -1; call: its return entry
    ret_slot = [-1] * n
    for slot in range(size - 1, 0, -1):
        _, kind, i = order[slot - 1]
        entry_op[slot] = i
        if kind == 1:
            ret_slot[i] = slot
        else:
            match[slot] = ret_slot[i]
    kinds, avals, bvals, optional = plan.kinds, plan.a, plan.b, plan.optional
    must = [d != math.inf for d in plan.deadline]
    bits = [1 << i for i in range(n)]
    sbits = max(1, (max(max(avals), max(bvals)) + 1).bit_length())

    cache: set[int] = set()
    calls: list[tuple[int, int, int]] = []  # (entry, state before, alternative taken)
    state = 0
    linearized = 0
    steps = 0
    far = 0  # the furthest return entry (slot) the search had to stop at
    entry = nxt[0]
    # alt 0: the operation takes effect; 1 (optional ones): it never did; 2 on the stack: a read
    # that matched the state. Placing such a read at once loses nothing (it changes no state, and
    # everything that must precede it already does), so when what follows it fails, the
    # configuration it was placed in fails too: no other candidate is tried there.
    alt = 0
    while True:
        m = match[entry] if entry != -1 else -2
        if m != -2:
            steps += 1
            if steps > budget:
                return "unknown", steps, END
            i = entry_op[entry]
            forced = False
            if alt:
                ok, new = True, state
            else:
                k = kinds[i]
                if k == _WRITE:
                    ok, new = True, avals[i]
                elif k == _READ:
                    ok, new = state == avals[i], state
                    forced = ok
                else:
                    ok, new = state == avals[i], bvals[i]
            if ok:
                nl = linearized | bits[i]
                memo = (nl << sbits) | new
                if memo not in cache:
                    cache.add(memo)
                    calls.append((entry, state, 2 if forced else alt))
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
                    if must[i]:
                        required_left -= 1
                        if required_left == 0:
                            return "valid", steps, END
                    entry = nxt[0]
                    alt = 0
                    continue
                if forced:
                    entry = 0  # (the head: backtrack) explored before and failed: so did this one
                    continue
        else:
            # a return (or the end): its operation had to be placed by now; undo the last choice
            if entry == -1:
                far = size
            elif entry > far:
                far = entry
            if not calls:
                if far >= size:
                    return "invalid", steps, END
                t, _, i = order[far - 1]
                return "invalid", steps, (t, 1, plan.seq[i] + 1)
            entry, state, alt = calls.pop()
            i = entry_op[entry]
            linearized ^= bits[i]
            if must[i]:
                required_left += 1
            m = match[entry]
            if m >= 0:
                nxt[prv[m]] = m
                if nxt[m] != -1:
                    prv[nxt[m]] = m
            nxt[prv[entry]] = entry
            if nxt[entry] != -1:
                prv[nxt[entry]] = entry
            if alt == 2:
                entry = 0  # (the head: backtrack) below a forced read nothing else is tried
                continue
        # the next candidate: this operation's other alternative (it never took effect), or the
        # next entry of the list
        if not alt and optional[i]:
            alt = 1
        else:
            entry = nxt[entry]
            alt = 0


def _produced(items: list[_Item]) -> set[int]:
    """The values the register could ever hold: absent, written ones, and the new values of cas
    operations whose expected value it could hold (a fixpoint: cas chains)."""
    produced = {0} | {it.a for it in items if it.kind == _WRITE}
    cas = [it for it in items if it.kind == _CAS]
    grew = True
    while grew:
        grew = False
        for it in cas:
            if it.a in produced and it.b not in produced:
                produced.add(it.b)
                grew = True
    return produced


def _earliest(items: list[_Item]) -> tuple[dict[int, float], dict[int, _Item]]:
    """For every value, the earliest time the register could hold it (the invoke of a write of
    it, or of a cas to it whose expected value could be held by then) and the operation that
    would produce it then; absent (0) from the start."""
    when: dict[int, float] = {0: -math.inf}
    how: dict[int, _Item] = {}
    for it in items:
        if it.kind == _WRITE and it.call < when.get(it.a, math.inf):
            when[it.a], how[it.a] = it.call, it
    cas = [it for it in items if it.kind == _CAS]
    grew = True
    while grew:
        grew = False
        for it in cas:
            t = max(it.call, when.get(it.a, math.inf))
            if t < when.get(it.b, math.inf):
                when[it.b], how[it.b] = t, it
                grew = True
    return when, how


def _too_early(items: list[_Item]) -> tuple[_Item, list[_Item]] | None:
    """An ok read (or ok cas) needing a value that no operation could have produced before it
    completed (never written, written only by failed operations, or only later): invalid
    without any search. The earliest such, by completion, and the operations that would
    produce its value soonest (none if it is never written)."""
    when, how = _earliest(items)
    bad = [
        it
        for it in items
        if (it.kind == _READ or (it.kind == _CAS and not it.info))
        and when.get(it.a, math.inf) > it.ret
    ]
    if not bad:
        return None
    first = min(bad, key=lambda it: (it.ret, it.seq))
    chain: list[_Item] = []
    value = first.a
    while value in how and how[value] not in chain:
        chain.append(how[value])
        value = how[value].a if how[value].kind == _CAS else 0
    return first, chain


def _prefix(items: list[_Item], cut: tuple[float, int, int]) -> list[_Item]:
    """The items invoked before ``cut`` (a position in entry order); those that complete after
    it become info (reads dropped): the history as it stood at that moment."""
    out = []
    for it in items:
        if (it.call, 0, it.seq) >= cut:
            continue
        if not it.info and (it.ret, 1, it.seq) >= cut:
            if it.kind != _READ:
                out.append(_Item(it.op, it.kind, it.a, it.b, it.call, math.inf, it.seq))
        else:
            out.append(it)
    return out


def _minimal_window(items: list[_Item], stuck: Cut, budget: int) -> tuple[list[_Item], bool]:
    """The smallest window found: the history up to where the search was stopped, then the
    operations just before that point (8, 16, 32, ...: the violation is usually local, and small
    searches are cheap), then ddmin. Returns (window items, whether deleting any one of them
    makes the rest linearizable, i.e. ddmin finished within its budget)."""
    used = 0
    tests = 0

    def still_invalid(candidate: list[_Item]) -> bool:
        nonlocal used, tests
        if used >= budget or tests >= MINIMIZE_TESTS:
            return False
        tests += 1
        verdict, steps, _ = _search(candidate, budget - used)
        used += steps
        return verdict == "invalid"

    window = _prefix(items, stuck) if stuck != END else items
    by_call = sorted(range(len(window)), key=lambda j: (window[j].call, window[j].seq))
    k = 8
    while True:
        if k >= len(window):
            if window is not items and not still_invalid(window):
                window = items  # cannot happen if the search is right; never show a valid window
            break
        recent = _without(window, set(by_call[:-k]))
        if still_invalid(recent):
            window = recent
            break
        k *= 2

    minimal = False
    chunks = 2
    while len(window) >= 2 and used < budget and tests < MINIMIZE_TESTS:
        size = max(1, len(window) // chunks)
        reduced = False
        for start in range(0, len(window), size):
            candidate = _without(window, set(range(start, min(start + size, len(window)))))
            if len(candidate) < len(window) and still_invalid(candidate):
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


def _without(window: list[_Item], drop: set[int]) -> list[_Item]:
    """``window`` minus the items at ``drop``, and minus the reads and cas operations left
    needing a value nothing left could produce (deleting a writer must not fabricate a read of
    a value never written: the window must fail for a reason that was in the history)."""
    kept = [it for j, it in enumerate(window) if j not in drop]
    while True:
        produced = _produced(kept)
        orphans = {it.seq for it in kept if it.kind in (_READ, _CAS) and it.a not in produced}
        if not orphans:
            return kept
        kept = [it for it in kept if it.seq not in orphans]


def check_linearizable(history: History, *, budget: int = DEFAULT_BUDGET) -> LinearizabilityResult:
    """Check every key's register history; ``budget`` caps the search steps per key (exhausted:
    that key, and the verdict unless another key is invalid, is "unknown")."""
    return check_operations(history.operations(), budget=budget)


def check_operations(
    ops: list[Operation], *, budget: int = DEFAULT_BUDGET
) -> LinearizabilityResult:
    """``check_linearizable`` over already paired operations."""
    by_key: dict[str, list[Operation]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    result = LinearizabilityResult(verdict="valid")
    invalid: list[tuple[str, list[_Item], tuple[_Item, list[_Item]] | None, Cut]] = []
    for key in sorted(by_key):
        items = _items(by_key[key])
        result.operations += len(items)
        bad = _too_early(items)
        if bad is not None:
            result.keys[key] = "invalid"
            invalid.append((key, items, bad, END))
            continue
        verdict, steps, stuck = _search(items, budget)
        result.explored += steps
        result.keys[key] = verdict
        if verdict == "invalid":
            invalid.append((key, items, None, stuck))
    if invalid:
        result.verdict = "invalid"
        key, items, bad, stuck = invalid[0]
        result.failing_key = key
        if bad is not None:
            op, chain = bad[0].op, bad[1]
            window = [bad[0], *chain]
            if op.f == "read":
                what = f"read {show_value(op.output)}"
            else:
                what = f"cas expecting {show_value(op.value[0])}"
            if chain:
                first = chain[0].op
                why = (
                    f"completed at {op.complete_time:.3f}, before any operation that could "
                    f"write it was invoked (the first: #{first.index} at {first.invoke_time:.3f})"
                )
            else:
                why = f"a value that no write or cas on {key!r} ever wrote"
            result.reason = (
                f"why: #{op.index} by p{op.process} {what}: {why} (failed operations never "
                f"happened)"
            )
        else:
            window, minimal = _minimal_window(items, stuck, min(budget, MINIMIZE_BUDGET))
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
            it.op.index for it in window if it.info and it.op.type != "info"
        )
    elif any(v == "unknown" for v in result.keys.values()):
        result.verdict = "unknown"
        result.reason = f"the search budget ({budget} steps per key) ran out on " + ", ".join(
            repr(k) for k, v in sorted(result.keys.items()) if v == "unknown"
        )
    return result
