"""hashicorp/raft 1.1.2's NetworkTransport wire format, sans-IO (``net_transport.go``,
``commands.go``, ``configuration.go``, ``log.go``).

A connection carries requests from the dialer and responses back, in order:

    request  = [rpc type: 1 byte][msgpack request]        (InstallSnapshot: then Size raw bytes)
    response = [msgpack error string ("" = ok)][msgpack response]

msgpack as go-msgpack's default ``MsgpackHandle`` writes it: struct fields as a map with sorted
field names (``RPCHeader`` inlined), ``[]byte`` and strings both as raw strings (no bin or str8
type), nil slices as nil. On the wire a server is named only by its address (``Leader``,
``Candidate``); ids appear only in configurations, which are encoded as
``{Servers: [{Address, ID, Suffrage}]}`` (Suffrage 0 Voter, 1 Nonvoter, 2 Staging).
Log types: 0 Command, 1 Noop, 2/3 deprecated peer changes, 4 Barrier, 5 Configuration.

Pre-vote: hashicorp/raft 1.1.2 has none. A cluster with pre-vote on sends it as rpc type 4
(``RequestPreVote`` {Term, LastLogIndex, LastLogTerm} -> {Term, Granted}), the request type
hashicorp/raft gained later; a 1.1.2 node answers an unknown type by closing the connection, so
mixed clusters run with pre-vote off.

This module maps these messages to consim's own (``consim.raft.messages``); what the wire lacks
(the leader's id, sequence numbers, snapshot chunk offsets) the transport supplies from the
connection (``consim.server.raft_transport``). Decoding never trusts a peer: a request of the
wrong shape raises :class:`MalformedMessage`, sizes are bounded by the decoder's buffer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import msgpack

from consim.raft.types import (
    MAX_RAFT_NUMBER,
    Configuration,
    EntryType,
    LogEntry,
    MalformedMessage,
    Server,
    Suffrage,
    new_log_entry,
)

RPC_APPEND_ENTRIES = 0
RPC_REQUEST_VOTE = 1
RPC_INSTALL_SNAPSHOT = 2
RPC_TIMEOUT_NOW = 3
RPC_REQUEST_PRE_VOTE = 4
RPC_TYPES = (
    RPC_APPEND_ENTRIES,
    RPC_REQUEST_VOTE,
    RPC_INSTALL_SNAPSHOT,
    RPC_TIMEOUT_NOW,
    RPC_REQUEST_PRE_VOTE,
)
PROTOCOL_VERSION = 3  # hashicorp/raft ProtocolVersionMax
SNAPSHOT_VERSION = 1

# hashicorp LogType <-> consim EntryType
_LOG_TYPE = {
    EntryType.COMMAND: 0,
    EntryType.NOOP: 1,
    EntryType.BARRIER: 4,
    EntryType.CONFIGURATION: 5,
}
_ENTRY_TYPE = {v: k for k, v in _LOG_TYPE.items()}
_SUFFRAGE = {Suffrage.VOTER: 0, Suffrage.NONVOTER: 1}
_SUFFRAGE_FROM = {0: Suffrage.VOTER, 1: Suffrage.NONVOTER, 2: Suffrage.NONVOTER}  # Staging: no vote

_packer = msgpack.Packer(use_bin_type=False)  # go-msgpack: raw strings for []byte and string


def pack(obj: Any) -> bytes:
    return _packer.pack(obj)


# ---- configurations ------------------------------------------------------------------------


def encode_configuration(configuration: Configuration) -> bytes:
    """hashicorp's ``EncodeConfiguration``."""
    return pack(
        {
            "Servers": [
                {"Address": s.address, "ID": s.id, "Suffrage": _SUFFRAGE[s.suffrage]}
                for s in configuration.servers
            ]
        }
    )


