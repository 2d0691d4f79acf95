"""GossipCore: one member of one pool (LAN or WAN), as a sans-IO state machine.

SWIM membership after hashicorp/memberlist (probe, indirect probe, suspicion, refute, piggybacked
broadcasts, periodic gossip, push-pull sync), serf's member statuses and events on top, and serf's
internal queries for the keyring. See ``consim/gossip/__init__.py`` for the driver contract.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from consim.address import AddressError, parse_address, valid_address
from consim.gossip.config import GossipConfig
from consim.gossip.keyring import (
    ERR_EMPTY_KEYRING,
    ERR_NO_KEYRING,
    MIN_SEALED_SIZE,
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
)


class _Malformed(ValueError):
    pass


def _field(msg: dict[str, Any], key: str, typ: type) -> Any:
    value = msg.get(key)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise _Malformed(key)
    return value


def _address(msg: dict[str, Any], key: str) -> str:
    """A member or reply address from a message: a valid IP:port or the message is malformed
    (checked here, before it is stored or sent to: a bad one would fail later in a timer)."""
    value = msg.get(key)
    if not valid_address(value):
        raise _Malformed(key)
    return value  # type: ignore[return-value]


@dataclass(slots=True)
class _Node:
    name: str
    address: str
    tags: dict[str, str]
    incarnation: int
    state: str
    state_change: float


@dataclass(slots=True)
class _Broadcast:
    msg: dict[str, Any]
    size: int
    order: int
    transmits: int = 0


@dataclass
class _PendingQuery:
    op: str | None  # keyring op, or None for a generic query
    deadline: float
    result: KeyringResponse | QueryResponse
    responders: set[str] = field(default_factory=set)


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
        self._queue: dict[str, _Broadcast] = {}
        self._queue_order = 0
        self._seq = 0
        self._probe: dict[str, Any] | None = None
        self._probe_order: list[str] = []
        self._probe_index = 0
        self._ack_forward: dict[int, tuple[str, int, float]] = {}
        self._seen_queries: dict[tuple[str, int], float] = {}
        self._pending: dict[int, _PendingQuery] = {}
        self._leave_at: float | None = None
        # Joins awaiting a push-pull reply: address -> [retry time, retries left]. memberlist joins
        # over TCP; our push-pull is a datagram, so retrying stands in for TCP's retransmission.
        self._joins: dict[str, list[float]] = {}
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
        self._add_node(name, address, self._tags, self._incarnation, ALIVE, now)
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
            status = self._status if name == me else status_of[node.state]
            out.append(Member(name, host, port, node.tags, status, node.incarnation))
        return out

    def num_alive(self) -> int:
        """serf/memberlist NumMembers: members not dead or left (suspects count)."""
        return sum(1 for n in self._nodes.values() if n.state in (ALIVE, SUSPECT))

    def next_deadline(self) -> float:
        c = self.config
        deadlines = [self._next_probe, self._next_push_pull, self._next_reconnect]
        if self._queue:
            deadlines.append(self._next_gossip)
        if self._probe is not None and not self._probe["acked"] and not self._probe["indirect"]:
            deadlines.append(self._probe["start"] + c.t(c.probe_timeout))
        if self._suspicions:
            deadlines.append(min(self._suspicions.values()))
        if self._pending:
            deadlines.append(min(p.deadline for p in self._pending.values()))
        if self._leave_at is not None:
            deadlines.append(self._leave_at)
        if self._joins:
            deadlines.append(min(j[0] for j in self._joins.values()))
        return math.inf if self._stopped else min(deadlines)

    def ready(self) -> GossipReady:
        out, self._out = self._out, GossipReady()
        return out

    # ---------------------------------------------------------------- operator actions

    def join(self, address: str, now: float) -> None:
        """Start a full state exchange with ``address`` (memberlist Join = push-pull).

        An address that is not a valid IP:port raises :class:`GossipError` with memberlist's
        text (``Failed to resolve <address>: <reason>``) and nothing is sent or retried."""
        try:
            parse_address(address)
        except AddressError as exc:
            raise GossipError(f"Failed to resolve {address}: {exc}") from None
        self._now = max(self._now, now)
        if self._stopped or address == self.address:
            return
        self._send_push_pull(address, join=True, reply=False)
        self._joins[address] = [now + self.config.t(self.config.probe_interval), JOIN_RETRIES]

    def leave(self, now: float) -> None:
        """Graceful leave: status leaving, broadcast our departure, stop after it has spread."""
        self._now = max(self._now, now)
        if self._stopped or self._leave_at is not None:
            return
        self._status = STATUS_LEAVING
        me = self._nodes[self.name]
        self._broadcast(
            self.name, {"t": "dead", "node": self.name, "inc": me.incarnation, "from": self.name}
        )
        # Push it out now rather than waiting for the next gossip round.
        for target in self._random_nodes(self.config.gossip_nodes, self._gossip_ok(now)):
            self._send(self._nodes[target].address, None)
        self._leave_at = now + self.config.t(self.config.leave_propagate_delay)
        self._event("member_leaving", f"EventMemberLeave intent: {self.name}", level="DEBUG")

    def force_leave(self, name: str, prune: bool, now: float) -> None:
        """serf RemoveFailedNode(Prune): a failed member becomes left; prune forgets it."""
        self._now = max(self._now, now)
        node = self._nodes.get(name)
        if node is None:
            raise GossipError(f"No node found with name '{name}'")
        if node.state in (ALIVE, SUSPECT) or name == self.name:
            return  # serf ignores force-leave of a live member; it would refute anyway
        host = parse_address(node.address)[0]
        if node.state == DEAD:
            node.state = LEFT
            node.state_change = now
            self._event(
                "member_left", f"EventMemberLeave (forced): {name} {host}", member=name, addr=host
            )
        self._broadcast(name, {"t": "dead", "node": name, "inc": node.incarnation, "from": name})
        if prune:
            self._remove_node(name)
            self._broadcast(name, {"t": "prune", "node": name})
            self._event(
                "member_reap", f"EventMemberReap (forced): {name} {host}", member=name, addr=host
            )

    def set_tags(self, tags: dict[str, str], now: float) -> None:
        """Change our tags; a higher incarnation carries them to everyone (EventMemberUpdate)."""
        self._now = max(self._now, now)
        self._tags = dict(tags)
        self._incarnation += 1
        me = self._nodes[self.name]
        me.tags = dict(tags)
        me.incarnation = self._incarnation
        self._broadcast_alive(me)
        self._event("member_update", f"EventMemberUpdate: {self.name}", member=self.name)

    def start_keyring_query(self, op: str, key_b64: str | None, now: float) -> int:
        """Run install/use/remove/list across the pool; result arrives in ``ready().query_results``.

        Bad base64 raises :class:`KeyringError` with Go's decoder text before any query is sent
        (as serf does); a wrong key size is reported by every member, as memberlist's AddKey does.
        """
        if op not in KEYRING_QUERIES:
            raise ValueError(f"unknown keyring operation {op!r}")
        payload: dict[str, Any] = {}
        if op != "list":
            if key_b64 is None:
                raise KeyringError("a key is required")
            payload["key"] = go_base64_decode(key_b64)
        self._now = max(self._now, now)
        n = self.num_alive()
        result = KeyringResponse(op=op, num_nodes=n)
        return self._start_query(KEYRING_QUERIES[op], payload, op, result, now)

    def start_query(self, name: str, payload: Any, now: float) -> int:
        """A non-keyring query (only ``_serf_ping`` is answered: every member replies empty)."""
        self._now = max(self._now, now)
        result = QueryResponse(name=name, num_nodes=self.num_alive())
        return self._start_query(name, payload, None, result, now)

    def seed_members(self, members: list[tuple[str, str, dict[str, str], int]], now: float) -> None:
        """Simulation shortcut: learn members as alive without joining (no events, no gossip).

        The harness uses it to build large pools in O(n) instead of n push-pull joins.
        """
        nodes = self._nodes
        for name, address, tags, incarnation in members:
            if name not in nodes:
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
        probe = self._probe
        if (
            probe is not None
            and not probe["acked"]
            and not probe["indirect"]
            and now >= probe["start"] + c.t(c.probe_timeout)
        ):
            self._indirect_probe(now)
        if now >= self._next_probe:
            self._next_probe = _advance(self._next_probe, c.t(c.probe_interval), now)
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
                reason = (
                    "dropped_plaintext"
                    if _decode_packet(payload) is not None
                    else "dropped_decrypt"
                )
                detail = (
                    "plaintext packet while encryption is enabled"
                    if reason == "dropped_plaintext"
                    else str(err)
                )
                self._drop(reason, src_address, f"Decrypt packet failed: {detail}", now)
                return
        msgs = _decode_packet(plain)
        if msgs is None:
            if self.keyring is None and len(payload) >= MIN_SEALED_SIZE and payload[0] == 1:
                self._drop(
                    "dropped_encrypted",
                    src_address,
                    "encrypted packet while encryption is disabled",
                    now,
                )
            else:
                self._drop("dropped_malformed", src_address, "failed to decode packet", now)
            return
        for msg in msgs:
            try:
                self._handle(src_address, msg, now)
            except (_Malformed, AttributeError, KeyError, TypeError, ValueError):
                self._drop(
                    "dropped_malformed", src_address, f"malformed {msg.get('t')!r} message", now
                )

    # ---------------------------------------------------------------- message handling

    def _handle(self, src: str, msg: dict[str, Any], now: float) -> None:
        t = msg["t"]
        if t == "ping":
            if _field(msg, "node", str) != self.name:
                return  # memberlist: ping meant for another node at this address
            self._send(src, {"t": "ack", "seq": _field(msg, "seq", int)})
        elif t == "ack":
            seq = _field(msg, "seq", int)
            if self._probe is not None and self._probe["seq"] == seq:
                self._probe["acked"] = True
            fwd = self._ack_forward.pop(seq, None)
            if fwd is not None:
                self._send(fwd[0], {"t": "ack", "seq": fwd[1]})
        elif t == "preq":
            _address(msg, "ta")  # before anything is remembered for it
            seq = self._next_seq()
            self._ack_forward[seq] = (
                src,
                _field(msg, "seq", int),
                now + self.config.t(self.config.probe_interval),
            )
            self._send(
                _address(msg, "ta"), {"t": "ping", "seq": seq, "node": _field(msg, "node", str)}
            )
        elif t == "alive":
            tags = _field(msg, "tags", dict)
            self._on_alive(
                _field(msg, "node", str),
                _address(msg, "addr"),
                _field(msg, "inc", int),
                tags,
                now,
            )
        elif t == "suspect":
            self._on_suspect(
                _field(msg, "node", str), _field(msg, "inc", int), _field(msg, "from", str), now
            )
        elif t == "dead":
            self._on_dead(
                _field(msg, "node", str), _field(msg, "inc", int), _field(msg, "from", str), now
            )
        elif t == "prune":
            name = _field(msg, "node", str)
            node = self._nodes.get(name)
            if node is not None and node.state in (DEAD, LEFT) and name != self.name:
                self._remove_node(name)
                self._broadcast(name, msg)
        elif t == "pp":
            self._on_push_pull(src, msg, now)
        elif t == "q":
            self._on_query(msg, now)
        elif t == "qr":
            self._on_query_response(msg)
        else:
            raise _Malformed(t)

    def _on_alive(
        self, name: str, address: str, inc: int, tags: dict[str, str], now: float
    ) -> None:
        if name == self.name:
            me = self._nodes[name]
            if inc > me.incarnation or (
                inc == me.incarnation and (address != me.address or tags != me.tags)
            ):
                self._refute(inc, now)
            return
        node = self._nodes.get(name)
        if node is None:
            node = self._add_node(name, address, dict(tags), inc, ALIVE, now)
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
        self._suspicions.pop(name, None)
        self._broadcast_alive(node)
        host = parse_address(address)[0]
        if old_state in (DEAD, LEFT):
            node.state, node.state_change = ALIVE, now
            self._event("member_join", f"EventMemberJoin: {name} {host}", member=name, addr=host)
        elif old_state == SUSPECT:
            node.state, node.state_change = ALIVE, now
            self._event(
                "member_alive", f"{name} is alive again (refuted)", level="DEBUG", member=name
            )
        if old_tags != node.tags and old_state in (ALIVE, SUSPECT):
            self._event("member_update", f"EventMemberUpdate: {name}", member=name)

    def _on_suspect(self, name: str, inc: int, accuser: str, now: float) -> None:
        node = self._nodes.get(name)
        if node is None or inc < node.incarnation:
            return
        if name == self.name:
            if self._leave_at is None:
                self._refute(inc, now)
                self._event(
                    "refute",
                    f"Refuting a suspect message (from: {accuser})",
                    level="WARN",
                    accuser=accuser,
                )
            return
        if node.state != ALIVE:
            return  # already suspect (confirmations are not modelled) or dead/left
        node.incarnation, node.state, node.state_change = inc, SUSPECT, now
        self._suspicions[name] = now + self.config.suspicion_timeout(len(self._nodes))
        self._broadcast(name, {"t": "suspect", "node": name, "inc": inc, "from": accuser})
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
            if self._leave_at is None:
                self._refute(inc, now)
                self._event(
                    "refute",
                    f"Refuting a dead message (from: {accuser})",
                    level="WARN",
                    accuser=accuser,
                )
            return
        node.incarnation, node.state_change = inc, now
        node.state = LEFT if leaving else DEAD
        self._suspicions.pop(name, None)
        self._broadcast(name, {"t": "dead", "node": name, "inc": inc, "from": accuser})
        host = parse_address(node.address)[0]
        if leaving:
            self._event("member_left", f"EventMemberLeave: {name} {host}", member=name, addr=host)
        else:
            self._event(
                "member_failed",
                f"EventMemberFailed: {name} {host}",
                level="INFO",
                member=name,
                addr=host,
            )

    def _on_push_pull(self, src: str, msg: dict[str, Any], now: float) -> None:
        states = _field(msg, "states", list)
        # The whole state is checked before any of it is merged or answered (memberlist fails
        # the exchange as one when it cannot decode it).
        merged = []
        for entry in states:
            if not isinstance(entry, list) or len(entry) != 5:
                raise _Malformed("states")
            name, address, inc, code, tags = entry
            if not (isinstance(name, str) and valid_address(address) and isinstance(inc, int)):
                raise _Malformed("states")
            state = _CODE_STATES.get(code)
            if state is None or not isinstance(tags, dict) or isinstance(inc, bool):
                raise _Malformed("states")
            merged.append((name, address, inc, state, tags))
        if msg.get("reply"):
            self._joins.pop(src, None)
        if not _field(msg, "reply", bool):
            # Answer first (with our view before the merge), as memberlist's TCP exchange does.
            self._send_push_pull(src, join=bool(msg.get("join")), reply=True)
        for name, address, inc, state, tags in merged:
            # memberlist mergeState: remote dead becomes suspect here (verify it ourselves).
            if state == ALIVE:
                self._on_alive(name, address, inc, tags, now)
            elif state in (SUSPECT, DEAD):
                self._on_suspect(name, inc, self.name, now)
            else:
                self._on_dead(name, inc, name, now)

    # ---------------------------------------------------------------- queries

    def _start_query(
        self,
        name: str,
        payload: Any,
        op: str | None,
        result: KeyringResponse | QueryResponse,
        now: float,
    ) -> int:
        qid = self._rng.getrandbits(32)
        while qid in self._pending:
            qid = self._rng.getrandbits(32)
        timeout = self.config.query_timeout(result.num_nodes)
        self._pending[qid] = _PendingQuery(op=op, deadline=now + timeout, result=result)
        msg = {
            "t": "q",
            "id": qid,
            "origin": self.name,
            "oa": self.address,
            "name": name,
            "payload": payload,
            "timeout": timeout,
        }
        self._seen_queries[(self.name, qid)] = now + 2 * timeout
        self._broadcast(f"q:{self.name}:{qid}", msg)
        # serf processes its own query locally too.
        self._record_response(qid, self.name, self._answer_query(name, payload, now))
        return qid

    def _on_query(self, msg: dict[str, Any], now: float) -> None:
        origin, qid = _field(msg, "origin", str), _field(msg, "id", int)
        _address(msg, "oa")  # where the answer goes; checked before the query is rebroadcast
        timeout = float(msg.get("timeout", 0.0))
        if (origin, qid) in self._seen_queries:
            return
        self._seen_queries[(origin, qid)] = now + 2 * max(timeout, 1.0)
        self._broadcast(f"q:{origin}:{qid}", msg)  # serf rebroadcasts queries it has not seen
        answer = self._answer_query(_field(msg, "name", str), msg.get("payload"), now)
        if answer is not None:
            # Responses go straight back to the originator, not through gossip, and carry no
            # piggybacked broadcasts (serf answers with memberlist's raw SendTo).
            self._emit_packet(
                _address(msg, "oa"),
                [{"t": "qr", "id": qid, "from": self.name, "payload": answer}],
            )

    def _on_query_response(self, msg: dict[str, Any]) -> None:
        self._record_response(_field(msg, "id", int), _field(msg, "from", str), msg.get("payload"))

    def _answer_query(self, name: str, payload: Any, now: float) -> Any:
        op = _QUERY_OPS.get(name)
        if op is not None:
            return self._apply_keyring_op(op, payload)
        if name == PING_QUERY:
            return {}
        return None  # user queries have no handler in a Consul server

    def _apply_keyring_op(self, op: str, payload: Any) -> dict[str, Any]:
        received, failed = _QUERY_LOG[op]
        answer: dict[str, Any] = {"result": False, "message": "", "keys": [], "primary": ""}
        kind = _KEY_EVENT.get(op, "key_listed")
        key = payload.get("key") if isinstance(payload, dict) else None
        fields: dict[str, Any] = {"op": op}
        if op != "list":
            if not isinstance(key, bytes):
                raise _Malformed("key")
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

    def _record_response(self, qid: int, node: str, payload: Any) -> None:
        pending = self._pending.get(qid)
        if pending is None or node in pending.responders or payload is None:
            return
        pending.responders.add(node)
        result = pending.result
        if isinstance(result, QueryResponse):
            result.responses[node] = payload
            done = result.num_resp >= result.num_nodes
        else:
            # serf keymanager streamKeyResp
            result.num_resp += 1
            if not isinstance(payload, dict):
                result.messages[node] = f"Failed to decode key query response: {payload!r}"
                result.num_err += 1
            else:
                message = str(payload.get("message", ""))
                if not payload.get("result"):
                    result.messages[node] = message
                    result.num_err += 1
                elif message:
                    result.messages[node] = message
                for key in payload.get("keys") or []:
                    result.keys[key] = result.keys.get(key, 0) + 1
                primary = payload.get("primary")
                if primary:
                    result.primary_keys[primary] = result.primary_keys.get(primary, 0) + 1
            done = result.num_resp >= result.num_nodes
        if done:
            self._finish_query(qid)

    def _finish_query(self, qid: int) -> None:
        pending = self._pending.pop(qid)
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
        if probe is not None and not probe["acked"]:
            node = self._nodes.get(probe["target"])
            if node is not None and node.state == ALIVE and node.incarnation == probe["inc"]:
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
                }
                self._send(node.address, {"t": "ping", "seq": seq, "node": name})
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
            self._send(
                self._nodes[helper].address,
                {"t": "preq", "seq": probe["seq"], "node": target.name, "ta": target.address},
            )

    def _suspicion_expired(self, name: str, now: float) -> None:
        self._suspicions.pop(name, None)
        node = self._nodes.get(name)
        if node is None or node.state != SUSPECT:
            return
        self._event(
            "suspect_timeout",
            f"Marking {name} as failed, suspect timeout reached (0 peer confirmations)",
            member=name,
        )
        self._on_dead(name, node.incarnation, self.name, now)

    def _refute(self, accused_inc: int, now: float) -> None:
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

    def _expire_bookkeeping(self, now: float) -> None:
        for seq in [s for s, f in self._ack_forward.items() if f[2] <= now]:
            del self._ack_forward[seq]
        for key in [k for k, exp in self._seen_queries.items() if exp <= now]:
            del self._seen_queries[key]

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
            self._send(self._nodes[target].address, None)

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

    def _broadcast(self, key: str, msg: dict[str, Any]) -> None:
        if not self._queue and self._next_gossip <= self._now:
            # The gossip timer idles while there is nothing to send (next_deadline skips it);
            # memberlist would gossip at its next beat, not now, so move to that beat.
            period = self.config.t(self.config.gossip_interval)
            self._next_gossip = _advance(self._next_gossip, period, self._now)
        # A newer broadcast about the same node replaces the older one (memberlist invalidation).
        self._queue_order += 1
        self._queue.pop(key, None)
        self._queue[key] = _Broadcast(msg=msg, size=len(_pack(msg)), order=self._queue_order)

    def _broadcast_alive(self, node: _Node) -> None:
        self._broadcast(
            node.name,
            {
                "t": "alive",
                "node": node.name,
                "inc": node.incarnation,
                "addr": node.address,
                "tags": node.tags,
            },
        )

    def _take_broadcasts(self, budget: int) -> list[dict[str, Any]]:
        if not self._queue:
            return []
        limit = self.config.retransmit_limit(len(self._nodes))
        # Fewest transmissions first, newest first among equals (memberlist's queue order).
        items = sorted(self._queue.items(), key=lambda kv: (kv[1].transmits, -kv[1].order))
        out: list[dict[str, Any]] = []
        for key, item in items:
            if item.size > budget:
                continue
            budget -= item.size
            out.append(item.msg)
            item.transmits += 1
            if item.transmits >= limit:
                del self._queue[key]
        return out

    def _send(self, address: str, msg: dict[str, Any] | None) -> None:
        """Send ``msg`` (or only broadcasts when None) with piggybacked broadcasts."""
        msgs = [] if msg is None else [msg]
        budget = self.config.packet_budget - (len(_pack(msg)) if msg is not None else 0)
        msgs.extend(self._take_broadcasts(budget))
        if msgs:
            self._emit_packet(address, msgs)

    def _send_push_pull(self, address: str, *, join: bool, reply: bool) -> None:
        states = []
        for name in self._names:
            node = self._nodes[name]
            states.append(
                [name, node.address, node.incarnation, _STATE_CODES[node.state], node.tags]
            )
        self._emit_packet(address, [{"t": "pp", "join": join, "reply": reply, "states": states}])

    def _emit_packet(self, address: str, msgs: list[dict[str, Any]]) -> None:
        data = _pack(msgs)
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
        idx = bisect.bisect_left(self._names, name)
        if idx < len(self._names) and self._names[idx] == name:
            del self._names[idx]

    def _member(self, node: _Node) -> Member:
        host, port = parse_address(node.address)
        if node.name == self.name:
            status = self._status
        else:
            status = {
                ALIVE: STATUS_ALIVE,
                SUSPECT: STATUS_ALIVE,
                DEAD: STATUS_FAILED,
                LEFT: STATUS_LEFT,
            }[node.state]
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


def _advance(deadline: float, period: float, now: float) -> float:
    """Next grid point after ``now``: periodic timers keep their phase, skipping missed beats."""
    if period <= 0:
        return now
    missed = math.floor((now - deadline) / period) + 1
    return deadline + missed * period


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _decode_packet(data: bytes) -> list[dict[str, Any]] | None:
    """A packet is a msgpack array of message maps with a string ``t``; anything else is None."""
    try:
        msgs = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:  # msgpack raises several unrelated types on garbage
        return None
    if not isinstance(msgs, list) or not msgs:
        return None
    for msg in msgs:
        if not isinstance(msg, dict) or not isinstance(msg.get("t"), str):
            return None
    return msgs
