"""``check_contiguous`` (memory and sqlite storage) against the pairwise reference it replaced."""

import itertools

import pytest

from consim.raft.types import EntryType, LogEntry
from consim.storage.memory import check_contiguous


def reference(entries: list[LogEntry], last_index: int | None) -> None:
    if not entries:
        return
    if last_index is not None and entries[0].index != last_index + 1:
        raise ValueError(
            f"append at index {entries[0].index} does not continue the log (last {last_index})"
        )
    for prev, cur in zip(entries, entries[1:], strict=False):
        if cur.index != prev.index + 1:
            raise ValueError(f"appended entries not contiguous at index {cur.index}")


def outcome(fn, entries, last):  # type: ignore[no-untyped-def]
    try:
        fn(entries, last)
    except ValueError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("last", [None, 0, 2, 5])
def test_same_verdict_and_message_as_reference(last: int | None) -> None:
    for n in range(5):
        for indexes in itertools.product(range(1, 6), repeat=n):
            entries = [LogEntry(i, 1, EntryType.COMMAND) for i in indexes]
            assert outcome(check_contiguous, entries, last) == outcome(reference, entries, last)
