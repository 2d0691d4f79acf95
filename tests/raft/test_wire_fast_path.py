"""The wire decoder's fast path must agree with the strict path on every input.

``message_from_wire`` tries a fast decoder for AppendEntries and AppendEntriesResponse first and
falls back to the strict validator for anything it does not accept. These tests mutate valid
messages at random and check that the public decoder returns an equal message, or raises
MalformedMessage with the same text, as the strict path alone does.
"""

import random
from typing import Any

import msgpack
import pytest

from consim.raft import messages as M
from consim.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    MalformedMessage,
    message_from_wire,
    message_to_wire,
)
from consim.raft.types import EntryType, LogEntry


def strict(obj: Any) -> Any:
    try:
        return M._from_wire(obj)
    except MalformedMessage as exc:
        return ("malformed", str(exc))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        return ("malformed", f"bad message: {exc!r}")


def public(obj: Any) -> Any:
    try:
        return message_from_wire(obj)
    except MalformedMessage as exc:
        return ("malformed", str(exc))


class IntSub(int):
    pass


class StrSub(str):
    pass


ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    7,
    2**70,
    1.0,
    "",
    "x",
    b"x",
    [],
    [1],
    (),
    {},
    IntSub(3),
    StrSub("a"),
    EntryType.NOOP,
]


def _wire(msg: Any) -> dict[str, Any]:
    return msgpack.unpackb(msgpack.packb(message_to_wire(msg), use_bin_type=True), raw=False)


def _samples() -> list[dict[str, Any]]:
    entries = (
        LogEntry(6, 3, EntryType.COMMAND, b"a"),
        LogEntry(7, 3, EntryType.CONFIGURATION, b"b"),
        LogEntry(8, 4, EntryType.BARRIER, b""),
    )
    return [
        _wire(AppendEntries(4, "a", "a:8300", 5, 3, entries, 5, 9)),
        _wire(AppendEntries(4, "a", "a:8300", 0, 0, (), 0, 0)),
        _wire(AppendEntriesResponse(4, True, 9, 0, 7)),
        _wire(AppendEntriesResponse(4, False, 9, 5, 7)),
    ]


def _mutate(rng: random.Random, obj: dict[str, Any]) -> Any:
    obj = dict(obj)
    keys = list(obj)
    action = rng.randrange(6)
    if action == 0:
        obj[rng.choice(keys)] = rng.choice(ODD_VALUES)
    elif action == 1:
        del obj[rng.choice(keys)]
    elif action == 2:
        obj[rng.choice(["x", "Type", 1])] = 0
    elif action == 3 and isinstance(obj.get("entries"), list) and obj["entries"]:
        entries = [list(e) if isinstance(e, list | tuple) else e for e in obj["entries"]]
        i = rng.randrange(len(entries))
        e = entries[i]
        if not isinstance(e, list) or rng.random() < 0.3:
            entries[i] = rng.choice([tuple(e), e[:3], [*e, 1], "x", None] if e else [None])
        elif e:
            e[rng.randrange(len(e))] = rng.choice(ODD_VALUES)
        obj["entries"] = entries
    elif action == 4:
        obj["type"] = rng.choice(["AppendEntries", "AppendEntriesResponse", "RequestVote", 3])
    else:
        return rng.choice([None, [obj], obj.items(), {**obj, "type": StrSub(str(obj.get("type")))}])
    return obj


@pytest.mark.parametrize("seed", range(20))
def test_fast_path_agrees_with_strict_path(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(500):
        obj: Any = rng.choice(_samples())
        for _ in range(rng.randint(0, 3)):
            if isinstance(obj, dict):
                obj = _mutate(rng, obj)
        expected = strict(obj)
        got = public(obj)
        assert got == expected, (obj, got, expected)
        assert type(got) is type(expected)


def test_fast_path_takes_valid_replication_messages() -> None:
    for obj in _samples():
        msg = M._from_wire_fast(obj)
        assert msg is not None and msg == M._from_wire(obj)
        assert [type(e.type) for e in getattr(msg, "entries", ())] == [
            EntryType for _ in getattr(msg, "entries", ())
        ]


@pytest.mark.parametrize("index", range(4))
def test_fast_encoders_match_general_encoder(index: int) -> None:
    entries = (LogEntry(6, 3, EntryType.COMMAND, b"a"), LogEntry(7, 3, EntryType.NOOP))
    msg = [
        AppendEntries(4, "a", "a:8300", 5, 3, entries, 5, 9),
        AppendEntries(4, "a", "a:8300", 0, 0, (), 0, 0),
        AppendEntriesResponse(4, True, 9, 0, 7),
        AppendEntriesResponse(4, False, 9, 5, 7),
    ][index]
    fast = message_to_wire(msg)
    general = M._message_to_wire_general(msg)
    assert list(fast.items()) == list(general.items())  # same keys, same order, same values
    packed = msgpack.packb(fast, use_bin_type=True)
    assert packed == msgpack.packb(general, use_bin_type=True)