def decode_configuration(data: bytes) -> Configuration:
    """hashicorp's ``DecodeConfiguration`` (which panics on garbage; we raise)."""
    try:
        obj = msgpack.unpackb(data, raw=True)
    except Exception as exc:
        raise MalformedMessage(f"bad configuration: {exc!r}") from None
    if not isinstance(obj, dict):
        raise MalformedMessage("configuration must be a map")
    servers = obj.get(b"Servers")
    if servers is None:
        return Configuration(())
    if not isinstance(servers, list):
        raise MalformedMessage("configuration Servers must be a list")
    out = []
    for s in servers:
        if not isinstance(s, dict):
            raise MalformedMessage("configuration server must be a map")
        suffrage = s.get(b"Suffrage", 0)
        if type(suffrage) is not int or suffrage not in _SUFFRAGE_FROM:
            raise MalformedMessage(f"bad suffrage {suffrage!r}")
        out.append(
            Server(
                _text(s.get(b"ID", b"")), _text(s.get(b"Address", b"")), _SUFFRAGE_FROM[suffrage]
            )
        )
    return Configuration(tuple(out))


def _text(v: Any) -> str:
    if v is None:
        return ""
    if not isinstance(v, bytes):
        raise MalformedMessage(f"expected a string, got {type(v).__name__}")
    try:
        return v.decode()
    except UnicodeDecodeError:
        raise MalformedMessage("string is not UTF-8") from None


# ---- encoding ------------------------------------------------------------------------------


def encode_log(entry: LogEntry) -> dict[str, Any]:
    """hashicorp's ``Log`` (configuration entries already hold hashicorp's encoding)."""
    data = entry.data
    return {
        "Data": data if data else None,
        "Extensions": None,
        "Index": entry.index,
        "Term": entry.term,
        "Type": _LOG_TYPE[entry.type],
    }


def encode_entries(entries: Sequence[LogEntry]) -> bytes:
    """AppendEntries' Entries as go-msgpack writes them (nil when there are none)."""
    if not entries:
        return b"\xc0"
    pack_ = _packer.pack
    n = len(entries)
    parts = [bytes((0x90 | n,)) if n < 16 else b"\xdc" + n.to_bytes(2, "big")]
    term = -1
    term_bytes = b""
    for e in entries:
        data = e.data
        if e.term != term:  # a batch is nearly always one term: packed once
            term = e.term
            term_bytes = pack_(term)
        parts += (
            _LOG_DATA,
            pack_(data) if data else b"\xc0",
            _LOG_INDEX,
            pack_(e.index),
            _LOG_TERM,
            term_bytes,
            _LOG_TYPE_KEY,
            _LOG_TYPE_BYTE[e.type],
        )
    return b"".join(parts)


def append_entries_request(
    term: int,
    leader: str,
    prev_log_entry: int,
    prev_log_term: int,
    entries: Sequence[LogEntry],
    leader_commit_index: int,
    *,
    encoded_entries: bytes | None = None,
) -> bytes:
    """The request as go-msgpack writes it, assembled from constant fragments (the leader's
    hottest path: one per batch per follower) instead of a dict per entry. ``encoded_entries``
    is ``encode_entries(entries)`` when the caller has it already (the same batch goes to
    every follower)."""
    pack_ = _packer.pack
    return b"".join(
        (
            _AE_HEAD,
            encode_entries(entries) if encoded_entries is None else encoded_entries,
            _AE_LEADER,
            pack_(leader.encode()),
            _AE_COMMIT,
            pack_(leader_commit_index),
            _AE_PREV,
            pack_(prev_log_entry),
            _AE_PREV_TERM,
            pack_(prev_log_term),
            _AE_TAIL,
            pack_(term),
        )
    )


_AE_HEAD = b"\x00\x87" + pack("Entries")
_AE_LEADER = pack("Leader")
_AE_COMMIT = pack("LeaderCommitIndex")
_AE_PREV = pack("PrevLogEntry")
_AE_PREV_TERM = pack("PrevLogTerm")
_AE_TAIL = pack("ProtocolVersion") + pack(PROTOCOL_VERSION) + pack("Term")
_LOG_DATA = b"\x85" + pack("Data")
_LOG_INDEX = pack("Extensions") + b"\xc0" + pack("Index")
_LOG_TERM = pack("Term")
_LOG_TYPE_KEY = pack("Type")
_LOG_TYPE_BYTE = {t: pack(v) for t, v in _LOG_TYPE.items()}


