"""The sans-IO Raft core: a pure state machine with hashicorp/raft's behaviour.

The driver feeds it messages (:meth:`RaftCore.step`) and time (:meth:`RaftCore.tick`); every call
takes ``now`` (seconds). The core never reads a clock, never does I/O and draws randomness only from
the ``random.Random`` it was given (and, for the snapshot interval, from one seeded by its server
id). Its output is collected in a :class:`Ready` drained by
:meth:`RaftCore.ready`.

Driver contract for one ``Ready`` (the order matters for safety):

1. persist, in this order: ``hard_state`` -> ``truncate_from`` (truncate_suffix) -> ``entries``
   (append) -> ``snapshot`` (installed from the leader; also restore the FSM from it) ->
   ``local_snapshot`` (save_snapshot) -> ``compact_through`` (compact_prefix);
2. only then send ``messages`` (a vote or an AppendEntries success must never leave before the
   term/vote/entries it promises are durable); a message the driver cannot send (not
   encodable, over the frame limit) goes to :meth:`RaftCore.send_failed`, which counts it and
   has the leader send it again;
3. then apply ``committed`` to the FSM in order (all entry types are handed out; the FSM ignores
   NOOP/BARRIER/CONFIGURATION as it likes), and resolve ``verifications``; record ``events``.

Drain ``ready()`` after every ``step``/``tick``/API call (the simplest correct driver does this).
After draining, when :meth:`RaftCore.should_snapshot` is true, snapshot the FSM and hand it to
:meth:`RaftCore.snapshot_taken`. As hashicorp/raft's ``runSnapshots``, it turns true only at a check
every random [1, 2) x ``RaftConfig.snapshot_interval`` (part of :meth:`RaftCore.next_deadline`) that
finds ``snapshot_threshold`` entries applied since the last snapshot.

Event kinds (``RaftEvent.kind``), stable; messages follow hashicorp/raft's log lines:

- ``role_change``: "entering follower state" / "entering candidate state" / "entering leader state"
  with ``{"follower"|"node"|"leader": "Node at ADDR [Role]", ...}``
- ``election_timeout``: "heartbeat timeout reached, starting election" (follower) or
  "Election timeout reached, restarting election" (candidate)
- ``pre_vote``: "pre-vote successful, starting election"
- ``election_won``: "election won" ``{term, tally}``
- ``leader_lost``: "failed to contact quorum of nodes, stepping down"
- ``leader_change``: ``{leader_id, leader_address, term}`` whenever the known leader changes
- ``term_change``: ``{term, previous}``
- ``config_change``: "updating configuration" ``{command, server_id, server_address, servers, index}``
- ``removed``: "removed ourself, transitioning to follower"
- ``transfer``: leadership transfer started / finished / timed out ``{target, outcome}``
- ``snapshot``: "snapshot complete up to" ``{index, term, compacted_through}``
- ``install_snapshot``: "Installed remote snapshot" ``{index, term, leader}``
- ``snapshot_transfer`` (leader): "starting snapshot transfer" / "snapshot transfer complete"
  ``{peer, index, size}``; the snapshot travels in ``RaftConfig.snapshot_chunk_size`` chunks
- ``follower_log_lost`` (leader, WARN): a follower answered with a shorter log than it had
  acknowledged (restarted with a wiped data dir); its match index is lowered and it is caught up
- ``ignored_message``: a message that was dropped ``{reason, type, from}`` (also counted in
  ``counters``); level DEBUG so it does not drown the log

Errors: :class:`RaftError` base; :class:`NotLeader` (``leader_id``, ``leader_address``) for leader-only
calls on a non-leader; a configuration change while another is uncommitted raises
``RaftError("configuration changed since C (latest is L)")`` (hashicorp's wording, with C the
committed and L the latest configuration index); ``RaftError("leadership transfer in progress")``
for writes during a transfer; ``RaftError("cannot find peer")`` for a transfer with no other voter;
``RaftError("cannot find peer <id>")`` for an unknown or non-voting transfer target.

Deliberate deviation from hashicorp/raft: a follower's heartbeat timer that fires while the
leader was heard within HeartbeatTimeout re-arms at ``last contact + random [1, 2) x
HeartbeatTimeout`` (etcd/raft and the Raft paper: the election timeout runs from the last
heartbeat), not at ``now + random [1, 2) x HeartbeatTimeout`` as hashicorp's ``runFollower`` does.
A dead leader is so noticed within 2 x HeartbeatTimeout of its last heartbeat instead of up to ~3x
(see ``tick``); the "heartbeat timeout reached" threshold itself is unchanged.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from consim.core_events import CoreEvent
from consim.golike import format_duration
from consim.raft.config import RaftConfig
from consim.raft.configuration import (
    ChangeCommand,
    ConfigurationChange,
    ConfigurationError,
    check_configuration,
    decode_configuration,
    encode_configuration,
    next_configuration,
)
from consim.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
    TimeoutNowResponse,
    message_from_wire,
)
from consim.raft.types import (
    MAX_RAFT_NUMBER,
    Configuration,
    EntryType,
    HardState,
    LogEntry,
    MalformedMessage,
    PersistentState,
    Role,
    Snapshot,
    SnapshotMeta,
    fast_frozen_init,
    new_log_entry,
)
from consim.testing import faults as _testing_faults

__all__ = [
    "FollowerReplication",
    "NotLeader",
    "Outbound",
    "RaftCore",
    "RaftError",
    "RaftEvent",
    "Ready",
    "new_node_id",
]


# The configuration of a server that has none yet (internal use; never handed out).
_NO_CONFIGURATION = Configuration()
_CONFIGURATION = EntryType.CONFIGURATION
_ENTRY_DATA = attrgetter("data")
# What an entry costs on the wire beyond its data ([index, term, type, data] in msgpack is at
# most ~25 bytes): counted against RaftConfig.max_append_bytes.
ENTRY_OVERHEAD = 32


class RaftError(Exception):
    """A Raft API call was refused."""


class NotLeader(RaftError):
    def __init__(self, leader_id: str | None, leader_address: str | None) -> None:
        super().__init__("node is not the leader")
        self.leader_id = leader_id
        self.leader_address = leader_address


RaftEvent = CoreEvent  # something the Raft driver should log


@fast_frozen_init
@dataclass(frozen=True)
class Outbound:
    to_id: str
    to_address: str
    message: Message


@dataclass
class Ready:
    hard_state: HardState | None = None
    truncate_from: int | None = None
    entries: list[LogEntry] = field(default_factory=list)
    snapshot: Snapshot | None = None  # installed from the leader
    compact_through: int | None = None
    messages: list[Outbound] = field(default_factory=list)
    committed: list[LogEntry] = field(default_factory=list)
    verifications: list[tuple[int, bool]] = field(default_factory=list)
    events: list[RaftEvent] = field(default_factory=list)
    local_snapshot: Snapshot | None = None  # taken by this server (snapshot_taken)

    def empty(self) -> bool:
        return not (
            self.hard_state
            or self.truncate_from is not None
            or self.entries
            or self.snapshot
            or self.local_snapshot
            or self.compact_through is not None
            or self.messages
            or self.committed
            or self.verifications
            or self.events
        )


def new_node_id(rng: random.Random) -> str:
    """A Consul-style node id (``adf4238a-882b-9ddc-4a9d-5b6758e4159e``) drawn from ``rng``."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class FollowerReplication:
    """The leader's view of replication to one follower (:meth:`RaftCore.follower_replication`).

    Times are the core's ``now`` values. ``last_success`` is when the follower last confirmed
    entries (or a snapshot) in this leadership term, ``None`` if it never has. A snapshot transfer
    in progress shows as ``snapshot_index > 0`` with ``snapshot_offset`` of ``snapshot_size``
    bytes acknowledged and ``snapshot_progress_at`` the last time a chunk was acknowledged.
    ``send_failures`` counts messages to it the driver reported unsent (:meth:`send_failed`).
    ``since`` is when this leader started replicating to it.
    """

    next_index: int
    match_index: int
    last_contact: float
    last_success: float | None
    snapshot_index: int
    snapshot_offset: int
    snapshot_size: int
    snapshot_started_at: float | None
    snapshot_progress_at: float | None
    send_failures: int
    since: float


