"""The garbage collector's settings for a process that serves live servers.

Every write in flight holds a chain of coroutines, futures and messages (a few dozen objects),
and every committed write leaves a log entry per server behind until the next snapshot. With
CPython's default threshold (a young-generation collection every 700 net allocations) the
collector runs every couple of hundred writes and each time walks every object of the writes
in flight: a fifth of a busy server's time. :func:`tune_for_serving` raises the young
threshold (a collection every 50,000 net allocations walks those objects 70 times less often,
plus the new ones it ages) and freezes what exists at the call (modules, classes, configuration) so
full collections skip it. Reference cycles are still collected, only later; nothing else changes.
Called by the live runtime (``consim up``, scenario files live, the benchmarks) and by
``consim agent``, once per process: a process that only runs virtual time keeps Python's
defaults (results do not depend on it either way); a test process keeps the settings for the
tests after its first live cluster.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000

_tuned = False


def tune_for_serving() -> None:
    """Raise the young-generation threshold and freeze what exists now (once per process)."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()