def append_entries_response(term: int, last_log: int, success: bool) -> bytes:
    return _response(
        {
            "LastLog": last_log,
            "NoRetryBackoff": False,
            "ProtocolVersion": PROTOCOL_VERSION,
            "Success": success,
            "Term": term,
        }
    )


def request_vote_request(
    term: int, candidate: str, last_log_index: int, last_log_term: int, leadership_transfer: bool
) -> bytes:
    return bytes((RPC_REQUEST_VOTE,)) + pack(
        {
            "Candidate": candidate.encode(),
            "LastLogIndex": last_log_index,
            "LastLogTerm": last_log_term,
            "LeadershipTransfer": leadership_transfer,
            "ProtocolVersion": PROTOCOL_VERSION,
            "Term": term,
        }
    )


def request_vote_response(term: int, granted: bool) -> bytes:
    return _response(
        {"Granted": granted, "Peers": None, "ProtocolVersion": PROTOCOL_VERSION, "Term": term}
    )


def request_pre_vote_request(
    term: int, candidate: str, last_log_index: int, last_log_term: int
) -> bytes:
    """consim's pre-vote (type 4); 1.1.2's header names nobody, so it carries the Candidate."""
    return bytes((RPC_REQUEST_PRE_VOTE,)) + pack(
        {
            "Candidate": candidate.encode(),
            "LastLogIndex": last_log_index,
            "LastLogTerm": last_log_term,
            "ProtocolVersion": PROTOCOL_VERSION,
            "Term": term,
        }
    )


def request_pre_vote_response(term: int, granted: bool) -> bytes:
    return _response({"Granted": granted, "ProtocolVersion": PROTOCOL_VERSION, "Term": term})


def install_snapshot_request(
    term: int,
    leader: str,
    last_log_index: int,
    last_log_term: int,
    configuration: Configuration,
    configuration_index: int,
    size: int,
) -> bytes:
    """The request header; the ``size`` snapshot bytes follow it raw on the connection."""
    return bytes((RPC_INSTALL_SNAPSHOT,)) + pack(
        {
            "Configuration": encode_configuration(configuration),
            "ConfigurationIndex": configuration_index,
            "LastLogIndex": last_log_index,
            "LastLogTerm": last_log_term,
            "Leader": leader.encode(),
            "Peers": None,
            "ProtocolVersion": PROTOCOL_VERSION,
            "Size": size,
            "SnapshotVersion": SNAPSHOT_VERSION,
            "Term": term,
        }
    )


def install_snapshot_response(term: int, success: bool) -> bytes:
    return _response({"ProtocolVersion": PROTOCOL_VERSION, "Success": success, "Term": term})


def timeout_now_request() -> bytes:
    return bytes((RPC_TIMEOUT_NOW,)) + pack({"ProtocolVersion": PROTOCOL_VERSION})


def timeout_now_response() -> bytes:
    return _response({"ProtocolVersion": PROTOCOL_VERSION})


def error_response(error: str, body: dict[str, Any] | None = None) -> bytes:
    return pack(error) + pack(body if body is not None else {})


def _response(body: dict[str, Any]) -> bytes:
    return b"\xa0" + pack(body)  # "" = no error


# ---- decoding ------------------------------------------------------------------------------


def uint(obj: dict[bytes, Any], key: bytes) -> int:
    """A uint64 field (absent = 0, as Go's decoder leaves it), within consim's storable range."""
    v = obj.get(key, 0)
    if v is None:
        return 0
    if type(v) is not int or not 0 <= v <= MAX_RAFT_NUMBER:
        raise MalformedMessage(f"{key.decode()}: expected an unsigned integer, got {v!r}")
    return v


