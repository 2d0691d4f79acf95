"""GossipCore: one member of one pool (LAN or WAN), as a sans-IO state machine.

SWIM membership after hashicorp/memberlist (probe, indirect probe with nacks, suspicion, refute,
piggybacked broadcasts, periodic gossip, push-pull sync over a stream), serf on top (member
statuses and intents, Lamport clocks, user events, queries with relay, the keyring queries),
speaking memberlist 0.2.2's and serf 0.9.4's wire format (``wire.py``). See
``consim/gossip/__init__.py`` for the driver contract.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consim.address import AddressError, parse_address, valid_address
from consim.gossip import wire
from consim.gossip.config import GossipConfig
from consim.gossip.keyring import (
    ERR_EMPTY_KEYRING,
    ERR_NO_KEYRING,
    MIN_SEALED_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    Keyring,
    KeyringError,
    b64,
    fingerprint,
    go_base64_decode,
)
from consim.gossip.types import (
    STATUS_ALIVE,
    STATUS_FAILED,
    STATUS_LEAVING,
    STATUS_LEFT,
    GossipError,
    GossipEvent,
    GossipReady,
    KeyringResponse,
    Member,
    QueryResponse,
)

# memberlist node states
ALIVE, SUSPECT, DEAD, LEFT = "alive", "suspect", "dead", "left"
_STATE_CODES = {ALIVE: 0, SUSPECT: 1, DEAD: 2, LEFT: 3}
_CODE_STATES = {v: k for k, v in _STATE_CODES.items()}
# serf's member status for another member's memberlist state (suspects still report alive).
_MEMBER_STATUS = {
    ALIVE: STATUS_ALIVE,
    SUSPECT: STATUS_ALIVE,
    DEAD: STATUS_FAILED,
    LEFT: STATUS_LEFT,
}

KEYRING_QUERIES = {
    "install": "_serf_install-key",
    "use": "_serf_use-key",
    "remove": "_serf_remove-key",
    "list": "_serf_list-keys",
}
_QUERY_OPS = {v: k for k, v in KEYRING_QUERIES.items()}
_KEY_EVENT = {"install": "key_installed", "use": "key_used", "remove": "key_removed"}
# serf's log wording per operation.
_QUERY_LOG = {
    "install": ("Received install-key query", "Failed to install key"),
    "use": ("Received use-key query", "Failed to change primary key"),
    "remove": ("Received remove-key query", "Failed to remove key"),
    "list": ("Received list-keys query", "Failed to list keys"),
}
PING_QUERY = "_serf_ping"
# Push-pull join attempts after the first, one per probe interval, before giving up.
JOIN_RETRIES = 5

_COUNTERS = (
    "packets_in",
    "packets_out",
    "dropped_decrypt",
    "dropped_plaintext",
    "dropped_encrypted",
    "dropped_malformed",
    "streams_in",
    "streams_out",
    "fallback_pings_out",
    "responses_relayed",
    "push_pull_refused",
    "user_events",
)
# serf: QueryResponseSizeLimit's default, and the shortest base64 key (AES-128) plus msgpack framing.
QUERY_RESPONSE_SIZE_LIMIT = 1024
MIN_ENCODED_KEY_LENGTH = 25
ERR_STREAM_ENCRYPTED = "Remote state is encrypted and encryption is not configured"
ERR_STREAM_PLAINTEXT = "Encryption is configured but remote state is not encrypted"
# memberlist: UDP packet budget minus encryption overhead (version + nonce + tag), and the
# compound header (type + count) plus 2 bytes of length per part.
ENCRYPT_OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE
COMPOUND_HEADER = 2
COMPOUND_PART = 2


class _Malformed(ValueError):
    pass


@dataclass(slots=True)
class _Node:
    name: str
    address: str
    tags: dict[str, str]
    incarnation: int
    state: str
    state_change: float
    meta: bytes = b""
    vsn: tuple[int, ...] | list[int] | None = wire.VSN  # seeded members speak what consim speaks
    # serf: the Lamport time of the last intent about this member, and its leave intent.
    status_ltime: int = 0
    leaving: bool = False


@dataclass(slots=True)
class _Broadcast:
    msg: bytes
    size: int
    order: int
    transmits: int = 0


@dataclass
class _PendingQuery:
    op: str | None  # keyring op, or None for a generic query
    deadline: float
    result: KeyringResponse | QueryResponse
    ltime: int = 0
    responders: set[str] = field(default_factory=set)


class _Lamport:
    """serf's LamportClock: Time, Increment, Witness (v >= counter -> counter = v + 1)."""

    __slots__ = ("counter",)

    def __init__(self) -> None:
        self.counter = 0

    def time(self) -> int:
        return self.counter

    def increment(self) -> int:
        self.counter += 1
        return self.counter

    def witness(self, value: int) -> None:
        if value >= self.counter:
            self.counter = value + 1

    def first_sighting(
        self, ltime: int, key: Any, ring: dict[int, tuple[int, set[Any]]], size: int
    ) -> bool:
        """serf's recent-message buffers (handleUserEvent, handleQuery): witness ``ltime``; False
        when it is older than the ``size`` slots kept or ``key`` was seen at that LTime already
        (the message is dropped), else remember ``key`` in slot ``ltime % size``."""
        self.witness(ltime)
        if self.counter > size and ltime < self.counter - size:
            return False
        slot = ltime % size
        seen = ring.get(slot)
        if seen is not None and seen[0] == ltime:
            if key in seen[1]:
                return False
            seen[1].add(key)
        else:
            ring[slot] = (ltime, {key})
        return True


