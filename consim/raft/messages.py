"""Raft RPC messages (hashicorp/raft ``commands.go``) and their msgpack-friendly wire form.

``message_to_wire(msg)`` gives a dict with a ``"type"`` tag; ``message_from_wire(obj)`` checks the
shape strictly (exact key set, exact types, numbers in 0..2**63-1, contiguous entries) and raises
:class:`MalformedMessage` on anything else, so the core only ever sees well-formed messages.
The upper bound is SQLite's: terms and indexes are uint64 in hashicorp/raft, but the store keeps
signed 64-bit integers, so a larger value from the wire could never be persisted.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any

from consim.raft.types import (
    MAX_RAFT_NUMBER,
    EntryType,
    LogEntry,
    MalformedMessage,
    SnapshotMeta,
    fast_frozen_init,
)

__all__ = [
    "AppendEntries",
    "AppendEntriesResponse",
    "InstallSnapshot",
    "InstallSnapshotResponse",
    "MalformedMessage",
    "Message",
    "RequestVote",
    "RequestVoteResponse",
    "TimeoutNow",
    "TimeoutNowResponse",
    "message_from_wire",
    "message_to_wire",
]


@fast_frozen_init
@dataclass(frozen=True)
class RequestVote:
    term: int  # for a pre-vote: the term the candidate would use (its term + 1)
    candidate_id: str
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    leadership_transfer: bool = False


@fast_frozen_init
@dataclass(frozen=True)
class RequestVoteResponse:
    term: int
    granted: bool
    pre_vote: bool = False


@fast_frozen_init
@dataclass(frozen=True)
class AppendEntries:
    term: int
    leader_id: str
    leader_address: str
    prev_log_index: int
    prev_log_term: int
    entries: tuple[LogEntry, ...]
    leader_commit: int
    # Leader-assigned sequence number, echoed in the response (verify_leader rounds, staleness).
    seq: int = 0


@fast_frozen_init
@dataclass(frozen=True)
class AppendEntriesResponse:
    term: int
    success: bool
    # On success: highest index known to match the leader. On failure: follower's last index.
    last_log_index: int
    # On failure: where the leader should retry from (fast back-off hint). 0 on success.
    conflict_index: int = 0
    seq: int = 0


@fast_frozen_init
@dataclass(frozen=True)
class InstallSnapshot:
    """One chunk of a snapshot: ``data`` holds bytes [offset, offset + len(data)) of a snapshot of
    ``size`` bytes; ``done`` marks the last chunk (offset + len(data) == size). The follower
    assembles chunks in order and installs on ``done``."""

    term: int
    leader_id: str
    leader_address: str
    meta: SnapshotMeta
    data: bytes
    offset: int
    size: int
    done: bool


@fast_frozen_init
@dataclass(frozen=True)
class InstallSnapshotResponse:
    term: int
    success: bool
    # When done: the snapshot index the follower now has (its commit index if it needed
    # nothing). Otherwise: the index of the snapshot whose chunks it is assembling.
    last_index: int
    # Bytes of that snapshot the follower holds: where the leader's next chunk starts (after a
    # refused chunk too: 0 means start over).
    offset: int = 0
    # The follower is finished with this snapshot (installed it, or needs none).
    done: bool = True


@fast_frozen_init
@dataclass(frozen=True)
class TimeoutNow:
    term: int
    leader_id: str


@fast_frozen_init
@dataclass(frozen=True)
class TimeoutNowResponse:
    term: int
    success: bool


Message = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
    | TimeoutNowResponse
)

_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        RequestVote,
        RequestVoteResponse,
        AppendEntries,
        AppendEntriesResponse,
        InstallSnapshot,
        InstallSnapshotResponse,
        TimeoutNow,
        TimeoutNowResponse,
    )
}
# Computed once: message encode/decode is on every server's hot path.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in _TYPES.values()
}
_WIRE_KEYS: dict[type, frozenset[str]] = {
    cls: frozenset(names) | {"type"} for cls, names in _FIELD_NAMES.items()
}


# One attrgetter per class fetches every field in a single call.
_GETTERS: dict[type, attrgetter[Any]] = {
    cls: attrgetter(*names) for cls, names in _FIELD_NAMES.items()
}


def message_to_wire(msg: Message) -> dict[str, Any]:
    """A msgpack-able dict: ``{"type": "<ClassName>", <field>: value, ...}``."""
    cls = type(msg)
    # Replication traffic first: literal dicts, same keys in the same order as the general way.
    if cls is AppendEntriesResponse:
        return _append_entries_response_to_wire(msg)  # type: ignore[arg-type]
    if cls is AppendEntries:
        return _append_entries_to_wire(msg)  # type: ignore[arg-type]
    return _message_to_wire_general(msg)


def _message_to_wire_general(msg: Message) -> dict[str, Any]:
    cls = type(msg)
    out: dict[str, Any] = {"type": cls.__name__}
    out.update(zip(_FIELD_NAMES[cls], _GETTERS[cls](msg), strict=True))
    # Nested values in place (re-assigning a key keeps its position, so the key order is the
    # field order either way).
    if cls is AppendEntries:
        out["entries"] = [e.to_wire() for e in msg.entries]  # type: ignore[union-attr]
    elif cls is InstallSnapshot:
        out["meta"] = msg.meta.to_wire()  # type: ignore[union-attr]
    return out


def _append_entries_to_wire(m: AppendEntries) -> dict[str, Any]:
    return {
        "type": "AppendEntries",
        "term": m.term,
        "leader_id": m.leader_id,
        "leader_address": m.leader_address,
        "prev_log_index": m.prev_log_index,
        "prev_log_term": m.prev_log_term,
        "entries": [e.to_wire() for e in m.entries],
        "leader_commit": m.leader_commit,
        "seq": m.seq,
    }


def _append_entries_response_to_wire(m: AppendEntriesResponse) -> dict[str, Any]:
    return {
        "type": "AppendEntriesResponse",
        "term": m.term,
        "success": m.success,
        "last_log_index": m.last_log_index,
        "conflict_index": m.conflict_index,
        "seq": m.seq,
    }


def _int(obj: dict[str, Any], key: str) -> int:
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise MalformedMessage(f"field {key!r}: expected int")
    if v < 0:
        raise MalformedMessage(f"field {key!r}: negative")
    if v > MAX_RAFT_NUMBER:
        raise MalformedMessage(f"field {key!r}: above 2**63-1")
    return v


def _bool(obj: dict[str, Any], key: str) -> bool:
    v = obj[key]
    if not isinstance(v, bool):
        raise MalformedMessage(f"field {key!r}: expected bool")
    return v


def _str(obj: dict[str, Any], key: str) -> str:
    v = obj[key]
    if not isinstance(v, str):
        raise MalformedMessage(f"field {key!r}: expected str")
    return v


def _entries(obj: dict[str, Any], prev_index: int) -> tuple[LogEntry, ...]:
    raw = obj["entries"]
    if not isinstance(raw, list | tuple):
        raise MalformedMessage("field 'entries': expected list")
    out = tuple(LogEntry.from_wire(e) for e in raw)
    for i, e in enumerate(out):
        if e.index != prev_index + 1 + i:
            raise MalformedMessage("entries are not contiguous after prev_log_index")
    return out


def _meta(obj: dict[str, Any]) -> SnapshotMeta:
    meta = SnapshotMeta.from_wire(obj["meta"])
    if meta.index < 0 or meta.term < 0 or meta.configuration_index < 0:
        raise MalformedMessage("snapshot meta: negative number")
    return meta


def message_from_wire(obj: Any) -> Message:
    """Decode and validate; :class:`MalformedMessage` for any shape other than the expected one."""
    msg = _from_wire_fast(obj)
    if msg is not None:
        return msg
    try:
        return _from_wire(obj)
    except MalformedMessage:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # from_wire helpers of the shared types may raise plain errors on odd input.
        raise MalformedMessage(f"bad message: {exc!r}") from None


def _from_wire(obj: Any) -> Message:
    if not isinstance(obj, dict):
        raise MalformedMessage("message must be a map")
    tag = obj.get("type")
    if not isinstance(tag, str) or tag not in _TYPES:
        raise MalformedMessage(f"unknown message type {tag!r}")
    cls = _TYPES[tag]
    if obj.keys() != _WIRE_KEYS[cls]:
        raise MalformedMessage(
            f"{tag}: expected fields {sorted(_FIELD_NAMES[cls])}, got {sorted(map(str, obj))}"
        )
    if cls is RequestVote:
        return RequestVote(
            _int(obj, "term"),
            _str(obj, "candidate_id"),
            _int(obj, "last_log_index"),
            _int(obj, "last_log_term"),
            _bool(obj, "pre_vote"),
            _bool(obj, "leadership_transfer"),
        )
    if cls is RequestVoteResponse:
        return RequestVoteResponse(_int(obj, "term"), _bool(obj, "granted"), _bool(obj, "pre_vote"))
    if cls is AppendEntries:
        prev = _int(obj, "prev_log_index")
        return AppendEntries(
            _int(obj, "term"),
            _str(obj, "leader_id"),
            _str(obj, "leader_address"),
            prev,
            _int(obj, "prev_log_term"),
            _entries(obj, prev),
            _int(obj, "leader_commit"),
            _int(obj, "seq"),
        )
    if cls is AppendEntriesResponse:
        return AppendEntriesResponse(
            _int(obj, "term"),
            _bool(obj, "success"),
            _int(obj, "last_log_index"),
            _int(obj, "conflict_index"),
            _int(obj, "seq"),
        )
    if cls is InstallSnapshot:
        data = obj["data"]
        if not isinstance(data, bytes):
            raise MalformedMessage("field 'data': expected bytes")
        offset = _int(obj, "offset")
        size = _int(obj, "size")
        done = _bool(obj, "done")
        end = offset + len(data)
        if end > size:
            raise MalformedMessage("InstallSnapshot: chunk ends past the snapshot's size")
        if done != (end == size):
            raise MalformedMessage("InstallSnapshot: 'done' must mark exactly the last chunk")
        return InstallSnapshot(
            _int(obj, "term"),
            _str(obj, "leader_id"),
            _str(obj, "leader_address"),
            _meta(obj),
            data,
            offset,
            size,
            done,
        )
    if cls is InstallSnapshotResponse:
        return InstallSnapshotResponse(
            _int(obj, "term"),
            _bool(obj, "success"),
            _int(obj, "last_index"),
            _int(obj, "offset"),
            _bool(obj, "done"),
        )
    if cls is TimeoutNow:
        return TimeoutNow(_int(obj, "term"), _str(obj, "leader_id"))
    return TimeoutNowResponse(_int(obj, "term"), _bool(obj, "success"))


# ---------------------------------------------------------------------------------------- fast path
#
# Replication traffic (AppendEntries and its response) is nearly every message a server decodes.
# The fast path below accepts only the exact built-in types msgpack produces and builds the same
# message the strict path would; for anything else it returns None and the strict path above
# decides (so every malformed input still raises the same MalformedMessage, with the same text).

_ENTRY_TYPES: dict[int, EntryType] = {int(t): t for t in EntryType}
_MAX = MAX_RAFT_NUMBER
_AE_KEYS = len(_WIRE_KEYS[AppendEntries])
_AER_KEYS = len(_WIRE_KEYS[AppendEntriesResponse])


def _from_wire_fast(obj: Any) -> Message | None:
    if type(obj) is not dict:
        return None
    tag = obj.get("type")
    if tag == "AppendEntriesResponse" and len(obj) == _AER_KEYS:
        return _fast_append_entries_response(obj)
    if tag == "AppendEntries" and len(obj) == _AE_KEYS:
        return _fast_append_entries(obj)
    return None


def _fast_append_entries_response(obj: dict[str, Any]) -> AppendEntriesResponse | None:
    # With the key count checked, five present fields mean the key set is exact (a missing key
    # reads as None, which fails the type tests).
    term = obj.get("term")
    success = obj.get("success")
    last = obj.get("last_log_index")
    conflict = obj.get("conflict_index")
    seq = obj.get("seq")
    if (
        type(term) is int
        and 0 <= term <= _MAX
        and type(success) is bool
        and type(last) is int
        and 0 <= last <= _MAX
        and type(conflict) is int
        and 0 <= conflict <= _MAX
        and type(seq) is int
        and 0 <= seq <= _MAX
    ):
        return AppendEntriesResponse(term, success, last, conflict, seq)
    return None


def _fast_append_entries(obj: dict[str, Any]) -> AppendEntries | None:
    term = obj.get("term")
    leader_id = obj.get("leader_id")
    leader_address = obj.get("leader_address")
    prev = obj.get("prev_log_index")
    prev_term = obj.get("prev_log_term")
    raw = obj.get("entries")
    commit = obj.get("leader_commit")
    seq = obj.get("seq")
    if not (
        type(term) is int
        and 0 <= term <= _MAX
        and type(leader_id) is str
        and type(leader_address) is str
        and type(prev) is int
        and 0 <= prev <= _MAX
        and type(prev_term) is int
        and 0 <= prev_term <= _MAX
        and type(raw) is list
        and type(commit) is int
        and 0 <= commit <= _MAX
        and type(seq) is int
        and 0 <= seq <= _MAX
    ):
        return None
    entries = []
    index = prev
    for e in raw:
        index += 1
        if type(e) is not list or len(e) != 4:
            return None
        e_index, e_term, e_type, data = e
        # e_index == index > prev >= 0 also covers the strict path's "index >= 1".
        if (
            type(e_index) is not int
            or e_index != index
            or e_index > _MAX
            or type(e_term) is not int
            or not 0 <= e_term <= _MAX
            or type(e_type) is not int
            or type(data) is not bytes
        ):
            return None
        etype = _ENTRY_TYPES.get(e_type)
        if etype is None:
            return None
        entries.append(LogEntry(e_index, e_term, etype, data))
    return AppendEntries(
        term, leader_id, leader_address, prev, prev_term, tuple(entries), commit, seq
    )