def boolean(obj: dict[bytes, Any], key: bytes) -> bool:
    v = obj.get(key, False)
    if v is None:
        return False
    if type(v) is not bool:
        raise MalformedMessage(f"{key.decode()}: expected a bool, got {v!r}")
    return v


def raw(obj: dict[bytes, Any], key: bytes) -> bytes:
    v = obj.get(key)
    if v is None:
        return b""
    if not isinstance(v, bytes):
        raise MalformedMessage(f"{key.decode()}: expected bytes, got {type(v).__name__}")
    return v


def text(obj: dict[bytes, Any], key: bytes) -> str:
    return _text(obj.get(key))


def check_header(obj: Any) -> dict[bytes, Any]:
    """A request or response body: a map with a supported ProtocolVersion."""
    if not isinstance(obj, dict):
        raise MalformedMessage(f"expected a map, got {type(obj).__name__}")
    version = obj.get(b"ProtocolVersion", 0)
    if type(version) is not int or not 0 <= version <= PROTOCOL_VERSION:
        raise MalformedMessage(f"unsupported protocol version {version!r}")
    return obj


def decode_entries(obj: dict[bytes, Any], prev_log_entry: int) -> tuple[LogEntry, ...]:
    """AppendEntries' Entries: contiguous after PrevLogEntry, hashicorp log types translated
    (configuration entries keep hashicorp's encoding, which consim's core reads too)."""
    entries = obj.get(b"Entries")
    if entries is None:
        return ()
    if type(entries) is list:
        fast = _decode_usual_entries(entries, prev_log_entry)
        if fast is not None:
            return fast
    return _decode_entries_strictly(entries, prev_log_entry)


def _decode_usual_entries(entries: list[Any], prev_log_entry: int) -> tuple[LogEntry, ...] | None:
    """A follower's hottest loop, for the usual batch: every entry a map with all four fields,
    exact ints, bytes Data, contiguous, one of the known types. None for anything else, which
    the strict loop then accepts or refuses with the reason (so the two always agree)."""
    out = []
    append = out.append
    new = tuple.__new__  # LogEntry(...) without its Python-level __new__ (nor a partial's call)
    log_entry = LogEntry
    types = _ENTRY_TYPE
    expected = prev_log_entry + 1
    checked_term = None  # the last term seen valid: a batch nearly always has one
    try:
        for e in entries:
            if type(e) is not dict:
                return None
            index = e[b"Index"]  # KeyError when a field is absent
            term = e[b"Term"]
            log_type = e[b"Type"]
            data = e[b"Data"]
            if (
                index != expected
                or type(index) is not int  # True == 1 and 1.0 == 1
                or type(term) is not int
                or type(log_type) is not int
                or type(data) is not bytes  # a noop's nil Data is the strict loop's
            ):
                return None
            if term != checked_term:
                if not 0 <= term <= MAX_RAFT_NUMBER:
                    return None
                checked_term = term
            expected += 1
            append(new(log_entry, (index, term, types[log_type], data)))
    except KeyError:
        return None
    if expected - 1 > MAX_RAFT_NUMBER:
        return None
    return tuple(out)


def _decode_entries_strictly(entries: Any, prev_log_entry: int) -> tuple[LogEntry, ...]:
    if not isinstance(entries, list):
        raise MalformedMessage("Entries must be a list")
    out = []
    append = out.append
    new_entry = new_log_entry
    types = _ENTRY_TYPE
    expected = prev_log_entry + 1
    # One pass per entry of a follower's hottest loop: the usual field values are checked
    # inline; anything else takes the general helpers, which raise with the reason.
    for e in entries:
        if type(e) is not dict:
            raise MalformedMessage("a log entry must be a map")
        index = e.get(b"Index", 0)
        if type(index) is not int or index != expected:
            index = uint(e, b"Index")
            raise MalformedMessage(f"entries not contiguous: {index} where {expected} belongs")
        expected += 1
        term = e.get(b"Term", 0)
        if type(term) is not int or not 0 <= term <= MAX_RAFT_NUMBER:
            term = uint(e, b"Term")
        log_type = e.get(b"Type", 0)
        etype = types.get(log_type) if type(log_type) is int else None
        if etype is None:
            raise MalformedMessage(f"unsupported log type {log_type!r}")
        data = e.get(b"Data")
        if type(data) is not bytes:
            data = raw(e, b"Data")
        append(new_entry((index, term, etype, data)))
    if expected - 1 > MAX_RAFT_NUMBER:  # contiguous from a valid PrevLogEntry, but one too far
        raise MalformedMessage(f"Index: expected an unsigned integer, got {expected - 1!r}")
    return tuple(out)