class GossipCore:
    """One member of one gossip pool. Feed it ``tick``/``receive``; drain ``ready()``."""

    def __init__(
        self,
        name: str,
        address: str,
        *,
        tags: dict[str, str] | None = None,
        config: GossipConfig | None = None,
        rng: random.Random,
        now: float,
        keyring: Keyring | None = None,
    ) -> None:
        self.name = name
        self.address = address
        self.config = config or GossipConfig.lan()
        self.keyring = keyring
        self._rng = rng
        self.counters: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self._incarnation = 1
        self._tags = dict(tags or {})
        self._status = STATUS_ALIVE
        self._nodes: dict[str, _Node] = {}
        # Sorted names: deterministic random picks by index, whatever the hash seed.
        self._names: list[str] = []
        self._suspicions: dict[str, float] = {}
        # Lifeguard suspicion per member: (start, k, min, max, accusers seen).
        self._suspicion_info: dict[str, tuple[float, int, float, float, set[str]]] = {}
        # Lifeguard local health (memberlist awareness): 0 healthy .. max multiplier - 1.
        self.awareness = 0
        self._queue: dict[str, _Broadcast] = {}
        self._queue_order = 0
        self._seq = 0
        self._probe: dict[str, Any] | None = None
        self._probe_order: list[str] = []
        self._probe_index = 0
        # Indirect probes we run for others: our seq -> [reply to, their seq, expiry, nack due
        # (math.inf once answered or when no nack was asked), their node name].
        self._ack_forward: dict[int, list[Any]] = {}
        self._pending: dict[int, _PendingQuery] = {}
        self._pending_by_ltime: dict[int, int] = {}
        self._nacks_due = math.inf
        # serf's three Lamport clocks (member intents, user events, queries); serf starts them at 1.
        self.clock, self.event_clock, self.query_clock = _Lamport(), _Lamport(), _Lamport()
        for lamport in (self.clock, self.event_clock, self.query_clock):
            lamport.increment()
        # serf's de-duplication rings (QueryBuffer / EventBuffer): slot = LTime % size.
        self._query_ring: dict[int, tuple[int, set[int]]] = {}
        self._event_ring: dict[int, tuple[int, set[tuple[str, bytes]]]] = {}
        self._serf_seq = 0
        self._meta = wire.encode_tags(self._tags)
        self._leave_at: float | None = None
        # Joins awaiting a push-pull reply: address -> [retry time, retries left]. memberlist joins
        # over TCP; our push-pull is a datagram, so retrying stands in for TCP's retransmission.
        self._joins: dict[str, list[float]] = {}
        # memberlist Join exchanges awaiting their outcome: join id -> (address, give-up time).
        self._join_waits: dict[int, tuple[str, float]] = {}
        self._join_ids = 0
        self._stopped = False
        self._drop_logged: dict[tuple[str, str], float] = {}
        self._out = GossipReady()
        # Latest time seen on any entry point: lets an idle gossip timer re-align to its grid.
        self._now = now
        c = self.config
        # Stagger timers so members started together do not act in lockstep.
        self._next_probe = now + rng.uniform(0, c.t(c.probe_interval))
        self._next_gossip = now + rng.uniform(0, c.t(c.gossip_interval))
        self._next_push_pull = now + rng.uniform(0, c.t(c.push_pull_interval))
        self._next_reconnect = now + c.t(c.reconnect_interval)
        me = self._add_node(name, address, self._tags, self._incarnation, ALIVE, now)
        me.meta, me.vsn, me.status_ltime = self._meta, wire.VSN, self.clock.time()
        self._src_ip, self._src_port = wire.split_address(address)
        host = parse_address(address)[0]
        self._event("member_join", f"EventMemberJoin: {name} {host}", member=name, addr=host)

    # ---------------------------------------------------------------- public read-only API

    @property
    def local_member(self) -> Member:
        return self._member(self._nodes[self.name])

    @property
    def incarnation(self) -> int:
        return self._incarnation

    def members(self) -> list[Member]:
        """All known members, sorted by name.

        Each member's ``tags`` is the core's own dict, not a copy (this is on every request that
        names servers): the core only ever replaces a member's tags with a new dict, so it never
        changes under a caller, and callers must treat it as read-only.
        """
        nodes, me, status_of = self._nodes, self.name, _MEMBER_STATUS
        out = []
        for name in self._names:
            node = nodes[name]
            host, port = parse_address(node.address)
            if name == me:
                status = self._status
            elif node.leaving:
                status = _serf_status(node)
            else:
                status = status_of[node.state]
            out.append(Member(name, host, port, node.tags, status, node.incarnation))
        return out

    def num_alive(self) -> int:
        """serf/memberlist NumMembers: members not dead or left (suspects count)."""
        return sum(1 for n in self._nodes.values() if n.state in (ALIVE, SUSPECT))

    def next_deadline(self) -> float:
        deadlines = [self._next_probe, self._next_push_pull, self._next_reconnect]
        if self._queue:
            deadlines.append(self._next_gossip)
        if self._probe is not None and not self._probe["acked"] and not self._probe["indirect"]:
            deadlines.append(self._probe["start"] + self._probe["timeout"])
        if self._suspicions:
            deadlines.append(min(self._suspicions.values()))
        if self._pending:
            deadlines.append(min(p.deadline for p in self._pending.values()))
        if self._leave_at is not None:
            deadlines.append(self._leave_at)
        if self._joins:
            deadlines.append(min(j[0] for j in self._joins.values()))
        if self._join_waits:
            deadlines.append(min(w[1] for w in self._join_waits.values()))
        deadlines.append(self._nacks_due)
        return math.inf if self._stopped else min(deadlines)

    def ready(self) -> GossipReady:
        out, self._out = self._out, GossipReady()
        return out

    # ---------------------------------------------------------------- operator actions

    def join(self, address: str, now: float, *, once: bool = False) -> int:
        """Start a full state exchange with ``address`` (memberlist Join = push-pull).

        ``once`` is memberlist's Join as serf and the agent call it: one exchange whose outcome
        appears in ``ready().join_results`` under the returned id: success once the answer has
        arrived and merged; failure (``Failed to join <address>: <reason>``) when the network
        reports the dial refused (``stream_failed``), the answer is refused, or nothing came
        back within ``tcp_timeout``. Without ``once`` (a starting server joining peers that may
        not listen yet) the exchange is resent every probe interval, ``JOIN_RETRIES`` times, and
        only a final "no response" is logged.

        An address that is not a valid IP:port raises :class:`GossipError` with memberlist's
        text (``Failed to resolve <address>: <reason>``) and nothing is sent or retried."""
        try:
            parse_address(address)
        except AddressError as exc:
            raise GossipError(f"Failed to resolve {address}: {exc}") from None
        self._now = max(self._now, now)
        self._join_ids += 1
        join_id = self._join_ids
        if once:
            if self._stopped or self._leave_at is not None:
                self._out.join_results.append((join_id, "Serf can't Join after Leave or Shutdown"))
            elif address == self.address:
                # memberlist would push-pull with itself and count it: nothing to wait for.
                self._out.join_results.append((join_id, None))
            else:
                self._send_push_pull(address, join=True, reply=False)
                self._join_waits[join_id] = (address, now + self.config.t(self.config.tcp_timeout))
            return join_id
        if self._stopped or address == self.address:
            return join_id
        self._send_push_pull(address, join=True, reply=False)
        self._joins[address] = [now + self.config.t(self.config.probe_interval), JOIN_RETRIES]
        return join_id

    def stream_failed(self, dst_address: str, reason: str, now: float) -> None:
        """The network could not run a stream exchange with ``dst_address`` (``reason`` in Go's
        words, e.g. ``dial tcp <addr>: connect: connection refused``): the joins waiting on it
        fail with memberlist's text. Other exchanges (periodic push-pull, reconnect, the
        fallback ping, retried joins) have their own timers and ignore it."""
        self._now = max(self._now, now)
        self._finish_joins(dst_address, f"Failed to join {dst_address}: {reason}")

    def _finish_joins(self, address: str, error: str | None) -> bool:
        """Report every join waiting on ``address``; True if there was one."""
        done = [jid for jid, (addr, _) in self._join_waits.items() if addr == address]
        for jid in done:
            del self._join_waits[jid]
            self._out.join_results.append((jid, error))
        return bool(done)

    def leave(self, now: float) -> None:
        """Graceful leave (serf Leave): the leave intent, then memberlist's dead about ourselves
        (From == Node, so peers mark us left), then stop once both have spread."""
        self._now = max(self._now, now)
        if self._stopped or self._leave_at is not None:
            return
        self._status = STATUS_LEAVING
        me = self._nodes[self.name]
        ltime = self.clock.time()
        self.clock.increment()
        me.status_ltime = ltime
        intent = wire.enc_s_leave(ltime, self.name, False)
        self._broadcast_serf(intent)
        self._broadcast(self.name, wire.enc_dead(self.name, me.incarnation, self.name))
        # Push it out now rather than waiting for the next gossip round.
        for target in self._random_nodes(self.config.gossip_nodes, self._gossip_ok(now)):
            self._send(self._nodes[target].address, None, crc=True)
        self._leave_at = now + self.config.t(self.config.leave_propagate_delay)
        self._event("member_leaving", f"EventMemberLeave intent: {self.name}", level="DEBUG")

    def force_leave(self, name: str, prune: bool, now: float) -> None:
        """serf RemoveFailedNode(Prune): a leave intent for a failed member (-> left); prune
        forgets it."""
        self._now = max(self._now, now)
        node = self._nodes.get(name)
        if node is None:
            raise GossipError(f"No node found with name '{name}'")
        if node.state in (ALIVE, SUSPECT) or name == self.name:
            return  # serf ignores force-leave of a live member; it would refute anyway
        self._on_leave_intent(
            {"ltime": self.clock.time(), "node": name, "prune": prune, "raw": None}, now
        )

    def set_tags(self, tags: dict[str, str], now: float) -> None:
        """Change our tags; a higher incarnation carries them to everyone (EventMemberUpdate)."""
        self._now = max(self._now, now)
        self._tags = dict(tags)
        self._meta = wire.encode_tags(self._tags)
        self._incarnation += 1
        me = self._nodes[self.name]
        me.tags = dict(tags)
        me.meta = self._meta
        me.incarnation = self._incarnation
        self._broadcast_alive(me)
        self._event("member_update", f"EventMemberUpdate: {self.name}", member=self.name)

    def start_keyring_query(
        self, op: str, key_b64: str | None, now: float, relay_factor: int = 0
    ) -> int:
        """Run install/use/remove/list across the pool; result arrives in ``ready().query_results``.
        ``relay_factor`` members also relay each answer to us (serf QueryParam.RelayFactor).

        Bad base64 raises :class:`KeyringError` with Go's decoder text before any query is sent
        (as serf does); a wrong key size is reported by every member, as memberlist's AddKey does.
        """
        if op not in KEYRING_QUERIES:
            raise ValueError(f"unknown keyring operation {op!r}")
        key: bytes | None = None
        if op != "list":
            if key_b64 is None:
                raise KeyringError("a key is required")
            key = go_base64_decode(key_b64)
        self._now = max(self._now, now)
        n = self.num_alive()
        result = KeyringResponse(op=op, num_nodes=n)
        return self._start_query(
            KEYRING_QUERIES[op],
            wire.enc_key_request(key),
            op,
            result,
            now,
            ack=False,
            relay_factor=relay_factor,
        )

    def start_query(self, name: str, payload: bytes | None, now: float) -> int:
        """A query with serf's ack flag: every member that gets it acks (``responses[node]`` is
        ``None``) and a member with an answer replaces that with its payload (bytes)."""
        self._now = max(self._now, now)
        result = QueryResponse(name=name, num_nodes=self.num_alive())
        return self._start_query(name, payload or b"", None, result, now, ack=True)

    def user_event(self, name: str, payload: bytes, now: float, coalesce: bool = True) -> None:
        """serf UserEvent: stamped with the event clock, gossiped, delivered here too."""
        self._now = max(self._now, now)
        ltime = self.event_clock.time()
        self.event_clock.increment()
        raw = wire.enc_s_user_event(ltime, name, payload, coalesce)
        msg = {"t": "s_event", "ltime": ltime, "name": name, "payload": payload, "raw": raw}
        self._on_user_event(msg, now)

    def seed_members(self, members: list[tuple[str, str, dict[str, str], int]], now: float) -> None:
        """Simulation shortcut: learn members as alive without joining (no events, no gossip).

        The harness uses it to build large pools in O(n) instead of n push-pull joins.
        """
        nodes = self._nodes
        for name, address, tags, incarnation in members:
            if name not in nodes:
                # meta stays empty until needed (_meta_of): most seeded members never need it.
                nodes[name] = _Node(name, address, dict(tags), incarnation, ALIVE, now)
        self._names = sorted(nodes)

    # ---------------------------------------------------------------- driver inputs

    def tick(self, now: float) -> None:
        if self._stopped:
            return
        self._now = max(self._now, now)
        c = self.config
        if self._leave_at is not None and now >= self._leave_at:
            self._finish_leave(now)
            return
        for name, deadline in list(self._suspicions.items()):
            if now >= deadline:
                self._suspicion_expired(name, now)
        for qid, pending in list(self._pending.items()):
            if now >= pending.deadline:
                self._finish_query(qid)
        for jid, (address, deadline) in list(self._join_waits.items()):
            if now >= deadline:
                # memberlist's dial (or read) deadline: TCPTimeout passed without an answer.
                del self._join_waits[jid]
                self._out.join_results.append(
                    (jid, f"Failed to join {address}: dial tcp {address}: i/o timeout")
                )
        for address, retry in list(self._joins.items()):
            if now >= retry[0]:
                if retry[1] <= 0:
                    del self._joins[address]
                    self._event(
                        "join_failed",
                        f"Failed to join {address}: no response",
                        level="WARN",
                        addr=address,
                    )
                else:
                    retry[0], retry[1] = now + c.t(c.probe_interval), retry[1] - 1
                    self._send_push_pull(address, join=True, reply=False)
        if self._nacks_due <= now:
            self._send_due_nacks(now)
        probe = self._probe
        if (
            probe is not None
            and not probe["acked"]
            and not probe["indirect"]
            and now >= probe["start"] + probe["timeout"]
        ):
            self._indirect_probe(now)
        if now >= self._next_probe:
            # Lifeguard: an unhealthy member probes less often (awareness scales the interval).
            interval = c.t(c.probe_interval) * (self.awareness + 1)
            self._next_probe = _advance(self._next_probe, interval, now)
            self._probe_tick(now)
        if now >= self._next_gossip:
            self._next_gossip = _advance(self._next_gossip, c.t(c.gossip_interval), now)
            self._gossip(now)
        if now >= self._next_push_pull:
            self._next_push_pull = now + c.push_pull_period(len(self._nodes))
            target = self._random_nodes(1, lambda n: n.state == ALIVE)
            if target:
                self._send_push_pull(self._nodes[target[0]].address, join=False, reply=False)
        if now >= self._next_reconnect:
            self._next_reconnect = now + c.t(c.reconnect_interval)
            failed = [n for n in self._names if self._nodes[n].state == DEAD]
            if failed:
                # serf reconnect: try one failed member; a healed partition merges again.
                target = failed[self._rng.randrange(len(failed))]
                self._send_push_pull(self._nodes[target].address, join=True, reply=False)

    def receive(self, src_address: str, payload: bytes, now: float) -> None:
        """One UDP packet: opened with the keyring, decoded (CRC, compound, LZW), handled."""
        if self._stopped:
            return
        self._now = max(self._now, now)
        self.counters["packets_in"] += 1
        if not valid_address(src_address):
            # Answers go to the source: a driver handing in a bad one must not plant it.
            self._drop("dropped_malformed", str(src_address), "invalid source address", now)
            return
        plain = payload
        if self.keyring is not None:
            try:
                plain = self.keyring.open(payload)
            except KeyringError as err:
                if _parses(payload):
                    self._drop(
                        "dropped_plaintext",
                        src_address,
                        "Decrypt packet failed: plaintext packet while encryption is enabled",
                        now,
                    )
                else:
                    self._drop("dropped_decrypt", src_address, f"Decrypt packet failed: {err}", now)
                return
        try:
            msgs = wire.decode_packet(plain)
        except wire.WireError as err:
            if self.keyring is None and _looks_sealed(payload):
                self._drop(
                    "dropped_encrypted",
                    src_address,
                    "encrypted packet while encryption is disabled",
                    now,
                )
            else:
                self._drop("dropped_malformed", src_address, f"failed to decode packet: {err}", now)
            return
        for msg in msgs:
            try:
                self._handle(src_address, msg, now)
            except (_Malformed, wire.WireError, AttributeError, KeyError, TypeError, ValueError):
                self._drop(
                    "dropped_malformed", src_address, f"malformed {msg.get('t')!r} message", now
                )

    def receive_stream(self, src_address: str, data: bytes, now: float) -> bytes | None:
        """One incoming stream message (memberlist handleConn): returns what to write back."""
        if self._stopped:
            return None
        self._now = max(self._now, now)
        self.counters["streams_in"] += 1
        try:
            inner = self._open_stream(data)
        except (wire.WireError, KeyringError) as err:
            reason = "dropped_malformed"
            if isinstance(err, KeyringError):
                reason = "dropped_decrypt"
            elif str(err) == ERR_STREAM_PLAINTEXT:
                reason = "dropped_plaintext"
            elif str(err) == ERR_STREAM_ENCRYPTED:
                reason = "dropped_encrypted"
            self._drop(reason, src_address, f"failed to receive: {err}", now)
            return self._seal_stream(bytes([wire.ERR]) + wire.pack({"Error": str(err)}))
        t = inner["t"]
        try:
            if t == "pp":
                # memberlist handleConn sends its own state before merging the remote one.
                reply = self._push_pull_bytes(join=inner["join"])
                try:
                    self._verify_protocol(inner["states"])
                    self._merge_push_pull(inner, now)
                except wire.WireError as err:
                    self._drop(
                        "push_pull_refused", src_address, f"Failed push/pull merge: {err}", now
                    )
                return reply
            if t == "ping":
                if inner["node"] and inner["node"] != self.name:
                    return None
                return self._seal_stream(wire.enc_ack(inner["seq"]))
            if t == "stream_user":
                self._handle(src_address, inner["msg"], now)
                return None
        except (_Malformed, wire.WireError, AttributeError, KeyError, TypeError, ValueError) as e:
            self._drop("dropped_malformed", src_address, f"malformed stream: {e}", now)
            return None
        self._drop("dropped_malformed", src_address, f"unexpected stream message {t}", now)
        return None

    def receive_stream_reply(self, dst_address: str, data: bytes, now: float) -> None:
        """The answer to a push-pull we started (memberlist sendAndReceiveState)."""
        if self._stopped:
            return
        self._now = max(self._now, now)
        self.counters["streams_in"] += 1
        try:
            inner = self._open_stream(data)
            if inner["t"] == "err":
                raise wire.WireError(f"remote error: {inner['error']}")
            if inner["t"] == "ack":  # the answer to a fallback (TCP) ping
                self._on_fallback_ack(inner["seq"])
                return
            if inner["t"] != "pp":
                raise wire.WireError("received invalid msgType, expected pushPullMsg")
            joining = self._joins.pop(dst_address, None) is not None
            try:
                self._verify_protocol(inner["states"])
            except wire.WireError as err:
                self._finish_joins(dst_address, f"Failed to join {dst_address}: {err}")
                self._drop(
                    "push_pull_refused",
                    dst_address,
                    f"Failed to join {dst_address}: {err}"
                    if joining
                    else f"push/pull failed: {err}",
                    now,
                )
                return
            self._merge_push_pull(inner, now)
            joining = self._finish_joins(dst_address, None) or joining
        except (
            _Malformed,
            wire.WireError,
            KeyringError,
            AttributeError,
            KeyError,
            TypeError,
            ValueError,
        ) as err:
            self._finish_joins(dst_address, f"Failed to join {dst_address}: {err}")
            self._drop("dropped_malformed", dst_address, f"push/pull failed: {err}", now)
            return
        if joining:
            # serf Join: announce ourselves with a join intent at the current clock.
            ltime = self.clock.time()
            self._nodes[self.name].status_ltime = ltime
            self._broadcast_serf(wire.enc_s_join(ltime, self.name))

    def _open_stream(self, data: bytes) -> dict[str, Any]:
        if data[:1] == bytes([wire.ENCRYPT]):
            if self.keyring is None:
                raise wire.WireError(ERR_STREAM_ENCRYPTED)
            plain = self.keyring.open(data[5:], aad=data[:5])
        elif self.keyring is not None:
            raise wire.WireError(ERR_STREAM_PLAINTEXT)
        else:
            plain = data
        return wire.dec_stream_inner(plain)

    # ---------------------------------------------------------------- message handling

    def _handle(self, src: str, msg: dict[str, Any], now: float) -> None:
        t = msg["t"]
        if t == "ping":
            if msg["node"] and msg["node"] != self.name:
                return  # memberlist: ping meant for another node at this address
            self._send(msg["src"] or src, wire.enc_ack(msg["seq"]))
        elif t == "ack":
            seq = msg["seq"]
            if self._probe is not None and self._probe["seq"] == seq:
                self._probe["acked"] = True
            fwd = self._ack_forward.pop(seq, None)
            if fwd is not None:
                self._send(fwd[0], wire.enc_ack(fwd[1]))
        elif t == "nack":
            if self._probe is not None and self._probe["seq"] == msg["seq"]:
                self._probe["nacks"] += 1
        elif t == "preq":
            seq = self._next_seq()
            reply_to = msg["src"] or src
            timeout = self.config.t(self.config.probe_timeout)
            due = now + timeout if msg["nack"] else math.inf
            self._ack_forward[seq] = [
                reply_to,
                msg["seq"],
                now + self.config.t(self.config.probe_interval),
                due,
            ]
            self._nacks_due = min(self._nacks_due, due)
            self._send(msg["ta"], wire.enc_ping(seq, msg["node"], self.address, self.name))
        elif t == "alive":
            self._on_alive(msg, now)
        elif t == "suspect":
            self._on_suspect(msg["node"], msg["inc"], msg["from"], now)
        elif t == "dead":
            self._on_dead(msg["node"], msg["inc"], msg["from"], now)
        elif t == "s_leave":
            self._on_leave_intent(msg, now)
        elif t == "s_join":
            self._on_join_intent(msg)
        elif t == "s_event":
            self._on_user_event(msg, now)
        elif t == "q":
            self._on_query(msg, now)
        elif t == "qr":
            self._on_query_response(msg)
        elif t == "s_relay":
            # serf: forward the inner message to its destination as a user message.
            self.counters["responses_relayed"] += 1
            self._emit_packet(msg["dest"], wire.enc_user(msg["inner"]))
        elif t == "s_ignored":
            return
        else:
            raise _Malformed(t)

    def _on_alive(self, msg: dict[str, Any], now: float) -> None:
        name, address, inc, tags = msg["node"], msg["addr"], msg["inc"], msg["tags"]
        if name == self.name:
            me = self._nodes[name]
            if inc > me.incarnation or (
                inc == me.incarnation and (address != me.address or tags != me.tags)
            ):
                self._refute(inc, now)
            return
        vsn = msg.get("vsn")
        node = self._nodes.get(name)
        if node is None:
            node = self._add_node(name, address, dict(tags), inc, ALIVE, now)
            node.meta, node.vsn = msg.get("meta") or b"", vsn
            self._broadcast_alive(node)
            host = parse_address(address)[0]
            self._event("member_join", f"EventMemberJoin: {name} {host}", member=name, addr=host)
            return
        updates_address = address != node.address
        if updates_address and node.state not in (DEAD, LEFT):
            self._event(
                "member_conflict",
                f"Conflicting address for {name}. Mine: {node.address} Theirs: {address}",
                level="ERROR",
                member=name,
            )
            return
        if inc <= node.incarnation and not updates_address:
            return
        old_state, old_tags = node.state, node.tags
        node.incarnation, node.address, node.tags = inc, address, dict(tags)
        node.meta, node.vsn = msg.get("meta") or b"", vsn or node.vsn
        self._suspicions.pop(name, None)
        self._suspicion_info.pop(name, None)
        self._broadcast_alive(node)
        host = parse_address(address)[0]
        if old_state in (DEAD, LEFT):
            node.state, node.state_change = ALIVE, now
            node.leaving = False
            self._event("member_join", f"EventMemberJoin: {name} {host}", member=name, addr=host)
        elif old_state == SUSPECT:
            node.state, node.state_change = ALIVE, now
            self._event(
                "member_alive", f"{name} is alive again (refuted)", level="DEBUG", member=name
            )
        if old_tags != node.tags and old_state in (ALIVE, SUSPECT):
            self._event("member_update", f"EventMemberUpdate: {name}", member=name)

    def _refute_accusation(self, kind: str, inc: int, accuser: str, now: float) -> None:
        """Someone says we are suspect or dead: refute it, unless we are leaving (memberlist)."""
        if self._leave_at is None:
            self._refute(inc, now)
            self._event(
                "refute",
                f"Refuting a {kind} message (from: {accuser})",
                level="WARN",
                accuser=accuser,
            )

    def _on_suspect(self, name: str, inc: int, accuser: str, now: float) -> None:
        node = self._nodes.get(name)
        if node is None or inc < node.incarnation:
            return
        if name == self.name:
            self._refute_accusation("suspect", inc, accuser, now)
            return
        info = self._suspicion_info.get(name)
        if info is not None:
            # Lifeguard: an independent confirmation shortens the timeout (and is re-gossiped,
            # so confirmations flow even to members already suspecting).
            start, k, low, high, confirmers = info
            if len(confirmers) - 1 >= k or accuser in confirmers:
                return
            confirmers.add(accuser)
            n = len(confirmers) - 1
            frac = math.log(n + 1.0) / math.log(k + 1.0)
            timeout = max(low, math.floor(1000.0 * (high - frac * (high - low))) / 1000.0)
            self._suspicions[name] = start + timeout
            self._broadcast(name, wire.enc_suspect(name, inc, accuser))
            return
        if node.state != ALIVE:
            return  # dead or left
        node.incarnation, node.state, node.state_change = inc, SUSPECT, now
        k, low, high = self.config.suspicion_bounds(len(self._nodes))
        self._suspicion_info[name] = (now, k, low, high, {accuser})
        self._suspicions[name] = now + (high if k >= 1 else low)
        self._broadcast(name, wire.enc_suspect(name, inc, accuser))
        msg = (
            f"Suspect {name} has failed, no acks received"
            if accuser == self.name
            else f"Suspect {name} (from: {accuser})"
        )
        self._event("member_suspect", msg, level="INFO", member=name, accuser=accuser)

    def _on_dead(self, name: str, inc: int, accuser: str, now: float) -> None:
        node = self._nodes.get(name)
        if node is None or inc < node.incarnation:
            return
        leaving = accuser == name
        if node.state == LEFT or (node.state == DEAD and not leaving):
            return
        if name == self.name:
            self._refute_accusation("dead", inc, accuser, now)
            return
        node.incarnation, node.state_change = inc, now
        node.state = LEFT if leaving else DEAD
        self._suspicions.pop(name, None)
        self._suspicion_info.pop(name, None)
        self._broadcast(name, wire.enc_dead(name, inc, accuser))
        host = parse_address(node.address)[0]
        if leaving or node.leaving:
            self._event("member_left", f"EventMemberLeave: {name} {host}", member=name, addr=host)
        else:
            self._event(
                "member_failed",
                f"EventMemberFailed: {name} {host}",
                level="INFO",
                member=name,
                addr=host,
            )

    def _verify_protocol(self, states: list[dict[str, Any]]) -> None:
        """memberlist verifyProtocol: every alive member's version range must admit every
        member's current protocol and delegate version, or the push-pull merge fails."""
        pmin = dmin = 0
        pmax = dmax = 255
        local = [(n.name, n.state == ALIVE, n.vsn) for n in self._nodes.values()]
        remote = [(e["node"], e["state"] == 0, e["vsn"]) for e in states]
        for _name, alive, vsn in remote + local:
            if alive and vsn:
                pmin, pmax = max(pmin, vsn[0]), min(pmax, vsn[1])
                dmin, dmax = max(dmin, vsn[3]), min(dmax, vsn[4])
        for name, _alive, vsn in remote + local:
            pcur, dcur = (vsn[2], vsn[5]) if vsn else (0, 0)
            if not pmin <= pcur <= pmax:
                raise wire.WireError(
                    f"Node '{name}' protocol version ({pcur}) is incompatible: [{pmin}, {pmax}]"
                )
            if not dmin <= dcur <= dmax:
                raise wire.WireError(
                    f"Node '{name}' delegate protocol version ({dcur}) is incompatible: "
                    f"[{dmin}, {dmax}]"
                )

    def _merge_push_pull(self, msg: dict[str, Any], now: float) -> None:
        # memberlist mergeState: remote dead becomes suspect here (verify it ourselves).
        for entry in msg["states"]:
            state = _CODE_STATES[entry["state"]]
            if state == ALIVE:
                self._on_alive(entry, now)
            elif state in (SUSPECT, DEAD):
                self._on_suspect(entry["node"], entry["inc"], self.name, now)
            else:
                self._on_dead(entry["node"], entry["inc"], entry["node"], now)
        user = msg["user"]
        if user is None:
            return
        # serf MergeRemoteState: witness the clocks, replay intents.
        for clock, value in (
            (self.clock, user["ltime"]),
            (self.event_clock, user["event_ltime"]),
            (self.query_clock, user["query_ltime"]),
        ):
            if value > 0:
                clock.witness(value - 1)
        left = set(user["left"])
        ltimes = user["status_ltimes"]
        for name in user["left"]:
            self._on_leave_intent(
                {"ltime": ltimes.get(name, 0) + 1, "node": name, "prune": False, "raw": None}, now
            )
        for name, ltime in sorted(ltimes.items()):
            if name not in left:
                self._on_join_intent({"ltime": ltime, "node": name, "raw": None})

    # ---------------------------------------------------------------- serf intents and events

    def _on_leave_intent(self, msg: dict[str, Any], now: float) -> None:
        """serf handleNodeLeaveIntent."""
        ltime, name = msg["ltime"], msg["node"]
        self.clock.witness(ltime)
        node = self._nodes.get(name)
        if node is None or ltime <= node.status_ltime:
            return
        if name == self.name:
            if self._leave_at is None and self._status == STATUS_ALIVE:
                # Refute an older leave intent with a join intent at our clock.
                node.status_ltime = self.clock.time()
                self._broadcast_serf(wire.enc_s_join(self.clock.time(), self.name))
            return
        node.status_ltime = ltime
        host = parse_address(node.address)[0]
        if node.state in (ALIVE, SUSPECT):
            node.leaving = True
        elif node.state == DEAD:
            node.state, node.state_change, node.leaving = LEFT, now, True
            self._event(
                "member_left", f"EventMemberLeave (forced): {name} {host}", member=name, addr=host
            )
        elif not msg["prune"]:
            return
        self._broadcast_serf(msg["raw"] or wire.enc_s_leave(ltime, name, msg["prune"]))
        if msg["prune"] and node.state == LEFT:
            self._remove_node(name)
            self._event(
                "member_reap", f"EventMemberReap (forced): {name} {host}", member=name, addr=host
            )

    def _on_join_intent(self, msg: dict[str, Any]) -> None:
        """serf handleNodeJoinIntent: a newer join intent clears a leave intent."""
        ltime, name = msg["ltime"], msg["node"]
        self.clock.witness(ltime)
        node = self._nodes.get(name)
        if node is None or ltime <= node.status_ltime:
            return
        node.status_ltime = ltime
        if node.leaving and node.state in (ALIVE, SUSPECT):
            node.leaving = False
        if msg["raw"] is not None:
            self._broadcast_serf(msg["raw"])

    def _on_user_event(self, msg: dict[str, Any], now: float) -> None:
        """serf handleUserEvent: witness, drop too old or seen, deliver, rebroadcast."""
        ltime = msg["ltime"]
        key = (msg["name"], msg["payload"])
        if not self.event_clock.first_sighting(ltime, key, self._event_ring, wire.EVENT_BUFFER):
            return
        self.counters["user_events"] += 1
        self._broadcast_serf(msg["raw"])
        # What a Consul server does with it (server_serf.go localEvent): consul:event:* goes to
        # the agent's user-event handler ("new event"), anything else is logged as unhandled.
        name = msg["name"]
        if name.startswith("consul:event:"):
            level, text = "DEBUG", f"new event: {name[len('consul:event:') :]}"
        elif name == "consul:new-leader":
            level, text = "INFO", "New leader elected"
        else:
            level, text = "WARN", f"Unhandled local event: {name}"
        self._event("user_event", text, level=level, name=name, payload=msg["payload"], ltime=ltime)

    # ---------------------------------------------------------------- queries

    def _start_query(
        self,
        name: str,
        payload: bytes,
        op: str | None,
        result: KeyringResponse | QueryResponse,
        now: float,
        *,
        ack: bool,
        relay_factor: int = 0,
    ) -> int:
        qid = self._rng.getrandbits(31)  # serf: rand.Int31
        while qid in self._pending:
            qid = self._rng.getrandbits(31)
        ltime = self.query_clock.time()
        timeout = self.config.query_timeout(result.num_nodes)
        self._pending[qid] = _PendingQuery(
            op=op, deadline=now + timeout, result=result, ltime=ltime
        )
        self._pending_by_ltime[ltime] = qid
        raw = wire.enc_s_query(
            ltime=ltime,
            qid=qid,
            address=self.address,
            source_node=self.name,
            name=name,
            payload=payload,
            timeout_ns=round(timeout * 1e9),
            flags=wire.QUERY_FLAG_ACK if ack else 0,
            relay_factor=relay_factor,
        )
        msg = wire.decode_serf(raw)
        # serf handles its own query locally too (which witnesses the query clock).
        self._on_query(msg, now)
        return qid

    def _on_query(self, msg: dict[str, Any], now: float) -> None:
        """serf handleQuery: de-duplicate by LTime slot and ID, rebroadcast, ack, answer."""
        ltime, qid = msg["ltime"], msg["id"]
        if not self.query_clock.first_sighting(ltime, qid, self._query_ring, wire.QUERY_BUFFER):
            return
        if not msg["flags"] & wire.QUERY_FLAG_NO_BROADCAST:
            self._broadcast_serf(msg["raw"])
        if not wire.filters_match(msg["filters"], self.name, self._tags):
            return
        if msg["flags"] & wire.QUERY_FLAG_ACK:
            self._respond(msg, wire.QUERY_FLAG_ACK, None)
        answer = self._answer_query(msg, now)
        if answer is not None:
            self._respond(msg, 0, answer)

    def _respond(self, query: dict[str, Any], flags: int, payload: bytes | None) -> None:
        """Straight back to the originator (serf SendToAddress), plus RelayFactor relays."""
        resp = wire.enc_s_query_resp(query["ltime"], query["id"], self.name, flags, payload)
        if query["origin"] == self.name:
            self._on_query_response(wire.decode_serf(resp))
            return
        self._emit_packet(query["oa"], wire.enc_user(resp))
        relays = query["relay"]
        # serf relayResponse: only with at least relays *other* members; any alive member
        # speaking protocol 5 but us may relay (the originator too).
        if relays and len(self._nodes) >= relays + 1:
            relay = wire.enc_relay(query["oa"], query["origin"], resp)
            if len(relay) > QUERY_RESPONSE_SIZE_LIMIT:
                return
            ok: Callable[[_Node], bool] = lambda n: (  # noqa: E731
                n.state == ALIVE and (n.vsn is None or n.vsn[1] >= 5)
            )
            for peer in self._random_nodes(relays, ok):
                self._emit_packet(self._nodes[peer].address, wire.enc_user(relay))

    def _on_query_response(self, msg: dict[str, Any]) -> None:
        """serf handleQueryResponse: matched by LTime, then ID; acks and answers once each."""
        qid = self._pending_by_ltime.get(msg["ltime"])
        if qid is None or qid != msg["id"]:
            return
        if msg["flags"] & wire.QUERY_FLAG_ACK:
            pending = self._pending[qid]
            if isinstance(pending.result, QueryResponse):
                self._record_response(qid, msg["from"], None, ack=True)
            return
        self._record_response(qid, msg["from"], msg["payload"], ack=False)

    def _answer_query(self, query: dict[str, Any], now: float) -> bytes | None:
        op = _QUERY_OPS.get(query["name"])
        if op is None:
            return None  # _serf_ping is only acked; user queries have no handler in a Consul server
        answer = self._apply_keyring_op(op, query["payload"])
        if op == "list":
            return self._key_list_that_fits(query, answer)
        return wire.enc_key_response(
            answer["result"], answer["message"], answer["keys"], answer["primary"]
        )

    def _key_list_that_fits(self, query: dict[str, Any], answer: dict[str, Any]) -> bytes | None:
        """serf keyListResponseWithCorrectSize: drop keys from the end until the query response
        fits serf's QueryResponseSizeLimit, and say so in the response's Message."""
        keys, message = answer["keys"], answer["message"]
        actual = len(keys)
        for shown in range(QUERY_RESPONSE_SIZE_LIMIT // MIN_ENCODED_KEY_LENGTH, -1, -1):
            body = wire.enc_key_response(answer["result"], message, keys, answer["primary"])
            raw = wire.enc_s_query_resp(query["ltime"], query["id"], self.name, 0, body)
            if len(raw) > QUERY_RESPONSE_SIZE_LIMIT:
                keys = keys[:shown]
                message = f"truncated key list response, showing first {shown} of {actual} keys"
                continue
            if actual > shown:
                self._event("key_list_truncated", message, level="WARN")
            return body
        self._event(
            "key_list_truncated",
            "Failed to truncate response so that it fits into message",
            level="ERROR",
        )
        return None

    def _apply_keyring_op(self, op: str, payload: bytes) -> dict[str, Any]:
        received, failed = _QUERY_LOG[op]
        answer: dict[str, Any] = {"result": False, "message": "", "keys": [], "primary": ""}
        kind = _KEY_EVENT.get(op, "key_listed")
        key = wire.dec_key_request(payload)
        fields: dict[str, Any] = {"op": op}
        if op != "list":
            fields["key_id"] = fingerprint(key)
        if self.keyring is None:
            answer["message"] = ERR_EMPTY_KEYRING if op == "list" else ERR_NO_KEYRING
        else:
            try:
                if op == "install":
                    self.keyring.add_key(key)
                elif op == "use":
                    self.keyring.use_key(key)
                elif op == "remove":
                    self.keyring.remove_key(key)
                else:
                    answer["keys"] = self.keyring.keys_b64()
                    answer["primary"] = (
                        b64(self.keyring.primary_key) if self.keyring.primary_key else ""
                    )
                answer["result"] = True
            except KeyringError as err:
                answer["message"] = str(err)
        fields["ok"] = answer["result"]
        if answer["result"]:
            self._event(kind, f"{received}", level="DEBUG" if op == "list" else "INFO", **fields)
        else:
            fields["error"] = answer["message"]
            self._event(kind, f"{failed}: {answer['message']}", level="ERROR", **fields)
        return answer

    def _record_response(self, qid: int, node: str, payload: Any, *, ack: bool) -> None:
        pending = self._pending.get(qid)
        if pending is None:
            return
        result = pending.result
        if isinstance(result, QueryResponse):
            if ack:
                if node in result.responses:
                    return
                result.responses[node] = None
            else:
                result.responses[node] = payload
            done = result.num_resp >= result.num_nodes and ack
        else:
            if node in pending.responders:
                return
            pending.responders.add(node)
            # serf keymanager streamKeyResp
            result.num_resp += 1
            try:
                answer = wire.dec_key_response(payload)
            except wire.WireError as err:
                result.messages[node] = f"Failed to decode key query response: {err}"
                result.num_err += 1
            else:
                message = answer["message"]
                if not answer["result"]:
                    result.messages[node] = message
                    result.num_err += 1
                elif message:
                    result.messages[node] = message
                for key in answer["keys"]:
                    result.keys[key] = result.keys.get(key, 0) + 1
                primary = answer["primary"]
                if primary:
                    result.primary_keys[primary] = result.primary_keys.get(primary, 0) + 1
            done = result.num_resp >= result.num_nodes
        if done:
            self._finish_query(qid)

    def _finish_query(self, qid: int) -> None:
        pending = self._pending.pop(qid)
        if self._pending_by_ltime.get(pending.ltime) == qid:
            del self._pending_by_ltime[pending.ltime]
        result = pending.result
        if isinstance(result, KeyringResponse):
            result.messages = dict(sorted(result.messages.items()))
            result.keys = dict(sorted(result.keys.items()))
            result.primary_keys = dict(sorted(result.primary_keys.items()))
            if result.num_err:
                result.error = f"{result.num_err}/{result.num_nodes} nodes reported failure"
            elif result.num_resp != result.num_nodes:
                result.error = f"{result.num_resp}/{result.num_nodes} nodes reported success"
        else:
            result.responses = dict(sorted(result.responses.items()))
        self._out.query_results.append((qid, result))

    # ---------------------------------------------------------------- failure detection

    def _probe_tick(self, now: float) -> None:
        probe = self._probe
        if probe is not None:
            # memberlist probeNode's awareness delta: -1 for an ack; for a failed probe, +1 per
            # nack missing from the helpers we asked (+1 if we could ask none).
            if probe["acked"]:
                delta = -1
            elif probe["fallback_acked"]:
                delta = 0  # memberlist returns before the failed-probe penalty
            elif probe["expected_nacks"]:
                delta = probe["expected_nacks"] - min(probe["nacks"], probe["expected_nacks"])
            else:
                delta = 1
            limit = self.config.awareness_max_multiplier - 1
            self.awareness = min(max(self.awareness + delta, 0), limit)
        if probe is not None and not probe["acked"] and probe["fallback_acked"]:
            self._event(
                "fallback_ping_ok",
                f"Was able to connect to {probe['target']} but other probes failed, "
                "network may be misconfigured",
                level="WARN",
                member=probe["target"],
            )
        elif probe is not None and not probe["acked"]:
            node = self._nodes.get(probe["target"])
            # A suspect one too: our own failed probe is an independent confirmation (Lifeguard).
            if (
                node is not None
                and node.state in (ALIVE, SUSPECT)
                and node.incarnation == probe["inc"]
            ):
                self._on_suspect(node.name, node.incarnation, self.name, now)
        self._probe = None
        self._expire_bookkeeping(now)
        if self._leave_at is not None:
            return
        for _ in range(len(self._names) + 1):
            if self._probe_index >= len(self._probe_order):
                # memberlist walks a shuffled list, reshuffling after each full pass.
                self._probe_order = [n for n in self._names if n != self.name]
                self._rng.shuffle(self._probe_order)
                self._probe_index = 0
                if not self._probe_order:
                    return
            name = self._probe_order[self._probe_index]
            self._probe_index += 1
            node = self._nodes.get(name)
            if node is not None and node.state in (ALIVE, SUSPECT):
                seq = self._next_seq()
                self._probe = {
                    "target": name,
                    "seq": seq,
                    "start": now,
                    "inc": node.incarnation,
                    "acked": False,
                    "indirect": False,
                    "nacks": 0,
                    "expected_nacks": 0,
                    "fallback_acked": False,
                    "timeout": self.config.t(self.config.probe_timeout) * (self.awareness + 1),
                }
                # memberlist adds a CRC when probing a node it knows speaks protocol >= 5.
                crc = node.vsn is not None and node.vsn[1] >= 5
                ping = wire.enc_ping(seq, name, self.address, self.name)
                self._send(node.address, ping, crc=crc)
                return

    def _indirect_probe(self, now: float) -> None:
        probe = self._probe
        assert probe is not None
        probe["indirect"] = True
        target = self._nodes.get(probe["target"])
        if target is None:
            return
        helpers = self._random_nodes(
            self.config.indirect_checks, lambda n: n.state == ALIVE and n.name != target.name
        )
        for helper in helpers:
            peer = self._nodes[helper]
            # Nacks are only asked of peers speaking memberlist protocol >= 4.
            nack = peer.vsn is not None and peer.vsn[1] >= 4
            probe["expected_nacks"] += nack
            req = wire.enc_indirect_ping(
                probe["seq"], target.name, target.address, nack, self.address, self.name
            )
            self._send(peer.address, req)
        # memberlist probeNode: a TCP ping alongside the indirect ones, to a node speaking
        # protocol >= 3, so a node that only UDP cannot reach is not suspected (its answer
        # is looked at when the probe interval ends).
        if self.config.tcp_pings and target.vsn is not None and target.vsn[1] >= 3:
            ping = wire.enc_ping(probe["seq"], target.name, self.address, self.name)
            self.counters["fallback_pings_out"] += 1
            self._out.streams.append((target.address, self._seal_stream(ping)))

    def _on_fallback_ack(self, seq: int) -> None:
        probe = self._probe
        if probe is not None and probe["seq"] == seq and not probe["acked"]:
            probe["fallback_acked"] = True

    def _suspicion_expired(self, name: str, now: float) -> None:
        self._suspicions.pop(name, None)
        info = self._suspicion_info.pop(name, None)
        node = self._nodes.get(name)
        if node is None or node.state != SUSPECT:
            return
        confirmations = 0 if info is None else len(info[4]) - 1
        self._event(
            "suspect_timeout",
            f"Marking {name} as failed, suspect timeout reached "
            f"({confirmations} peer confirmations)",
            member=name,
            confirmations=confirmations,
        )
        self._on_dead(name, node.incarnation, self.name, now)

    def _refute(self, accused_inc: int, now: float) -> None:
        # Being accused means we may be the slow one (memberlist refute: awareness +1).
        self.awareness = min(self.awareness + 1, self.config.awareness_max_multiplier - 1)
        self._incarnation = max(self._incarnation + 1, accused_inc + 1)
        me = self._nodes[self.name]
        me.incarnation = self._incarnation
        self._broadcast_alive(me)

    def _finish_leave(self, now: float) -> None:
        self._status = STATUS_LEFT
        me = self._nodes[self.name]
        me.state, me.state_change = LEFT, now
        self._leave_at = None
        self._stopped = True
        host = parse_address(self.address)[0]
        self._event(
            "member_left", f"EventMemberLeave: {self.name} {host}", member=self.name, addr=host
        )
        for qid in list(self._pending):
            self._finish_query(qid)
        for jid, (address, _) in list(self._join_waits.items()):
            del self._join_waits[jid]
            self._out.join_results.append((jid, f"Failed to join {address}: memberlist shutdown"))

    def _expire_bookkeeping(self, now: float) -> None:
        for seq in [s for s, f in self._ack_forward.items() if f[2] <= now]:
            del self._ack_forward[seq]

    def _send_due_nacks(self, now: float) -> None:
        """memberlist handleIndirectPing: no ack from the target within the probe timeout ->
        a nack to the requester, so it knows we are alive and the target is the one silent."""
        due = math.inf
        for fwd in self._ack_forward.values():
            if fwd[3] <= now:
                fwd[3] = math.inf
                self._send(fwd[0], wire.enc_nack(fwd[1]))
            due = min(due, fwd[3])
        self._nacks_due = due

    # ---------------------------------------------------------------- gossip and sending

    def _gossip_ok(self, now: float) -> Callable[[_Node], bool]:
        dead_window = self.config.t(self.config.gossip_to_the_dead_time)

        def ok(node: _Node) -> bool:
            if node.state in (ALIVE, SUSPECT):
                return True
            return node.state == DEAD and now - node.state_change <= dead_window

        return ok

    def _gossip(self, now: float) -> None:
        if not self._queue:
            return
        for target in self._random_nodes(self.config.gossip_nodes, self._gossip_ok(now)):
            if not self._queue:
                break
            self._send(self._nodes[target].address, None, crc=True)

    def _random_nodes(self, k: int, ok: Callable[[_Node], bool]) -> list[str]:
        """memberlist kRandomNodes: up to k distinct others passing ``ok``, by bounded sampling."""
        names = self._names
        n = len(names)
        picked: list[str] = []
        if n <= 1 or k <= 0:
            return picked
        for _ in range(3 * n if n < 64 else 3 * k + 16):
            if len(picked) >= k:
                break
            name = names[self._rng.randrange(n)]
            if name == self.name or name in picked or not ok(self._nodes[name]):
                continue
            picked.append(name)
        if len(picked) < k and n >= 64:
            # Sparse eligibility in a big pool: fall back to an exact scan.
            rest = [x for x in names if x != self.name and x not in picked and ok(self._nodes[x])]
            self._rng.shuffle(rest)
            picked.extend(rest[: k - len(picked)])
        return picked

    def _broadcast(self, key: str, msg: bytes) -> None:
        if not self._queue and self._next_gossip <= self._now:
            # The gossip timer idles while there is nothing to send (next_deadline skips it);
            # memberlist would gossip at its next beat, not now, so move to that beat.
            period = self.config.t(self.config.gossip_interval)
            self._next_gossip = _advance(self._next_gossip, period, self._now)
        # A newer broadcast about the same node replaces the older one (memberlist invalidation).
        self._queue_order += 1
        self._queue.pop(key, None)
        self._queue[key] = _Broadcast(msg=msg, size=len(msg), order=self._queue_order)

    def _broadcast_serf(self, serf_msg: bytes) -> None:
        """A serf message rides memberlist's broadcasts as a user message (never invalidated)."""
        self._serf_seq += 1
        self._broadcast(f"\x00serf{self._serf_seq}", wire.enc_user(serf_msg))

    def _broadcast_alive(self, node: _Node) -> None:
        # The member's own protocol versions: a serf agent refutes an alive with other ones.
        vsn = node.vsn or wire.VSN
        meta = _meta_of(node)
        self._broadcast(
            node.name, wire.enc_alive(node.name, node.incarnation, node.address, meta, vsn)
        )

    def _take_broadcasts(self, budget: int) -> list[bytes]:
        if not self._queue:
            return []
        limit = self.config.retransmit_limit(len(self._nodes))
        # Fewest transmissions first, newest first among equals (memberlist's queue order).
        items = sorted(self._queue.items(), key=lambda kv: (kv[1].transmits, -kv[1].order))
        out: list[bytes] = []
        for key, item in items:
            cost = item.size + COMPOUND_PART
            if cost > budget:
                continue
            budget -= cost
            out.append(item.msg)
            item.transmits += 1
            if item.transmits >= limit:
                del self._queue[key]
            if len(out) >= 254:
                break
        return out

    def _send(self, address: str, msg: bytes | None, *, crc: bool = False) -> None:
        """memberlist sendMsg: ``msg`` (or only broadcasts when None) with piggybacked
        broadcasts, as one compound message when there is more than one."""
        budget = self.config.packet_budget - COMPOUND_HEADER
        if self.keyring is not None:
            budget -= ENCRYPT_OVERHEAD
        msgs = [] if msg is None else [msg]
        if msg is not None:
            budget -= len(msg) + COMPOUND_PART
        msgs.extend(self._take_broadcasts(budget))
        if not msgs:
            return
        data = msgs[0] if len(msgs) == 1 else wire.enc_compound(msgs)
        if self.config.compression:
            # memberlist rawSendMsgPacket: compress (only if that is smaller), then CRC, then seal.
            packed = wire.enc_compress(data)
            if len(packed) < len(data):
                data = packed
        self._emit_packet(address, wire.enc_crc(data) if crc else data)

    def _push_pull_bytes(self, *, join: bool) -> bytes:
        """memberlist sendLocalState + serf LocalState, sealed as an encrypted stream."""
        nodes = []
        ltimes: dict[str, int] = {}
        left: list[str] = []
        codes, default_vsn = _STATE_CODES, wire.VSN
        for name in self._names:
            node = self._nodes[name]
            meta = node.meta or _meta_of(node)
            state = codes[node.state]
            nodes.append(
                (name, node.address, meta, node.incarnation, state, node.vsn or default_vsn)
            )
            ltimes[name] = node.status_ltime
            if state == 3:
                left.append(name)
        user = wire.enc_s_push_pull(
            ltime=self.clock.time(),
            status_ltimes=ltimes,
            left_members=left,
            event_ltime=self.event_clock.time(),
            events=None,
            query_ltime=self.query_clock.time(),
        )
        plain = wire.enc_push_pull(nodes, user, join)
        if self.config.compression:
            plain = wire.enc_compress(plain)  # memberlist sendLocalState compresses always
        return self._seal_stream(plain)

    def _seal_stream(self, plain: bytes) -> bytes:
        if self.keyring is not None and self.keyring.primary_key is not None:
            return wire.seal_stream(plain, self.keyring, self._rng)
        return plain

    def _send_push_pull(self, address: str, *, join: bool, reply: bool = False) -> None:
        self.counters["streams_out"] += 1
        self._out.streams.append((address, self._push_pull_bytes(join=join)))

    def _emit_packet(self, address: str, data: bytes) -> None:
        if self.keyring is not None and self.keyring.primary_key is not None:
            data = self.keyring.seal(data, self._rng)
        self.counters["packets_out"] += 1
        self._out.datagrams.append((address, data))

    # ---------------------------------------------------------------- helpers

    def _add_node(
        self, name: str, address: str, tags: dict[str, str], inc: int, state: str, now: float
    ) -> _Node:
        node = _Node(name, address, tags, inc, state, now)
        self._nodes[name] = node
        idx = bisect.bisect_left(self._names, name)
        if idx == len(self._names) or self._names[idx] != name:
            self._names.insert(idx, name)
        return node

    def _remove_node(self, name: str) -> None:
        self._nodes.pop(name, None)
        self._suspicions.pop(name, None)
        self._suspicion_info.pop(name, None)
        idx = bisect.bisect_left(self._names, name)
        if idx < len(self._names) and self._names[idx] == name:
            del self._names[idx]

    def _member(self, node: _Node) -> Member:
        host, port = parse_address(node.address)
        status = self._status if node.name == self.name else _serf_status(node)
        return Member(node.name, host, port, dict(node.tags), status, node.incarnation)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _event(self, kind: str, message: str, level: str = "INFO", **fields: Any) -> None:
        self._out.events.append(GossipEvent(kind=kind, fields=fields, level=level, message=message))

    def _drop(self, reason: str, src: str, message: str, now: float) -> None:
        self.counters[reason] += 1
        # Count every drop, but log each (reason, source) at most once per probe interval.
        key = (reason, src)
        if now < self._drop_logged.get(key, -math.inf):
            return
        self._drop_logged[key] = now + self.config.t(self.config.probe_interval)
        self._event(
            "packet_dropped", f"{message} from={src}", level="ERROR", reason=reason, src=src
        )


def _meta_of(node: _Node) -> bytes:
    """A member's serf meta (tags encoded), computed on first use."""
    if not node.meta:
        node.meta = wire.encode_tags(node.tags)
    return node.meta


def _serf_status(node: _Node) -> int:
    """serf's status: memberlist's state, turned by a leave intent into leaving / left."""
    status = _MEMBER_STATUS[node.state]
    if node.leaving:
        if status == STATUS_ALIVE:
            return STATUS_LEAVING
        if status == STATUS_FAILED:
            return STATUS_LEFT
    return status


def _advance(deadline: float, period: float, now: float) -> float:
    """Next grid point after ``now``: periodic timers keep their phase, skipping missed beats."""
    if period <= 0:
        return now
    missed = math.floor((now - deadline) / period) + 1
    return deadline + missed * period


def _looks_sealed(data: bytes) -> bool:
    """Version byte 1 is also the indirect-ping type: sealed unless the rest is a msgpack map."""
    if len(data) < MIN_SEALED_SIZE or data[0] != 1:
        return False
    try:
        return not isinstance(wire.unpack(data[1:]), dict)
    except wire.WireError:
        return True


def _parses(data: bytes) -> bool:
    """Whether ``data`` decodes as a plaintext packet (tells plaintext from a foreign key)."""
    try:
        wire.decode_packet(data)
    except wire.WireError:
        return False
    return True