class _Progress:
    """What the leader knows about one follower (hashicorp ``followerReplication``)."""

    __slots__ = (
        "next_index",
        "match_index",
        "match_sent_seq",
        "last_contact",
        "since",
        "last_success",
        "last_sent",
        "snapshot_sent_at",
        "inflight",
        "resend_from",
        "send_failures",
        "snap",
        "snap_offset",
        "snap_started_at",
        "snap_progress_at",
        "snap_probe_seq",
    )

    def __init__(self, next_index: int, now: float) -> None:
        self.next_index = next_index
        self.match_index = 0
        # The last seq sent when match_index was last raised. An answer to a later message was
        # written after that ack, so if it shows a log shorter than match_index the follower
        # lost entries it had acknowledged (its data dir was wiped); an answer to an earlier
        # one may just be stale (overtaken by the ack on a reordering link).
        self.match_sent_seq = 0
        self.last_contact = now
        self.since = now
        self.last_success: float | None = None
        self.last_sent = -1e18
        # When the chunk in flight was sent (None: no chunk awaits an answer).
        self.snapshot_sent_at: float | None = None
        # seq of each AppendEntries sent and not yet answered, oldest first. Links are FIFO, so
        # an answer to seq s settles every earlier one too (answered, or lost on the way).
        self.inflight: deque[int] = deque()
        # Set when the driver could not send an AppendEntries: the next heartbeat rewinds
        # next_index to here and resends (0: nothing to resend).
        self.resend_from = 0
        self.send_failures = 0
        # The snapshot being sent in chunks (once a chunk of it is acknowledged it is kept to the
        # end even if a newer one is taken), the bytes of it the follower acknowledged, when the
        # transfer started and last progressed.
        self.snap: Snapshot | None = None
        self.snap_offset = 0
        self.snap_started_at: float | None = None
        self.snap_progress_at: float | None = None
        # seq of the first heartbeat sent after the chunk in flight (0: none yet).
        self.snap_probe_seq = 0


class _SnapshotAssembly:
    """A follower's snapshot arriving in chunks from the leader of ``term``."""

    __slots__ = ("term", "leader_id", "meta", "size", "buf")

    def __init__(self, term: int, leader_id: str, meta: SnapshotMeta, size: int) -> None:
        self.term = term
        self.leader_id = leader_id
        self.meta = meta
        self.size = size
        self.buf = bytearray()

    def matches(self, term: int, leader_id: str, meta: SnapshotMeta, size: int) -> bool:
        return (
            self.term == term
            and self.leader_id == leader_id
            and self.size == size
            and self.meta.index == meta.index
            and self.meta.term == meta.term
        )