class RequestReader:
    """The accepting end of a connection, incrementally: ``feed(data)`` then iterate
    :meth:`events`: ``(rpc_type, body)`` for a request (body: the decoded map, keys as bytes),
    then for InstallSnapshot ``(RPC_INSTALL_SNAPSHOT, bytes)`` chunks of its data until Size
    bytes came (the last one may be empty when Size is 0). Raises :class:`MalformedMessage` on
    an unknown type or undecodable bytes (the connection must close)."""

    def __init__(self, max_message: int) -> None:
        self._unpacker = msgpack.Unpacker(raw=True, max_buffer_size=max_message)
        self._type: int | None = None
        self._snapshot_left = -1  # bytes of snapshot data still to come (-1: none expected)
        self.max_message = max_message

    @property
    def in_message(self) -> bool:
        """A request has started and is not complete (for the stall deadline)."""
        return self._type is not None or self._snapshot_left >= 0

    def feed(self, data: bytes) -> None:
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            raise MalformedMessage("request exceeds the size limit") from None

    def events(self) -> Iterator[tuple[int, Any]]:
        u = self._unpacker
        while True:
            if self._snapshot_left >= 0:
                chunk = (
                    u.read_bytes(min(self._snapshot_left, 1 << 20)) if self._snapshot_left else b""
                )
                if not chunk and self._snapshot_left:
                    return
                self._snapshot_left -= len(chunk)
                if self._snapshot_left == 0:
                    self._snapshot_left = -1
                yield RPC_INSTALL_SNAPSHOT, chunk
                continue
            if self._type is None:
                b = u.read_bytes(1)
                if not b:
                    return
                if b[0] not in RPC_TYPES:
                    raise MalformedMessage(f"unknown rpc type {b[0]}")
                self._type = b[0]
            try:
                body = u.unpack()
            except msgpack.OutOfData:
                return
            except Exception as exc:
                raise MalformedMessage(f"undecodable request: {exc.__class__.__name__}") from None
            rpc_type, self._type = self._type, None
            body = check_header(body)
            if rpc_type == RPC_INSTALL_SNAPSHOT:
                size = body.get(b"Size", 0)
                if type(size) is not int or not 0 <= size <= MAX_RAFT_NUMBER:
                    raise MalformedMessage(f"bad snapshot Size {size!r}")
                self._snapshot_left = size
            yield rpc_type, body


class ResponseReader:
    """The dialing end: ``feed(data)`` then :meth:`responses` yields ``(error, body)`` pairs."""

    def __init__(self, max_message: int) -> None:
        self._unpacker = msgpack.Unpacker(raw=True, max_buffer_size=max_message)
        self._error: str | None = None

    @property
    def in_message(self) -> bool:
        return self._error is not None

    def feed(self, data: bytes) -> None:
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            raise MalformedMessage("response exceeds the size limit") from None

    def responses(self) -> Iterator[tuple[str, dict[bytes, Any]]]:
        u = self._unpacker
        while True:
            try:
                obj = u.unpack()
            except msgpack.OutOfData:
                return
            except Exception as exc:
                raise MalformedMessage(f"undecodable response: {exc.__class__.__name__}") from None
            if self._error is None:
                if obj is None:
                    obj = b""
                if not isinstance(obj, bytes):
                    raise MalformedMessage("response error must be a string")
                self._error = _text(obj)
                continue
            error, self._error = self._error, None
            if not isinstance(obj, dict):
                raise MalformedMessage("response must be a map")
            yield error, obj
