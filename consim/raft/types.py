"""Plain data types shared by the Raft core, its storage and its drivers.

Everything here is immutable and converts to and from msgpack-friendly values (``to_wire`` /
``from_wire``). ``from_wire`` validates shape and raises :class:`MalformedMessage` on anything
unexpected, so garbage from the network is refused at the edge and counted, never crashes a core.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

_T = TypeVar("_T")


class MalformedMessage(ValueError):
    """A wire value did not have the shape of the type it claimed to be."""


# Terms and indexes are uint64 in hashicorp/raft, and SQLite stores them as signed 64-bit: a
# value above 2**63-1 would overflow the store (and the next term after it the wire). Every
# decoder refuses them as malformed.
MAX_RAFT_NUMBER = (1 << 63) - 1


def _need(obj: Any, key: str, typ: type | tuple[type, ...]) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise MalformedMessage(f"missing field {key!r}")
    value = obj[key]
    # bool is an int subclass; refuse it where an int is wanted.
    if typ is int and isinstance(value, bool):
        raise MalformedMessage(f"field {key!r}: expected int, got bool")
    if not isinstance(value, typ):
        raise MalformedMessage(f"field {key!r}: expected {typ}, got {type(value).__name__}")
    if typ is int and not 0 <= value <= MAX_RAFT_NUMBER:
        raise MalformedMessage(f"field {key!r}: out of range")
    return value


def fast_frozen_init(cls: type[_T]) -> type[_T]:
    """Give a frozen dataclass an ``__init__`` that fills ``__dict__`` in one call.

    ``@dataclass(frozen=True)`` stores each field through ``object.__setattr__``, which is most of
    the cost of the small messages built on every RPC. The replacement has the same parameters,
    defaults and field order; equality, hashing, repr and immutability are untouched. The
    instance dict is not key-sharing (about twice the memory), so use it for short-lived objects.
    Only for plain classes: no ``__post_init__``, default factories, init-less fields or slots.
    """
    params = getattr(cls, "__dataclass_params__", None)
    assert params is not None and params.frozen, f"{cls.__name__}: not a frozen dataclass"
    assert not hasattr(cls, "__post_init__") and "__slots__" not in cls.__dict__
    names: list[str] = []
    args: list[str] = []
    namespace: dict[str, Any] = {"_set": object.__setattr__}
    for f in fields(cls):
        assert f.init and not f.kw_only and f.default_factory is MISSING, f.name
        names.append(f.name)
        if f.default is MISSING:
            args.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            args.append(f"{f.name}=_default_{f.name}")
    body = ", ".join(f"{n!r}: {n}" for n in names)
    exec(
        f"def __init__(self, {', '.join(args)}):\n    _set(self, '__dict__', {{{body}}})", namespace
    )
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = dict(cls.__init__.__annotations__)  # type: ignore[misc]
    cls.__init__ = init  # type: ignore[misc]
    return cls


class Role(enum.Enum):
    FOLLOWER = "Follower"
    CANDIDATE = "Candidate"
    LEADER = "Leader"


class Suffrage(enum.Enum):
    VOTER = "Voter"
    NONVOTER = "Nonvoter"


@dataclass(frozen=True, order=True)
class Server:
    """A member of the Raft configuration (hashicorp/raft ``Server``)."""

    id: str
    address: str
    suffrage: Suffrage = Suffrage.VOTER

    @property
    def is_voter(self) -> bool:
        return self.suffrage is Suffrage.VOTER

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "address": self.address, "suffrage": self.suffrage.value}

    @classmethod
    def from_wire(cls, obj: Any) -> Server:
        try:
            suffrage = Suffrage(_need(obj, "suffrage", str))
        except ValueError as exc:
            raise MalformedMessage(f"bad suffrage: {exc}") from None
        return cls(_need(obj, "id", str), _need(obj, "address", str), suffrage)


@dataclass(frozen=True)
class Configuration:
    """The set of servers; order is kept as given (it is the order Consul lists them)."""

    servers: tuple[Server, ...] = ()

    if TYPE_CHECKING:  # set in __post_init__; declared here for type checkers only (not fields)
        _by_id: dict[str, Server]
        _voters: tuple[Server, ...]
        _voter_ids: tuple[str, ...]
        _quorum: int

    def __post_init__(self) -> None:
        # Derived lookups, computed once: the core asks for voters, quorum and members on every
        # message. Plain attributes (not fields), so equality, hashing and repr are unchanged.
        by_id: dict[str, Server] = {}
        for s in self.servers:
            by_id.setdefault(s.id, s)  # the first one wins, as a linear search would find
        voters = tuple(s for s in self.servers if s.is_voter)
        init = object.__setattr__  # frozen dataclass
        init(self, "_by_id", by_id)
        init(self, "_voters", voters)
        init(self, "_voter_ids", tuple(s.id for s in voters))
        init(self, "_quorum", len(voters) // 2 + 1)

    def voters(self) -> list[Server]:
        return list(self._voters)

    def quorum_size(self) -> int:
        return self._quorum

    def get(self, server_id: str) -> Server | None:
        return self._by_id.get(server_id)

    def by_address(self, address: str) -> Server | None:
        for s in self.servers:
            if s.address == address:
                return s
        return None

    def has_vote(self, server_id: str) -> bool:
        s = self.get(server_id)
        return s is not None and s.is_voter

    def to_wire(self) -> list[dict[str, Any]]:
        return [s.to_wire() for s in self.servers]

    @classmethod
    def from_wire(cls, obj: Any) -> Configuration:
        if not isinstance(obj, list):
            raise MalformedMessage("configuration must be a list")
        return cls(tuple(Server.from_wire(o) for o in obj))


class EntryType(enum.IntEnum):
    COMMAND = 0  # state machine command (KV write etc.), data is opaque bytes
    NOOP = 1  # appended by a new leader (hashicorp/raft LogNoop)
    BARRIER = 2  # read barrier (hashicorp/raft LogBarrier)
    CONFIGURATION = 3  # data is msgpack of Configuration.to_wire()


class LogEntry(NamedTuple):
    """One Raft log entry. A named tuple: immutable, built in one call (every write makes three,
    one per server) and a third of a frozen dataclass's memory (the log holds thousands)."""

    index: int
    term: int
    type: EntryType
    data: bytes = b""

    def to_wire(self) -> list[Any]:
        return [self.index, self.term, int(self.type), self.data]

    @classmethod
    def from_wire(cls, obj: Any) -> LogEntry:
        if not isinstance(obj, list | tuple) or len(obj) != 4:
            raise MalformedMessage("log entry must be [index, term, type, data]")
        index, term, typ, data = obj
        if (
            not isinstance(index, int)
            or not isinstance(term, int)
            or isinstance(index, bool)
            or isinstance(term, bool)
            or not 1 <= index <= MAX_RAFT_NUMBER
            or not 0 <= term <= MAX_RAFT_NUMBER
        ):
            raise MalformedMessage("log entry index/term must be positive ints")
        if not isinstance(data, bytes):
            raise MalformedMessage("log entry data must be bytes")
        try:
            etype = EntryType(typ)
        except ValueError:
            raise MalformedMessage(f"unknown entry type {typ!r}") from None
        return cls(index, term, etype, data)