class RaftCore:
    def __init__(
        self,
        server_id: str,
        address: str,
        state: PersistentState,
        config: RaftConfig,
        rng: random.Random,
        now: float,
        protocol_version: int = 3,
    ) -> None:
        self.id = server_id
        self.address = address
        self.cfg = config
        self.rng = rng
        self.protocol_version = protocol_version
        self.counters: dict[str, int] = {
            "ignored_messages": 0,
            "stale_term": 0,
            "unknown_sender": 0,
            "malformed": 0,
            "duplicate_leader": 0,
            "elections": 0,
        }
        # When each sender outside our configuration was last warned about (rate limit).
        self._stranger_warned: dict[str, float] = {}
        self._ready = Ready()
        self._now = now

        self._term = state.hard_state.current_term
        self._voted_for = state.hard_state.voted_for
        snap = state.snapshot
        self._snapshot = snap
        snap_index = snap.meta.index if snap else 0
        entries = list(state.entries)
        if entries and entries[0].index > snap_index + 1:
            raise RaftError(f"log starts at {entries[0].index} after snapshot {snap_index}")
        for a, b in zip(entries, entries[1:], strict=False):
            if b.index != a.index + 1:
                raise RaftError("stored log is not contiguous")
        # The log holds entries (offset, offset+len]; offset_term is the term at offset, or None
        # when that entry was compacted without a snapshot at exactly that index.
        self._log: list[LogEntry] = entries
        # Leader: an upper bound of any entry's wire cost in its log (set on election, raised on
        # each append): while n x this fits the byte budget, a batch of n entries does too, so
        # it is not measured.
        self._entry_cost = ENTRY_OVERHEAD
        self._offset = entries[0].index - 1 if entries else snap_index
        if snap and self._offset == snap.meta.index:
            self._offset_term: int | None = snap.meta.term
        elif self._offset == 0:
            self._offset_term = 0
        else:
            self._offset_term = None

        # Everything covered by a snapshot is committed and already in the FSM the driver restores.
        self._commit = snap_index
        self._applied = snap_index

        self._role = Role.FOLLOWER
        self._leader_id: str | None = None
        self._leader_address: str | None = None
        self._leader_term = 0
        self._last_contact: float | None = None
        self._timer = now + self._random_timeout(config.heartbeat_timeout)
        # hashicorp/raft's runSnapshots checks the threshold once per random [I, 2I) interval,
        # so servers rarely snapshot together and a burst of writes is not interrupted at the
        # very entry that crosses it. The draws come from an RNG of their own, seeded by the
        # server's id, so the interval never moves an election timeout.
        self._snapshot_rng = random.Random(f"snapshot-interval/{server_id}")
        self._snapshot_due = config.snapshot_interval <= 0
        self._snapshot_check_at = self._next_snapshot_check(now)

        # Configurations: (index, configuration) of every CONFIGURATION entry still in the log,
        # plus the snapshot's; latest = last, committed = last with index <= commit.
        self._configs: list[tuple[int, Configuration]] = []
        if snap:
            self._configs.append((snap.meta.configuration_index, snap.meta.configuration))
        for e in entries:
            if e.type is EntryType.CONFIGURATION and e.index > snap_index:
                self._configs.append((e.index, decode_configuration(e.data)))

        # Candidate state.
        self._pre_vote = False
        self._votes: dict[str, bool] = {}
        self._transfer_election = False
        # Follower state: a snapshot arriving in chunks.
        self._assembly: _SnapshotAssembly | None = None
        # Leader state.
        self._progress: dict[str, _Progress] = {}
        self._seq = 0
        self._lease_check_at = 0.0
        self._verify_next = 1
        self._verify_rounds: dict[int, tuple[int, list[str]]] = {}
        self._transfer_target: str | None = None
        self._transfer_deadline = 0.0
        self._transfer_sent = False

    # ------------------------------------------------------------------ read-only properties

    @property
    def role(self) -> Role:
        return self._role

    @property
    def term(self) -> int:
        return self._term

    @property
    def voted_for(self) -> str | None:
        return self._voted_for

    @property
    def leader_id(self) -> str | None:
        return self._leader_id

    @property
    def leader_address(self) -> str | None:
        return self._leader_address

    @property
    def commit_index(self) -> int:
        return self._commit

    @property
    def applied_index(self) -> int:
        """Last index handed out in ``Ready.committed`` (or restored from a snapshot)."""
        return self._applied

    @property
    def last_index(self) -> int:
        return self._offset + len(self._log)

    @property
    def last_term(self) -> int:
        if self._log:
            return self._log[-1].term
        if self._snapshot and self._snapshot.meta.index == self._offset:
            return self._snapshot.meta.term
        return self._offset_term or 0

    @property
    def first_index(self) -> int:
        return self._offset + 1

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    @property
    def configuration(self) -> Configuration:
        return self._committed_config()[1]

    @property
    def configuration_index(self) -> int:
        return self._committed_config()[0]

    @property
    def latest_configuration(self) -> Configuration:
        return self._configs[-1][1] if self._configs else Configuration()

    @property
    def latest_configuration_index(self) -> int:
        return self._configs[-1][0] if self._configs else 0

    @property
    def last_contact(self) -> float | None:
        return self._last_contact

    def match_indexes(self) -> dict[str, int]:
        """Leader only: each follower's replicated index (autopilot's LastIndex per server)."""
        return {pid: p.match_index for pid, p in self._progress.items()}

    def follower_last_contact(self) -> dict[str, float]:
        """Leader only: when each follower last answered (autopilot's LastContact per server)."""
        return {pid: p.last_contact for pid, p in self._progress.items()}

    def follower_replication(self) -> dict[str, FollowerReplication]:
        """Leader only (empty otherwise): replication state per follower, for health checks.

        A follower that answers (recent ``last_contact``) but is not catching up shows a
        ``match_index`` far behind :attr:`last_index` with an old or missing ``last_success``,
        or a snapshot transfer whose ``snapshot_progress_at`` stopped moving."""
        out = {}
        for pid, p in self._progress.items():
            snap = p.snap
            out[pid] = FollowerReplication(
                next_index=p.next_index,
                match_index=p.match_index,
                last_contact=p.last_contact,
                last_success=p.last_success,
                snapshot_index=snap.meta.index if snap is not None else 0,
                snapshot_offset=p.snap_offset if snap is not None else 0,
                snapshot_size=len(snap.data) if snap is not None else 0,
                snapshot_started_at=p.snap_started_at if snap is not None else None,
                snapshot_progress_at=p.snap_progress_at if snap is not None else None,
                send_failures=p.send_failures,
                since=p.since,
            )
        return out

    @property
    def snapshot_receiving(self) -> tuple[int, int, int] | None:
        """Follower: (snapshot index, bytes received, size) of a snapshot arriving in chunks."""
        a = self._assembly
        return None if a is None else (a.meta.index, len(a.buf), a.size)

    def entry(self, index: int) -> LogEntry | None:
        """The log entry at ``index`` if still held (not compacted)."""
        i = index - self._offset - 1
        if 0 <= i < len(self._log):
            return self._log[i]
        return None

    def entries_from(self, index: int) -> list[LogEntry]:
        return self._log[max(0, index - self._offset - 1) :]

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index``; None when unknown (compacted or beyond the log)."""
        if index == 0:
            return 0
        offset = self._offset
        if index == offset:
            return self._offset_term
        snap = self._snapshot
        if snap is not None and index == snap.meta.index:
            return snap.meta.term
        i = index - offset - 1
        if 0 <= i < len(self._log):
            return self._log[i].term
        return None

    def stats(self, now: float) -> dict[str, str]:
        if self._role is Role.LEADER:
            contact = "0"
        elif self._last_contact is None:
            contact = "never"
        else:
            contact = format_duration(now - self._last_contact)
        latest = self.latest_configuration
        snap = self._snapshot
        return {
            "state": self._role.value,
            "term": str(self._term),
            "last_log_index": str(self.last_index),
            "last_log_term": str(self.last_term),
            "commit_index": str(self._commit),
            "applied_index": str(self._applied),
            "fsm_pending": "0",
            "last_snapshot_index": str(snap.meta.index if snap else 0),
            "last_snapshot_term": str(snap.meta.term if snap else 0),
            "latest_configuration": "["
            + ", ".join(
                f"{{Suffrage:{s.suffrage.value} ID:{s.id} Address:{s.address}}}"
                for s in latest.servers
            )
            + "]",
            "latest_configuration_index": str(self.latest_configuration_index),
            "num_peers": str(sum(1 for s in latest.voters() if s.id != self.id)),
            "last_contact": contact,
            "protocol_version": str(self.protocol_version),
            "protocol_version_min": "0",
            "protocol_version_max": "3",
            "snapshot_version_min": "0",
            "snapshot_version_max": "1",
        }

    # ------------------------------------------------------------------ driver API

    def ready(self) -> Ready:
        """Drain everything produced since the last call (see the module docstring for order)."""
        if self._role is Role.LEADER:
            self._replicate_all(False, self._now)
        if self._commit > self._applied:
            self._hand_out_committed()
        out, self._ready = self._ready, Ready()
        return out

    def has_ready(self) -> bool:
        return not self._ready.empty() or self._commit > self._applied

    def replication_idle(self) -> bool:
        """A leader with no AppendEntries awaiting an answer from any follower: an entry
        proposed now would wait for nothing if sent at once (the driver's cue to skip group
        commit)."""
        if self._role is not Role.LEADER:
            return False
        return all(not p.inflight and p.snap is None for p in self._progress.values())

    def bootstrap(self, configuration: Configuration) -> None:
        """hashicorp ``BootstrapCluster``: CONFIGURATION entry at index 1, term 1."""
        if self._term != 0 or self._log or self._snapshot is not None:
            raise RaftError("bootstrap only works on new clusters")
        err = check_configuration(configuration)
        if err:
            raise RaftError(err)
        entry = LogEntry(1, 1, EntryType.CONFIGURATION, encode_configuration(configuration))
        self._set_term(1, None)
        self._append([entry])
        self._configs.append((1, configuration))

    def next_deadline(self) -> float:
        check = self._snapshot_check_at
        if self._role is not Role.LEADER:
            return self._timer if self._timer < check else check
        # "if x < t: t = x" is exactly min(t, x), without the builtin call per follower.
        hb = self.cfg.heartbeat_interval
        t = self._lease_check_at if self._lease_check_at < check else check
        for p in self._progress.values():
            due = p.last_sent + hb
            if due < t:
                t = due
        if self._transfer_target is not None and self._transfer_deadline < t:
            t = self._transfer_deadline
        return t

    def tick(self, now: float) -> None:
        self._now = now
        if now >= self._snapshot_check_at:
            self._snapshot_check_at = self._next_snapshot_check(now)
            self._snapshot_due = self._snapshot_threshold_reached()
        if self._role is Role.LEADER:
            self._tick_leader(now)
        elif now >= self._timer:
            if self._role is Role.FOLLOWER:
                # The leader was heard within HeartbeatTimeout: re-arm. Deviation from
                # hashicorp/raft, whose heartbeat timer re-arms for a fresh random
                # [1, 2) x HeartbeatTimeout from *now*, so a leader that dies just after such
                # a re-arm is noticed only up to ~3 x HeartbeatTimeout after its last
                # heartbeat. Like etcd/raft and the Raft paper (the election timeout restarts
                # on every AppendEntries), the new deadline runs from the last contact: a
                # silent leader is noticed within [1, 2) x HeartbeatTimeout of its last
                # heartbeat. It is never earlier than hashicorp's threshold (now - last
                # contact < HeartbeatTimeout still holds whenever we re-arm, and the
                # deadline is at least last contact + HeartbeatTimeout), so leader
                # stickiness and pre-vote behave as before.
                last = self._last_contact
                if last is not None and now - last < self.cfg.heartbeat_timeout:
                    self._timer = last + self._random_timeout(self.cfg.heartbeat_timeout)
                    return
                self._follower_timeout(now)
            else:
                self._event(
                    "election_timeout",
                    {"term": self._term},
                    "WARN",
                    "Election timeout reached, restarting election",
                )
                self._start_election(now, pre_vote=True)

    def step(self, src_id: str, message: Message, now: float) -> None:
        """Handle one message; anything stale, unknown or ill-formed is ignored and counted."""
        self._now = now
        try:
            self._step(src_id, message, now)
        except (MalformedMessage, TypeError, AttributeError, ValueError) as exc:
            # Defensive: a driver handing us a bad object must not take the core down.
            self._ignore("malformed", message, src_id, str(exc))

    def step_wire(self, src_id: str, obj: Any, now: float) -> None:
        """Decode a wire message (``message_from_wire``) and step it; malformed input is counted."""
        try:
            msg = message_from_wire(obj)
        except MalformedMessage as exc:
            self._ignore("malformed", obj, src_id, str(exc))
            return
        self.step(src_id, msg, now)

    def send_failed(self, to_id: str, message: Message, now: float) -> None:
        """The driver could not send ``message`` (it did not encode, exceeded the frame limit, or
        the link refused it). Counted per follower (:meth:`follower_replication`); the leader
        resends it: an AppendEntries from the next heartbeat on, a snapshot chunk when its
        answer would have timed out. Other messages are left to Raft's own retries."""
        self._now = now
        p = self._progress.get(to_id)
        if self._role is not Role.LEADER or p is None or message.term != self._term:
            return
        p.send_failures += 1
        if isinstance(message, AppendEntries):
            if message.seq in p.inflight:
                p.inflight.remove(message.seq)
            first = message.prev_log_index + 1
            if p.resend_from == 0 or first < p.resend_from:
                p.resend_from = first
        elif isinstance(message, InstallSnapshot):
            snap = p.snap
            if snap is not None and snap.meta.index == message.meta.index:
                p.snap_offset = min(p.snap_offset, message.offset)

    def propose(self, data: bytes, now: float) -> int:
        self._now = now
        if self._role is not Role.LEADER or self._transfer_target is not None:
            self._check_writable()  # raises why (every write comes here: no call otherwise)
        return self._leader_append(EntryType.COMMAND, data)

    def barrier(self, now: float) -> int:
        self._now = now
        self._check_writable()
        return self._leader_append(EntryType.BARRIER, b"")

    def add_voter(self, server_id: str, address: str, now: float) -> int:
        return self._change_config(
            ConfigurationChange(ChangeCommand.ADD_VOTER, server_id, address), now
        )

    def add_nonvoter(self, server_id: str, address: str, now: float) -> int:
        return self._change_config(
            ConfigurationChange(ChangeCommand.ADD_NONVOTER, server_id, address), now
        )

    def remove_server(self, server_id: str, now: float) -> int:
        return self._change_config(ConfigurationChange(ChangeCommand.REMOVE_SERVER, server_id), now)

    def demote_voter(self, server_id: str, now: float) -> int:
        return self._change_config(ConfigurationChange(ChangeCommand.DEMOTE_VOTER, server_id), now)

    def transfer_leadership(self, target_id: str | None, now: float) -> str:
        self._now = now
        self._check_writable()
        latest = self.latest_configuration
        if target_id is None:
            candidates = [s for s in latest.voters() if s.id != self.id]
            if not candidates:
                raise RaftError("cannot find peer")
            # The most up-to-date voter, ties broken by configuration order.
            best = max(
                candidates,
                key=lambda s: self._progress[s.id].match_index if s.id in self._progress else 0,
            )
            target_id = best.id
        elif target_id == self.id or not latest.has_vote(target_id):
            raise RaftError(f"cannot find peer {target_id}")
        self._transfer_target = target_id
        self._transfer_deadline = now + self.cfg.election_timeout
        self._transfer_sent = False
        self._event(
            "transfer",
            {"target": target_id, "outcome": "started"},
            "INFO",
            "starting leadership transfer",
        )
        self._maybe_send_timeout_now(now)
        return target_id

    def verify_leader(self, now: float) -> int:
        self._now = now
        if self._role is not Role.LEADER:
            raise NotLeader(self._leader_id, self._leader_address)
        req = self._verify_next
        self._verify_next += 1
        acks = [self.id] if self.latest_configuration.has_vote(self.id) else []
        # Only answers to heartbeats sent from now on count.
        self._verify_rounds[req] = (self._seq + 1, acks)
        if not self._check_verify(req):
            for pid in self._progress:
                self._send_append(pid, now, heartbeat=True)
        return req

    def should_snapshot(self) -> bool:
        """True when the driver should snapshot its FSM now: the last interval check found at
        least ``snapshot_threshold`` entries applied since the last snapshot (with interval 0,
        whenever that holds)."""
        if not self._snapshot_due:
            return False
        if self._snapshot_threshold_reached():
            return True
        if self.cfg.snapshot_interval > 0:
            self._snapshot_due = False  # e.g. a snapshot installed from the leader since the check
        return False

    def _snapshot_threshold_reached(self) -> bool:
        snap_index = self._snapshot.meta.index if self._snapshot else 0
        return self._applied - snap_index >= self.cfg.snapshot_threshold

    def _next_snapshot_check(self, now: float) -> float:
        interval = self.cfg.snapshot_interval
        if interval <= 0:
            return math.inf
        return now + interval + self._snapshot_rng.random() * interval

    def snapshot_taken(self, index: int, data: bytes) -> None:
        """The driver snapshotted its FSM at ``index`` (<= applied); record it and compact."""
        snap_index = self._snapshot.meta.index if self._snapshot else 0
        if index <= snap_index:
            return
        if index > self._applied:
            raise RaftError(f"snapshot index {index} beyond applied index {self._applied}")
        term = self.term_at(index)
        if term is None:
            raise RaftError(f"no log entry at snapshot index {index}")
        cindex, conf = self._config_at(index)
        snap = Snapshot(SnapshotMeta(index, term, conf, cindex), data)
        self._snapshot = snap
        self._snapshot_due = self.cfg.snapshot_interval <= 0
        self._ready.local_snapshot = snap
        compact = min(index, self.last_index - self.cfg.trailing_logs)
        if compact > self._offset:
            self._compact_through(compact)
        self._event(
            "snapshot",
            {"index": index, "term": term, "compacted_through": self._offset},
            "INFO",
            "snapshot complete up to",
        )

    # ------------------------------------------------------------------ internals: helpers

    def _random_timeout(self, base: float) -> float:
        return base + self.rng.random() * base

    def _node_str(self) -> str:
        return f"Node at {self.address} [{self._role.value}]"

    def _event(self, kind: str, fields: dict[str, Any], level: str, message: str) -> None:
        self._ready.events.append(RaftEvent(kind, fields, level, message))

    def _ignore(self, reason: str, message: Any, src: str, detail: str = "") -> None:
        self.counters["ignored_messages"] += 1
        if reason in self.counters:
            self.counters[reason] += 1
        mtype = type(message).__name__
        if isinstance(message, dict):
            mtype = str(message.get("type"))
        fields = {"reason": reason, "type": mtype, "from": src}
        if detail:
            fields["detail"] = detail
        self._event("ignored_message", fields, "DEBUG", "ignoring message")

    def _address_of(self, server_id: str) -> str:
        configs = self._configs
        if configs:
            # Nearly always a member of the latest configuration: look there first.
            s = configs[-1][1]._by_id.get(server_id)
            if s is not None:
                return s.address
        for _, conf in reversed(configs):
            s = conf._by_id.get(server_id)
            if s is not None:
                return s.address
        if server_id == self._leader_id and self._leader_address:
            return self._leader_address
        return ""

    def _send(self, to_id: str, message: Message) -> None:
        self._ready.messages.append(Outbound(to_id, self._address_of(to_id), message))

    def _committed_config(self) -> tuple[int, Configuration]:
        configs = self._configs
        if configs and configs[-1][0] <= self._commit:
            return configs[-1]  # the usual case: the latest configuration is committed
        for idx, conf in reversed(configs):
            if idx <= self._commit:
                return idx, conf
        return 0, Configuration()

    def _config_at(self, index: int) -> tuple[int, Configuration]:
        for idx, conf in reversed(self._configs):
            if idx <= index:
                return idx, conf
        return 0, Configuration()

    def _set_term(self, term: int, voted_for: str | None) -> None:
        if term != self._term:
            self._event(
                "term_change", {"term": term, "previous": self._term}, "DEBUG", "term changed"
            )
        self._term = term
        self._voted_for = voted_for
        self._ready.hard_state = HardState(term, voted_for)

    def _set_leader(self, leader_id: str | None, leader_address: str | None) -> None:
        self._leader_term = self._term  # the term it leads in: one leader per term
        if leader_id == self._leader_id and leader_address == self._leader_address:
            return
        self._leader_id = leader_id
        self._leader_address = leader_address
        self._event(
            "leader_change",
            {
                "leader_id": leader_id or "",
                "leader_address": leader_address or "",
                "term": self._term,
            },
            "DEBUG",
            "leader changed",
        )

    def _append(self, entries: list[LogEntry]) -> None:
        self._log.extend(entries)
        self._ready.entries.extend(entries)

    def _truncate_from(self, index: int) -> None:
        """Drop entries >= index (a conflicting suffix, never committed ones)."""
        assert index > self._commit, "raft: truncating committed entries"
        del self._log[index - self._offset - 1 :]
        r = self._ready
        r.entries = [e for e in r.entries if e.index < index]
        r.truncate_from = index if r.truncate_from is None else min(r.truncate_from, index)
        while self._configs and self._configs[-1][0] >= index:
            self._configs.pop()

    def _compact_through(self, index: int) -> None:
        term = self.term_at(index)
        del self._log[: index - self._offset]
        self._offset = index
        self._offset_term = term
        r = self._ready
        r.compact_through = index if r.compact_through is None else max(r.compact_through, index)

    def _hand_out_committed(self) -> None:
        if self._commit > self._applied:
            start = self._applied + 1
            batch = self._log[start - self._offset - 1 : self._commit - self._offset]
            self._ready.committed.extend(batch)
            self._applied = self._commit

    def _is_up_to_date(self, last_index: int, last_term: int) -> bool:
        return (last_term, last_index) >= (self.last_term, self.last_index)

    # ------------------------------------------------------------------ roles

    def _become_follower(
        self, now: float, leader_id: str | None, leader_address: str | None
    ) -> None:
        was = self._role
        if was is Role.LEADER:
            self._abort_leader_state()
            # hashicorp's runLeader sets lastContact on step-down: a deposed leader has "heard
            # from a leader" (itself), so it keeps serving ?stale reads as Consul's does.
            self._last_contact = now
        self._role = Role.FOLLOWER
        self._pre_vote = False
        self._votes = {}
        self._timer = now + self._random_timeout(self.cfg.heartbeat_timeout)
        self._set_leader(leader_id, leader_address)
        if was is not Role.FOLLOWER:
            self._event(
                "role_change",
                {
                    "follower": self._node_str(),
                    "leader-address": leader_address or "",
                    "leader-id": leader_id or "",
                },
                "INFO",
                "entering follower state",
            )

    def _abort_leader_state(self) -> None:
        for req in list(self._verify_rounds):
            self._ready.verifications.append((req, False))
        self._verify_rounds.clear()
        self._progress.clear()
        if self._transfer_target is not None:
            self._event(
                "transfer",
                {"target": self._transfer_target, "outcome": "stepped_down"},
                "INFO",
                "leadership transfer ended: stepped down",
            )
        self._transfer_target = None

    def _follower_timeout(self, now: float) -> None:
        latest = self.latest_configuration
        if not latest.has_vote(self.id):
            # hashicorp: non-voters and servers outside the configuration never campaign.
            self._timer = now + self._random_timeout(self.cfg.heartbeat_timeout)
            if self._leader_id is not None:
                self._set_leader(None, None)
            return
        self._event(
            "election_timeout",
            {
                "last-leader-addr": self._leader_address or "",
                "last-leader-id": self._leader_id or "",
            },
            "WARN",
            "heartbeat timeout reached, starting election",
        )
        self._set_leader(None, None)
        self._start_election(now, pre_vote=True)

    def _start_election(self, now: float, pre_vote: bool, transfer: bool = False) -> None:
        if self._term >= MAX_RAFT_NUMBER:
            # Only a forged message can bring the term here (the decoders refuse larger ones);
            # the next term could not be stored, so stay put instead of campaigning.
            self._timer = now + self._random_timeout(self.cfg.election_timeout)
            self._event(
                "election_refused",
                {"term": self._term},
                "ERROR",
                "cannot start an election: the term is at its maximum",
            )
            return
        pre_vote = pre_vote and self.cfg.pre_vote  # a cluster setting: hashicorp 1.1.2 has none
        was = self._role
        self._role = Role.CANDIDATE
        self._pre_vote = pre_vote
        self._transfer_election = transfer
        self._votes = {}
        self._timer = now + self._random_timeout(self.cfg.election_timeout)
        self.counters["elections"] += 1
        if not pre_vote:
            self._set_term(self._term + 1, self.id)
        # hashicorp's runCandidate logs this once per round: a pre-vote (or a transfer's vote)
        # starts one; the vote that follows a successful pre-vote belongs to the same round.
        if was is not Role.CANDIDATE or pre_vote:
            self._event(
                "role_change",
                {"node": self._node_str(), "term": self._term + (1 if pre_vote else 0)},
                "INFO",
                "entering candidate state",
            )
        self._votes[self.id] = True
        term = self._term + 1 if pre_vote else self._term
        rv = RequestVote(term, self.id, self.last_index, self.last_term, pre_vote, transfer)
        for s in self.latest_configuration.voters():
            if s.id != self.id:
                self._send(s.id, rv)
        self._check_votes(now)

    def _check_votes(self, now: float) -> None:
        conf = self.latest_configuration
        tally = sum(1 for sid, ok in self._votes.items() if ok and conf.has_vote(sid))
        if tally < conf.quorum_size():
            return
        if self._pre_vote:
            refused = sum(1 for sid, ok in self._votes.items() if not ok and conf.has_vote(sid))
            self._event(
                "pre_vote",
                {
                    "term": self._term + 1,
                    "tally": tally,
                    "refused": refused,
                    "votesNeeded": conf.quorum_size(),
                },
                "INFO",
                "pre-vote successful, starting election",
            )
            self._start_election(now, pre_vote=False)
        else:
            self._event(
                "election_won", {"term": self._term, "tally": tally}, "INFO", "election won"
            )
            self._become_leader(now)

    def _become_leader(self, now: float) -> None:
        self._role = Role.LEADER
        self._votes = {}
        self._last_contact = None
        self._set_leader(self.id, self.address)
        self._event("role_change", {"leader": self._node_str()}, "INFO", "entering leader state")
        self._assembly = None
        self._entry_cost = ENTRY_OVERHEAD + max(map(len, map(_ENTRY_DATA, self._log)), default=0)
        self._progress = {}
        for s in self.latest_configuration.servers:
            if s.id != self.id:
                self._progress[s.id] = _Progress(self.last_index + 1, now)
        self._lease_check_at = now + self.cfg.leader_lease_timeout
        self._append([LogEntry(self.last_index + 1, self._term, EntryType.NOOP)])
        self._replicate_all(force=True, now=now)
        self._maybe_commit(now)

    # ------------------------------------------------------------------ leader

    def _check_writable(self) -> None:
        if self._role is not Role.LEADER:
            raise NotLeader(self._leader_id, self._leader_address)
        if self._transfer_target is not None:
            raise RaftError("leadership transfer in progress")

    def _leader_append(self, etype: EntryType, data: bytes) -> int:
        cost = len(data) + ENTRY_OVERHEAD
        if cost > self._entry_cost:
            self._entry_cost = cost
        index = self._offset + len(self._log) + 1
        entry = new_log_entry((index, self._term, etype, data))
        self._log.append(entry)
        self._ready.entries.append(entry)
        # A single-voter cluster commits on its own; with more voters the leader's own append
        # cannot complete a quorum (the followers' answers do, in _on_append_response).
        conf = self._configs[-1][1] if self._configs else _NO_CONFIGURATION
        if conf._quorum <= 1:
            self._maybe_commit(None)
        return index

    def _change_config(self, change: ConfigurationChange, now: float) -> int:
        self._now = now
        self._check_writable()
        cindex = self.configuration_index
        lindex = self.latest_configuration_index
        if cindex != lindex:
            # One uncommitted configuration at a time (hashicorp queues; consim refuses).
            raise RaftError(f"configuration changed since {cindex} (latest is {lindex})")
        try:
            new_conf = next_configuration(self.latest_configuration, lindex, change)
        except ConfigurationError as exc:
            raise RaftError(str(exc)) from None
        index = self.last_index + 1
        data = encode_configuration(new_conf)
        self._entry_cost = max(self._entry_cost, len(data) + ENTRY_OVERHEAD)
        self._append([LogEntry(index, self._term, EntryType.CONFIGURATION, data)])
        self._configs.append((index, new_conf))
        self._event(
            "config_change",
            {
                "command": change.command.value,
                "server_id": change.server_id,
                "server_address": change.address,
                "servers": new_conf.to_wire(),
                "index": index,
            },
            "INFO",
            "updating configuration",
        )
        # Start or stop replication right away (the change takes effect when appended).
        for s in new_conf.servers:
            if s.id != self.id and s.id not in self._progress:
                self._progress[s.id] = _Progress(self.last_index, now)
        for pid in list(self._progress):
            if new_conf.get(pid) is None:
                del self._progress[pid]
        self._maybe_commit(now)
        return index

    def _tick_leader(self, now: float) -> None:
        if now >= self._lease_check_at:
            if _testing_faults.skip_leader_lease:  # test-only: never step down for lack of quorum
                self._lease_check_at = now + self.cfg.leader_lease_timeout
            elif self._check_lease(now):
                return
        if self._transfer_target is not None and now >= self._transfer_deadline:
            self._event(
                "transfer",
                {"target": self._transfer_target, "outcome": "timeout"},
                "WARN",
                "leadership transfer timed out",
            )
            self._transfer_target = None
        hb = self.cfg.heartbeat_interval
        for pid, p in self._progress.items():
            if now >= p.last_sent + hb:
                # Even if nothing can be sent (snapshot rate limit), wait a full interval.
                p.last_sent = now
                if p.resend_from:
                    # What the driver could not send goes again (once per heartbeat).
                    p.next_index = max(p.match_index + 1, min(p.next_index, p.resend_from))
                    p.resend_from = 0
                self._send_append(pid, now, heartbeat=True)

    def _check_lease(self, now: float) -> bool:
        """Step down without a quorum of voters heard within LeaderLeaseTimeout. True if stepped down."""
        conf = self.latest_configuration
        lease = self.cfg.leader_lease_timeout
        contacted = 0
        oldest: float | None = None
        for s in conf.voters():
            if s.id == self.id:
                contacted += 1
                continue
            p = self._progress.get(s.id)
            if p is None:
                continue
            if now - p.last_contact <= lease:
                contacted += 1
                oldest = p.last_contact if oldest is None else min(oldest, p.last_contact)
        if contacted < conf.quorum_size():
            self._event(
                "leader_lost",
                {"term": self._term},
                "WARN",
                "failed to contact quorum of nodes, stepping down",
            )
            self._become_follower(now, None, None)
            return True
        # hashicorp re-checks when the oldest contact in the quorum would expire.
        self._lease_check_at = now + lease if oldest is None else max(now + 1e-3, oldest + lease)
        self._lease_check_at = min(self._lease_check_at, now + lease)
        return False

    def _replicate_all(self, force: bool, now: float | None = None) -> None:
        last = self._offset + len(self._log)  # sending never changes the log
        for pid, p in self._progress.items():
            if force or p.next_index <= last:
                self._send_append(pid, now, force)

    def _send_append(self, pid: str, now: float | None, heartbeat: bool) -> None:
        p = self._progress[pid]
        cap = self.cfg.max_append_entries
        max_inflight = self.cfg.max_inflight
        inflight = p.inflight
        # Sending never changes the log, so these stay valid through the loop.
        log = self._log
        offset = self._offset
        # Pipelining: keep up to max_inflight AppendEntries messages in flight per follower, then
        # wait for an answer (or the heartbeat). Entries proposed meanwhile pile up and leave
        # together in the next message (group commit, as hashicorp's pipeline does): the busier
        # the leader, the bigger the batches, the fewer the messages.
        while True:
            prev = p.next_index - 1
            prev_term = self.term_at(prev)
            if prev < offset or prev_term is None:
                self._send_snapshot(pid, p, now, heartbeat)
                return
            if not heartbeat and len(inflight) >= max_inflight:
                return
            start = prev - offset
            batch = tuple(log[start : start + cap])
            if not batch and not heartbeat:
                return
            if len(batch) * self._entry_cost > self.cfg.max_append_bytes:
                batch = _within_budget(batch, self.cfg.max_append_bytes)
            self._seq = seq = self._seq + 1
            self._send(
                pid,
                AppendEntries(
                    self._term,
                    self.id,
                    self.address,
                    prev,
                    prev_term,
                    batch,
                    self._commit,
                    seq,
                ),
            )
            if now is not None:
                p.last_sent = now
            inflight.append(seq)
            if len(inflight) > max_inflight:
                # Only heartbeats exceed the cap; past it, count the oldest as lost (a silent
                # follower must not grow this without bound).
                inflight.popleft()
            p.next_index = prev + len(batch) + 1
            heartbeat = False
            if p.next_index > offset + len(log):
                return

    def _send_snapshot(self, pid: str, p: _Progress, now: float | None, heartbeat: bool) -> None:
        t = self._now if now is None else now
        if p.snap is None:
            snap = self._snapshot
            if snap is None:
                return
            p.snap = snap
            p.snap_offset = 0
            p.snap_started_at = p.snap_progress_at = t
            p.snapshot_sent_at = None
            self._event(
                "snapshot_transfer",
                {"peer": pid, "index": snap.meta.index, "size": len(snap.data)},
                "INFO",
                "starting snapshot transfer",
            )
        elif p.snapshot_sent_at is not None:
            waited = t - p.snapshot_sent_at
            if waited < self.cfg.heartbeat_timeout:
                # One chunk in flight; its answer sends the next. Unanswered for a heartbeat
                # timeout (lost), it goes again from the last ack. Meanwhile heartbeats go as
                # probes: they keep the follower from campaigning, and the answer to one sent
                # after the chunk, arriving first on the FIFO link, shows the chunk was lost
                # (the follower was down or restarted) without waiting for the timeout.
                if heartbeat and waited >= self.cfg.heartbeat_interval:
                    self._send_probe(pid, p, t)
                return
        if p.snap_offset == 0 and self._snapshot is not None and p.snap is not self._snapshot:
            # Nothing of it acknowledged yet: send the newest snapshot instead.
            p.snap = snap = self._snapshot
            p.snap_started_at = p.snap_progress_at = t
            self._event(
                "snapshot_transfer",
                {"peer": pid, "index": snap.meta.index, "size": len(snap.data)},
                "INFO",
                "starting snapshot transfer",
            )
        self._send_chunk(pid, p, t)

    def _send_probe(self, pid: str, p: _Progress, now: float) -> None:
        snap = p.snap
        assert snap is not None
        seq = self._send_heartbeat_at(pid, p, now, snap.meta.index, snap.meta.term)
        if not p.snap_probe_seq:
            p.snap_probe_seq = seq

    def _send_heartbeat_at(
        self, pid: str, p: _Progress, now: float, prev: int, prev_term: int
    ) -> int:
        """An AppendEntries without entries at ``prev``; returns its seq. Not counted in flight:
        it carries no entries, so it must not hold back the pipeline."""
        self._seq = seq = self._seq + 1
        p.last_sent = now
        self._send(
            pid,
            AppendEntries(
                self._term, self.id, self.address, prev, prev_term, (), self._commit, seq
            ),
        )
        return seq

    def _send_chunk(self, pid: str, p: _Progress, now: float) -> None:
        snap = p.snap
        assert snap is not None
        data = snap.data
        size = len(data)
        offset = p.snap_offset
        end = min(size, offset + max(1, self.cfg.snapshot_chunk_size))
        p.snapshot_sent_at = now
        p.snap_probe_seq = 0
        p.last_sent = now
        self._send(
            pid,
            InstallSnapshot(
                self._term,
                self.id,
                self.address,
                snap.meta,
                data[offset:end],
                offset,
                size,
                end == size,
            ),
        )

    def _maybe_commit(self, now: float | None) -> None:
        if self._role is not Role.LEADER:
            return
        conf = self._configs[-1][1] if self._configs else _NO_CONFIGURATION
        voter_ids = conf._voter_ids
        if not voter_ids:
            return
        me = self.id
        last = self._offset + len(self._log)
        progress = self._progress
        matches = [
            last if sid == me else (0 if (p := progress.get(sid)) is None else p.match_index)
            for sid in voter_ids
        ]
        matches.sort(reverse=True)
        candidate = matches[conf._quorum - 1]
        # Only entries of the current term commit by counting (Raft §5.4.2).
        if candidate > self._commit and self.term_at(candidate) == self._term:
            self._advance_commit(candidate)

    def _advance_commit(self, index: int) -> None:
        self._commit = index
        conf = self._committed_config()[1]
        if self._role is Role.LEADER and conf.servers and conf.get(self.id) is None:
            # hashicorp: a leader removed by a committed change steps down.
            self._event("removed", {}, "INFO", "removed ourself, transitioning to follower")
            self._become_follower(self._now, None, None)

    def _maybe_send_timeout_now(self, now: float) -> None:
        target = self._transfer_target
        if target is None or self._transfer_sent:
            return
        p = self._progress.get(target)
        if p is None:
            return
        if p.match_index >= self.last_index:
            self._send(target, TimeoutNow(self._term, self.id))
            self._transfer_sent = True
        else:
            self._send_append(target, now, heartbeat=False)

    def _check_verify(self, req: int) -> bool:
        seq_start, acks = self._verify_rounds[req]
        conf = self.latest_configuration
        if sum(1 for a in acks if conf.has_vote(a)) >= conf.quorum_size():
            del self._verify_rounds[req]
            self._ready.verifications.append((req, True))
            return True
        return False

    # ------------------------------------------------------------------ message handling

    def _step(self, src: str, msg: Message, now: float) -> None:
        if src == self.id:
            self._ignore("unknown_sender", msg, src, "message from self")
            return
        configs = self._configs
        if configs and src not in configs[-1][1]._by_id and configs[-1][1].servers:
            # A sender outside our configuration. Only a leader's messages are followed anyway
            # (hashicorp/raft does not check the sender of AppendEntries: a lagging follower may
            # not know its new leader yet); every other kind is ignored, as RequestVote always
            # was, so a stranger cannot move our term or start an election here.
            self._warn_stranger(src, msg, now)
            if not isinstance(msg, AppendEntries | InstallSnapshot):
                self._ignore("unknown_sender", msg, src, "sender not in configuration")
                return
        if isinstance(msg, AppendEntries):
            self._on_append(src, msg, now)
        elif isinstance(msg, AppendEntriesResponse):
            self._on_append_response(src, msg, now)
        elif isinstance(msg, RequestVote):
            self._on_request_vote(src, msg, now)
        elif isinstance(msg, RequestVoteResponse):
            self._on_vote_response(src, msg, now)
        elif isinstance(msg, InstallSnapshot):
            self._on_install_snapshot(src, msg, now)
        elif isinstance(msg, InstallSnapshotResponse):
            self._on_install_snapshot_response(src, msg, now)
        elif isinstance(msg, TimeoutNow):
            self._on_timeout_now(src, msg, now)
        elif isinstance(msg, TimeoutNowResponse):
            if msg.term > self._term:
                self._set_term(msg.term, None)
                self._become_follower(now, None, None)
        else:
            self._ignore("malformed", msg, src, "not a raft message")

    def _warn_stranger(self, src: str, msg: Message, now: float) -> None:
        """WARN (once per sender per STRANGER_WARN_INTERVAL) about Raft traffic from a server in
        no configuration we hold: after a peers.json recovery, that is typically a server left
        out of peers.json that came back with its old data and still believes in the old
        configuration (two clusters, possibly two leaders)."""
        last = self._stranger_warned.get(src)
        if last is not None and now - last < STRANGER_WARN_INTERVAL:
            return
        if len(self._stranger_warned) >= 1024:  # forged ids must not grow it without bound
            self._stranger_warned.clear()
        self._stranger_warned[src] = now
        leader = isinstance(msg, AppendEntries | InstallSnapshot)
        fields: dict[str, Any] = {"from": src, "type": type(msg).__name__, "term": msg.term}
        if leader:
            fields["leader-address"] = msg.leader_address  # type: ignore[union-attr]
            message = f"{type(msg).__name__} from a leader that is not in configuration"
        elif isinstance(msg, RequestVote):
            message = "rejecting vote request since node is not in configuration"
        else:
            message = "ignoring a message from a server that is not in configuration"
        self._event("peer_not_in_configuration", fields, "WARN", message)

    def _observe_term(self, term: int, now: float) -> None:
        if term > self._term:
            self._set_term(term, None)
            self._become_follower(now, None, None)

    def _accept_leader(
        self,
        src: str,
        m: AppendEntries | InstallSnapshot,
        now: float,
        refusal: Callable[[], Message],
    ) -> bool:
        """Shared term check for messages only a leader sends: refuse a stale term, follow a newer
        one, and record ``src`` as the leader heard from now."""
        if m.term < self._term:
            self.counters["stale_term"] += 1
            self._send(src, refusal())
            return False
        if m.term > self._term:
            self._set_term(m.term, None)
            if self._role is not Role.FOLLOWER:
                self._become_follower(now, src, m.leader_address)
        if self._role is Role.LEADER:
            # Two leaders in one term cannot happen; refuse rather than corrupt state.
            self._ignore("duplicate_leader", m, src, "second leader in term")
            return False
        if self._role is not Role.FOLLOWER:
            self._become_follower(now, src, m.leader_address)
        elif (
            src != self._leader_id
            and m.leader_address != self._leader_address  # the same leader, newly named by id
            and self._leader_term == m.term
            and self._leader_id is not None
        ):
            # A second leader in the term this follower already follows: only a manual recovery
            # (peers.json on both sides of a split) makes one. Following it could overwrite
            # committed entries, so it is refused and counted, as a leader refuses it.
            self._ignore("duplicate_leader", m, src, "second leader in term")
            return False
        if src != self._leader_id or m.leader_address != self._leader_address:
            self._set_leader(src, m.leader_address)
        self._last_contact = now
        return True

    def _on_append(self, src: str, m: AppendEntries, now: float) -> None:
        if m.leader_id != src:
            self._ignore("malformed", m, src, "leader_id differs from sender")
            return
        entries = m.entries
        expected = m.prev_log_index + 1
        term = m.term
        for e in entries:  # a follower's every entry: no attribute of m looked up per entry
            if e.index != expected or e.term > term:
                self._ignore("malformed", m, src, "bad entries")
                return
            expected += 1
        if not self._accept_leader(
            src, m, now, lambda: AppendEntriesResponse(self._term, False, self.last_index, 0, m.seq)
        ):
            return

        prev = m.prev_log_index
        offset = self._offset
        last = offset + len(self._log)
        if prev > last:
            self._send(src, AppendEntriesResponse(self._term, False, last, last + 1, m.seq))
            return
        if prev >= offset:
            local = self.term_at(prev)
            if local is not None and local != m.prev_log_term:
                # Fast back-off: skip the whole conflicting term.
                first = prev
                while first - 1 > offset and self.term_at(first - 1) == local:
                    first -= 1
                first = max(first, self._commit + 1)
                self._send(src, AppendEntriesResponse(self._term, False, last, first, m.seq))
                return
        self._store_leader_entries(entries)
        last_new = prev + len(entries)
        if prev < self._offset:
            # Our snapshot covers the gap; it holds only committed entries, which every leader has.
            last_new = max(last_new, self._offset)
        if m.leader_commit > self._commit:
            target = min(m.leader_commit, last_new)
            if target > self._commit:
                self._commit = target
        self._send(src, AppendEntriesResponse(self._term, True, last_new, 0, m.seq))

    def _store_leader_entries(self, entries: tuple[LogEntry, ...]) -> None:
        """Append the leader's (contiguous) entries we lack, first truncating a conflicting
        suffix; entries we hold already, or that our snapshot covers, are skipped."""
        if type(entries) is tuple and entries and entries[0].index > self._offset + len(self._log):
            # The usual case: all of them continue our log. (A message holds a tuple; anything
            # else a driver hands in takes the general loop and fails there as it always did.)
            new = list(entries)
        else:
            new = []
            for e in entries:
                if e.index <= self._offset:
                    continue  # covered by our snapshot: committed, hence identical
                if e.index <= self.last_index:
                    if self.term_at(e.index) == e.term:
                        continue
                    self._truncate_from(e.index)
                new.append(e)
            if not new:
                return
        self._append(new)
        for e in new:
            if e.type is _CONFIGURATION:
                try:
                    self._configs.append((e.index, decode_configuration(e.data)))
                except MalformedMessage:
                    self.counters["malformed"] += 1

    def _answering_follower(
        self, src: str, m: AppendEntriesResponse | InstallSnapshotResponse, now: float
    ) -> _Progress | None:
        """Shared checks for a follower's answer: a newer term deposes us; a stale one or an
        unknown sender is ignored; otherwise the follower was heard from now."""
        if m.term > self._term:
            self._observe_term(m.term, now)
            return None
        if self._role is not Role.LEADER or m.term < self._term:
            self._ignore("stale_term", m, src)
            return None
        p = self._progress.get(src)
        if p is None:
            self._ignore("unknown_sender", m, src)
            return None
        p.last_contact = now
        return p

    def _on_append_response(self, src: str, m: AppendEntriesResponse, now: float) -> None:
        p = self._answering_follower(src, m, now)
        if p is None:
            return
        inflight = p.inflight
        while inflight and inflight[0] <= m.seq:
            inflight.popleft()
        if self._verify_rounds:
            for req in sorted(self._verify_rounds):
                seq_start, acks = self._verify_rounds[req]
                if m.seq >= seq_start and src not in acks:
                    acks.append(src)
                    self._check_verify(req)
        if p.snap_probe_seq and m.seq >= p.snap_probe_seq and p.snapshot_sent_at is not None:
            # Answered a heartbeat sent after the chunk, and not the chunk: it was lost.
            p.snap_probe_seq = 0
            p.snapshot_sent_at = None
        if m.success:
            p.last_success = now
            if m.last_log_index > p.match_index:
                p.match_index = min(m.last_log_index, self._offset + len(self._log))
                p.match_sent_seq = self._seq
                self._maybe_commit(now)
            if p.match_index + 1 > p.next_index:
                p.next_index = p.match_index + 1
            if p.snap is not None and p.next_index > self._offset:
                p.snap = None  # the log reaches it again: no snapshot needed
                p.snapshot_sent_at = None
        else:
            if m.last_log_index < p.match_index and m.seq > p.match_sent_seq:
                # The follower no longer holds entries it acknowledged (restarted with a wiped
                # data dir): its match index is no longer true, and back-off must be allowed
                # below it, or next_index stays where the old log ended and it never catches up.
                p.match_index = m.last_log_index
                self._event(
                    "follower_log_lost",
                    {"peer": src, "last_index": m.last_log_index},
                    "WARN",
                    "follower lost acknowledged log entries, replicating again",
                )
            hint = m.conflict_index if m.conflict_index > 0 else m.last_log_index + 1
            hint = min(hint, m.last_log_index + 1)
            new_next = max(p.match_index + 1, min(p.next_index, hint))
            if new_next < p.next_index:
                p.next_index = new_next
                self._send_append(src, now, heartbeat=True)
        if self._role is Role.LEADER:
            if self._transfer_target is not None:
                self._maybe_send_timeout_now(now)
            if p.next_index <= self._offset + len(self._log):
                self._send_append(src, now, False)

    def _on_request_vote(self, src: str, m: RequestVote, now: float) -> None:
        def reply(granted: bool) -> None:
            self._send(src, RequestVoteResponse(self._term, granted, m.pre_vote))

        if m.candidate_id != src:
            self._ignore("malformed", m, src, "candidate_id differs from sender")
            return
        if _testing_faults.grant_every_vote:  # test-only: breaks election safety on purpose
            if m.term > self._term:
                self._set_term(m.term, src)
                if self._role is not Role.FOLLOWER:
                    self._become_follower(now, None, None)
            reply(True)
            return
        latest = self.latest_configuration
        if latest.servers and latest.get(src) is None:
            self._ignore("unknown_sender", m, src, "candidate not in configuration")
            return
        if latest.servers and not latest.has_vote(src):
            reply(False)  # hashicorp: "rejecting vote request since node is not a voter"
            return
        # Leader stickiness (hashicorp 1.7): keep a live leader unless this is a transfer.
        has_leader = self._role is Role.LEADER or (
            self._leader_id is not None
            and self._leader_id != src
            and self._last_contact is not None
            and now - self._last_contact < self.cfg.heartbeat_timeout
        )
        if has_leader and not m.leadership_transfer:
            reply(False)
            return
        if m.term < self._term:
            self.counters["stale_term"] += 1
            reply(False)
            return
        if m.pre_vote:
            # No state change for a pre-vote; only say whether a real vote would be granted.
            reply(self._is_up_to_date(m.last_log_index, m.last_log_term))
            return
        if m.term > self._term:
            self._set_term(m.term, None)
            if self._role is not Role.FOLLOWER:
                self._become_follower(now, None, None)
        if self._voted_for not in (None, src):
            reply(False)
            return
        if not self._is_up_to_date(m.last_log_index, m.last_log_term):
            reply(False)
            return
        self._set_term(self._term, src)
        self._timer = now + self._random_timeout(self.cfg.heartbeat_timeout)
        reply(True)

    def _on_vote_response(self, src: str, m: RequestVoteResponse, now: float) -> None:
        if m.term > self._term and not m.granted:
            self._observe_term(m.term, now)
            return
        if self._role is not Role.CANDIDATE or m.pre_vote != self._pre_vote:
            self._ignore("stale_term", m, src)
            return
        expected = self._term + 1 if self._pre_vote else self._term
        if m.term not in (self._term, expected) or (not self._pre_vote and m.term != self._term):
            self._ignore("stale_term", m, src)
            return
        if not self.latest_configuration.has_vote(src):
            self._ignore("unknown_sender", m, src)
            return
        self._votes[src] = m.granted
        if m.granted:
            self._check_votes(now)

    def _on_install_snapshot(self, src: str, m: InstallSnapshot, now: float) -> None:
        if m.leader_id != src:
            self._ignore("malformed", m, src, "leader_id differs from sender")
            return
        if not self._accept_leader(
            src, m, now, lambda: InstallSnapshotResponse(self._term, False, 0, 0, True)
        ):
            return
        meta = m.meta
        if meta.index <= self._commit:
            # Nothing new for us; report where we are.
            self._assembly = None
            self._send(src, InstallSnapshotResponse(self._term, True, self._commit, 0, True))
            return
        a = self._assembly
        if m.offset == 0:
            if a is None or not a.matches(self._term, src, meta, m.size):
                a = self._assembly = _SnapshotAssembly(self._term, src, meta, m.size)
        elif a is None or not a.matches(self._term, src, meta, m.size) or m.offset > len(a.buf):
            # Not the transfer we are assembling (we restarted, or a chunk was lost): say where
            # to go on from; 0 means start over.
            have = len(a.buf) if a is not None and a.matches(self._term, src, meta, m.size) else 0
            self._send(src, InstallSnapshotResponse(self._term, False, meta.index, have, False))
            return
        buf = a.buf
        # A chunk sent again (its answer was lost) replaces what we hold from its offset on.
        del buf[m.offset :]
        buf += m.data
        if not m.done:
            self._send(src, InstallSnapshotResponse(self._term, True, meta.index, len(buf), False))
            return
        self._assembly = None
        snap = Snapshot(meta, bytes(buf))
        r = self._ready
        r.local_snapshot = None
        if self.term_at(meta.index) == meta.term and meta.index <= self.last_index:
            # We hold the snapshot's last entry: keep the suffix (entries we may have acked).
            self._compact_through(meta.index)
            self._configs = [(meta.configuration_index, meta.configuration)] + [
                c for c in self._configs if c[0] > meta.index
            ]
        else:
            # Replace the whole log: nothing in it can be part of the leader's log past here.
            if self._log:
                first = self._offset + 1
                r.truncate_from = first if r.truncate_from is None else min(r.truncate_from, first)
            r.entries = []
            self._log = []
            self._offset = meta.index
            self._offset_term = meta.term
            self._configs = [(meta.configuration_index, meta.configuration)]
        self._snapshot = snap
        self._commit = meta.index
        self._applied = meta.index
        r.snapshot = snap
        self._event(
            "install_snapshot",
            {"index": meta.index, "term": meta.term, "leader": src},
            "INFO",
            "Installed remote snapshot",
        )
        self._send(src, InstallSnapshotResponse(self._term, True, meta.index, len(snap.data), True))

    def _on_install_snapshot_response(
        self, src: str, m: InstallSnapshotResponse, now: float
    ) -> None:
        p = self._answering_follower(src, m, now)
        if p is None:
            return
        snap = p.snap
        if m.done:
            # Installed (or not needed): replicate from after it.
            p.snapshot_sent_at = None
            p.snap = None
            if m.success:
                p.last_success = now
                p.match_index = max(p.match_index, min(m.last_index, self.last_index))
                p.next_index = max(p.match_index + 1, m.last_index + 1)
                self._maybe_commit(now)
                if snap is not None:
                    self._event(
                        "snapshot_transfer",
                        {"peer": src, "index": snap.meta.index, "size": len(snap.data)},
                        "INFO",
                        "snapshot transfer complete",
                    )
            self._send_append(src, now, heartbeat=True)
            return
        if snap is None or m.last_index != snap.meta.index or m.offset > len(snap.data):
            if snap is None:
                self._ignore("stale_term", m, src, "no snapshot transfer to this follower")
                return
            m_offset = 0  # the follower assembles something else: start ours over
        else:
            m_offset = m.offset
        if m.success and p.snapshot_sent_at is not None and m_offset <= p.snap_offset:
            return  # a duplicate or stale ack: the chunk in flight is not answered yet
        p.snapshot_sent_at = None
        if m.success:
            p.snap_offset = m_offset
            p.snap_progress_at = now
        else:
            p.snap_offset = m_offset
            if m_offset == 0 and self._snapshot is not None and self._snapshot is not snap:
                # Starting over anyway: send the newest snapshot instead.
                p.snap = snap = self._snapshot
                p.snap_started_at = p.snap_progress_at = now
                self._event(
                    "snapshot_transfer",
                    {"peer": src, "index": snap.meta.index, "size": len(snap.data)},
                    "INFO",
                    "starting snapshot transfer",
                )
        self._send_chunk(src, p, now)

    def _on_timeout_now(self, src: str, m: TimeoutNow, now: float) -> None:
        if m.term < self._term:
            self.counters["stale_term"] += 1
            self._send(src, TimeoutNowResponse(self._term, False))
            return
        if m.term > self._term:
            self._set_term(m.term, None)
        if not self.latest_configuration.has_vote(self.id):
            self._send(src, TimeoutNowResponse(self._term, False))
            return
        self._send(src, TimeoutNowResponse(self._term, True))
        self._set_leader(None, None)
        # Skip pre-vote: the leader asked us to take over now.
        self._start_election(now, pre_vote=False, transfer=True)


STRANGER_WARN_INTERVAL = 10.0  # seconds between two warnings about the same sender


def _within_budget(batch: tuple[LogEntry, ...], budget: int) -> tuple[LogEntry, ...]:
    """The longest prefix of ``batch`` within ``budget`` bytes; never empty (an entry larger
    than the budget travels alone)."""
    if sum(map(len, map(_ENTRY_DATA, batch))) + ENTRY_OVERHEAD * len(batch) <= budget:
        return batch
    total = 0
    for n, e in enumerate(batch):
        total += len(e.data) + ENTRY_OVERHEAD
        if total > budget:
            return batch[: max(n, 1)]
    return batch


def conf_has(conf: Configuration, server_id: str) -> bool:
    return conf.get(server_id) is not None
