"""The plain KV set applied from its bytes (``KVTable.apply_plain_set``, a follower's every
write) must take exactly what msgpack's decoding of the same bytes gives, and apply it to the
same state; ``StateMachine.apply_entries`` (a follower's batch) is ``apply`` of each entry."""

from __future__ import annotations

import random

import msgpack
import pytest

from consim.raft.types import EntryType, LogEntry
from consim.server.state import DirEntry, StateMachine, encode_command
from consim.server.state.base import pack_command

SEED = 20261201


def _plain(key: str, value: bytes | None) -> bytes:
    return pack_command({"Type": "KVS", "Op": "set", "DirEnt": {"Key": key, "Value": value}})


def decode_plain_set(data: bytes) -> tuple[str, bytes | None] | None:
    """What the fast path took from ``data``: None when it left it alone."""
    fsm = StateMachine()
    if not fsm.kvs.apply_plain_set(7, data):
        assert fsm.kvs.entries == {} and fsm.indexes == {}  # nothing done
        return None
    ((key, entry),) = fsm.kvs.entries.items()
    assert entry == DirEntry(key, entry.value, 0, 7, 7, 0, "")
    assert fsm.indexes == {"kvs": 7}
    return key, entry.value


def _general(data: bytes) -> tuple[str, bytes | None] | None:
    """What msgpack makes of ``data``, when that is a plain set."""
    try:
        command = msgpack.unpackb(data, raw=False)
    except Exception:
        return None
    if (
        type(command) is dict
        and command.keys() == {"Type", "Op", "DirEnt"}
        and command["Type"] == "KVS"
        and command["Op"] == "set"
        and type(command["DirEnt"]) is dict
        and command["DirEnt"].keys() == {"Key", "Value"}
        and type(command["DirEnt"]["Key"]) is str
        and type(command["DirEnt"]["Value"]) in (bytes, type(None))
    ):
        return command["DirEnt"]["Key"], command["DirEnt"]["Value"]
    return None


def _random_key(rng: random.Random) -> str:
    size = rng.choice([0, 1, 9, 31, 32, 100, 255, 256, 300])
    alphabet = "abc/-_é€\U0001f600" if rng.random() < 0.3 else "abcxyz/0123456789"
    key = "".join(rng.choice(alphabet) for _ in range(size))
    return key


def _random_value(rng: random.Random) -> bytes | None:
    if rng.random() < 0.1:
        return None
    return rng.randbytes(rng.choice([0, 1, 64, 255, 256, 65535, 65536, 70000]))


def _mutations(data: bytes, rng: random.Random) -> list[bytes]:
    out = [data[:-1], data + b"\x00", data[: rng.randrange(len(data))]]
    for _ in range(8):
        i = rng.randrange(len(data))
        out.append(data[:i] + bytes([rng.randrange(256)]) + data[i + 1 :])
        out.append(data[:i] + bytes([rng.randrange(256)]) + data[i:])
        out.append(data[:i] + data[i + 1 :])
    return out


def test_the_fast_decoder_agrees_with_msgpack() -> None:
    rng = random.Random(SEED)
    print("seed", SEED)
    taken = 0
    for _ in range(400):
        key, value = _random_key(rng), _random_value(rng)
        data = _plain(key, value)
        fast = decode_plain_set(data)
        assert fast is None or fast == (key, value)
        if len(key.encode()) <= 255 and (value is None or len(value) <= 65535):
            assert fast == (key, value)  # the usual write takes the fast path
            taken += 1
        for mutated in _mutations(data, rng):
            fast = decode_plain_set(mutated)
            if fast is not None:  # accepted: then msgpack decodes the same plain set
                assert fast == _general(mutated), mutated
    assert taken > 100


@pytest.mark.parametrize(
    "command",
    [
        {"Type": "KVS", "Op": "set", "DirEnt": {"Key": "k", "Value": b"v", "Flags": 3}},
        {"Type": "KVS", "Op": "cas", "DirEnt": {"Key": "k", "Value": b"v"}},
        {"Type": "KVS", "Op": "set", "DirEnt": {"Value": b"v", "Key": "k"}},
        {"Type": "KVS", "Op": "set", "DirEnt": {"Key": "k", "Value": "text"}},
        {"Type": "KVS", "Op": "set", "DirEnt": {"Key": "k", "Value": b"v"}, "X": 1},
    ],
)
def test_other_commands_are_left_to_msgpack(command: dict[str, object]) -> None:
    assert decode_plain_set(pack_command(command)) is None


def test_applying_from_bytes_matches_applying_the_decoded_command() -> None:
    """The follower's path (bytes only) against the leader's (its own decoded command)."""
    rng = random.Random(SEED)
    follower, leader = StateMachine(), StateMachine()
    session = {"ID": "s1", "Node": "n1", "NodeChecks": [], "LockDelay": 0}
    node = {"Node": "n1", "Address": "10.0.0.1", "ID": "", "Datacenter": "dc1"}
    setup = [
        encode_command("Register", {"Node": node}),
        encode_command("Session", {"Op": "create", "Session": session}),
        encode_command("KVS", {"Op": "lock", "DirEnt": {"Key": "locked", "Session": "s1"}}),
    ]
    for index, data in enumerate(setup, 1):
        assert follower.apply(index, data) == leader.apply(index, data)
    keys = ["a", "b", "locked", "é", "x" * 200]
    for index in range(len(setup) + 1, 300):
        key, value = rng.choice(keys), _random_value(rng)
        data = _plain(key, value)
        command = msgpack.unpackb(data, raw=False)
        assert follower.apply(index, data) is leader.apply(index, data, command) is True
    assert follower.snapshot() == leader.snapshot()
    assert follower.kv["locked"].session == "s1"  # a plain set keeps the lock
    assert follower.last_applied == leader.last_applied == 299


def test_apply_entries_is_apply_of_each_entry() -> None:
    rng = random.Random(SEED)
    node = {"Node": "n1", "Address": "10.0.0.1", "ID": "", "Datacenter": "dc1"}
    entries = [
        LogEntry(1, 1, EntryType.CONFIGURATION, b"\x80"),
        LogEntry(2, 1, EntryType.NOOP, b""),
        LogEntry(3, 1, EntryType.COMMAND, encode_command("Register", {"Node": node})),
        LogEntry(4, 1, EntryType.COMMAND, b"\xc1"),  # malformed: an error result, nothing else
    ]
    for index in range(5, 200):
        key = rng.choice(["a", "b", "c/d"])
        if rng.random() < 0.2:
            body = {"Op": "delete", "DirEnt": {"Key": key}}
        else:
            body = {"Op": "set", "DirEnt": {"Key": key, "Value": _random_value(rng)}}
            if rng.random() < 0.2:
                body["DirEnt"]["Flags"] = 5  # not a plain set
        entries.append(LogEntry(index, 2, EntryType.COMMAND, encode_command("KVS", body)))
    entries.append(LogEntry(200, 2, EntryType.BARRIER, b""))
    batch, one_by_one = StateMachine(), StateMachine()
    batch.apply_entries(entries)
    for e in entries:
        if e.type is EntryType.COMMAND:
            one_by_one.apply(e.index, e.data)
        else:
            one_by_one.last_applied = e.index
    assert batch.snapshot() == one_by_one.snapshot()
    assert batch.last_applied == 200