# LogEntry((index, term, type, data)) without the named tuple's Python-level __new__: one frame
# less per entry on the write path (the leader's append, a follower's decoding).
new_log_entry = functools.partial(tuple.__new__, LogEntry)


@dataclass(frozen=True)
class HardState:
    """What must be durable before a vote or an answer leaves the server."""

    current_term: int = 0
    voted_for: str | None = None  # server id voted for in current_term


@dataclass(frozen=True)
class SnapshotMeta:
    index: int
    term: int
    configuration: Configuration
    configuration_index: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "term": self.term,
            "configuration": self.configuration.to_wire(),
            "configuration_index": self.configuration_index,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> SnapshotMeta:
        return cls(
            _need(obj, "index", int),
            _need(obj, "term", int),
            Configuration.from_wire(_need(obj, "configuration", list)),
            _need(obj, "configuration_index", int),
        )


@dataclass(frozen=True)
class Snapshot:
    meta: SnapshotMeta
    data: bytes  # the state machine's own serialisation


@dataclass(frozen=True)
class PersistentState:
    """Everything storage hands back on start: the input to ``RaftCore.__init__``."""

    hard_state: HardState
    snapshot: Snapshot | None
    entries: tuple[LogEntry, ...]  # contiguous, starting right after snapshot.meta.index (or 1)
