"""The definition of linearizability, executed literally, to cross-check the real checker.

Try every order of the operations that respects real time (``a`` before ``b`` whenever ``a``
completed before ``b`` was invoked), with every choice of which info operations took effect,
running one register per key together (no P-compositionality, no memoization, no model
shortcuts: an info cas that took effect must have found its expected value). Exponential: for
histories of about ten operations.
"""

from __future__ import annotations

from typing import Any

from consim.check.history import History, Operation


class TooLarge(ValueError):
    pass


def check_bruteforce(history: History | list[Operation], *, max_ops: int = 12) -> bool:
    """True if some real-time-respecting order of the operations explains every ok result."""
    ops = history.operations() if isinstance(history, History) else history
    # fail: never happened; an info read: happened or not, it returned nothing we know
    ops = [op for op in ops if op.type != "fail" and not (op.type == "info" and op.f == "read")]
    if len(ops) > max_ops:
        raise TooLarge(f"{len(ops)} operations: brute force is for at most {max_ops}")
    ends = [op.end for op in ops]
    required = [op.type == "ok" for op in ops]
    n = len(ops)

    def apply(op: Operation, state: dict[str, Any]) -> dict[str, Any] | None:
        current = state.get(op.key)
        if op.f == "read":
            return state if current == op.output else None
        if op.f == "write":
            return {**state, op.key: op.value}
        expected, new = op.value
        return {**state, op.key: new} if current == expected else None

    def search(done: frozenset[int], state: dict[str, Any]) -> bool:
        if all(i in done for i in range(n) if required[i]):
            return True  # the info operations left over never took effect
        for i in range(n):
            if i in done:
                continue
            # i may go next only if no pending operation completed before i was invoked
            if any(j not in done and j != i and ends[j] < ops[i].invoke_time for j in range(n)):
                continue
            after = apply(ops[i], state)
            if after is not None and search(done | {i}, after):
                return True
        return False

    return search(frozenset(), {})
