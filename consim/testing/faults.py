"""Test-only switches that each break one safety rule, so a campaign can show it catches them.

All are off; production code only reads them. ``consim check --break RULE`` (hidden, for tests)
and :func:`broken` turn one on for a run. A switch is a module attribute read at the point the
rule is enforced, so flipping it needs no restart of anything.

- ``grant_every_vote``: a server grants every RequestVote (two leaders in one term become possible).
- ``skip_leader_lease``: a leader never steps down for lack of a quorum (stale default reads).
- ``skip_consistent_barrier``: a new leader serves ``?consistent`` reads before its barrier
  (entries of earlier terms) is applied.
- ``apply_waiter_ignores_term``: a write's waiter reports success for whatever entry is applied at
  its index, even one of another term (a lost write acknowledged).
- ``keep_waiters_on_step_down``: a leader that steps down leaves its writes waiting instead of
  failing them at once (hashicorp/raft: ``leadership lost while committing log``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

grant_every_vote = False
skip_leader_lease = False
skip_consistent_barrier = False
apply_waiter_ignores_term = False
keep_waiters_on_step_down = False

RULES = (
    "grant_every_vote",
    "skip_leader_lease",
    "skip_consistent_barrier",
    "apply_waiter_ignores_term",
    "keep_waiters_on_step_down",
)


def set_broken(rules: Iterable[str]) -> None:
    """Turn exactly ``rules`` on and every other switch off."""
    chosen = set(rules)
    unknown = chosen - set(RULES)
    if unknown:
        raise ValueError(f"unknown rule(s) {sorted(unknown)}; known: {', '.join(RULES)}")
    for name in RULES:
        globals()[name] = name in chosen


@contextmanager
def broken(*rules: str) -> Iterator[None]:
    """Break ``rules`` for the duration of the block (then every switch is off again)."""
    set_broken(rules)
    try:
        yield
    finally:
        set_broken(())
