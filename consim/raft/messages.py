"""Raft RPC messages (hashicorp/raft ``commands.go``) and their msgpack-friendly wire form.

``message_to_wire(msg)`` gives a dict with a ``"type"`` tag; ``message_from_wire(obj)`` checks the
shape strictly (exact key set, exact types, no negative numbers, contiguous entries) and raises
:class:`MalformedMessage` on anything else, so the core only ever sees well-formed messages.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from consim.raft.types import LogEntry, MalformedMessage, SnapshotMeta

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


@dataclass(frozen=True)
class RequestVote:
    term: int  # for a pre-vote: the term the candidate would use (its term + 1)
    candidate_id: str
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    leadership_transfer: bool = False


@dataclass(frozen=True)
class RequestVoteResponse:
    term: int
    granted: bool
    pre_vote: bool = False


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


@dataclass(frozen=True)
class AppendEntriesResponse:
    term: int
    success: bool
    # On success: highest index known to match the leader. On failure: follower's last index.
    last_log_index: int
    # On failure: where the leader should retry from (fast back-off hint). 0 on success.
    conflict_index: int = 0
    seq: int = 0


@dataclass(frozen=True)
class InstallSnapshot:
    term: int
    leader_id: str
    leader_address: str
    meta: SnapshotMeta
    data: bytes


@dataclass(frozen=True)
class InstallSnapshotResponse:
    term: int
    success: bool
    last_index: int  # snapshot index the follower now has


@dataclass(frozen=True)
class TimeoutNow:
    term: int
    leader_id: str


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


def message_to_wire(msg: Message) -> dict[str, Any]:
    """A msgpack-able dict: ``{"type": "<ClassName>", <field>: value, ...}``."""
    out: dict[str, Any] = {"type": type(msg).__name__}
    for name in _FIELD_NAMES[type(msg)]:
        value = getattr(msg, name)
        if name == "entries":
            value = [e.to_wire() for e in value]
        elif name == "meta":
            value = value.to_wire()
        out[name] = value
    return out


def _int(obj: dict[str, Any], key: str) -> int:
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise MalformedMessage(f"field {key!r}: expected int")
    if v < 0:
        raise MalformedMessage(f"field {key!r}: negative")
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
        return InstallSnapshot(
            _int(obj, "term"), _str(obj, "leader_id"), _str(obj, "leader_address"), _meta(obj), data
        )
    if cls is InstallSnapshotResponse:
        return InstallSnapshotResponse(
            _int(obj, "term"), _bool(obj, "success"), _int(obj, "last_index")
        )
    if cls is TimeoutNow:
        return TimeoutNow(_int(obj, "term"), _str(obj, "leader_id"))
    return TimeoutNowResponse(_int(obj, "term"), _bool(obj, "success"))
