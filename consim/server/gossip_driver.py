"""Drives one sans-IO ``GossipCore`` (a server's LAN or WAN pool) from trio over the Network.

Like the Raft driver: datagrams in -> ``core.receive``; timer -> ``core.tick``; after each call the
``ready()`` batch is flushed: datagrams sent, events logged, keyring persisted after key events,
query results handed to whoever awaits them.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, Protocol

import trio

from consim.address import AddressError, parse_address
from consim.events import EventLog
from consim.golike import multierror
from consim.gossip import GossipConfig, GossipCore, Keyring, consul_server_tags, wire
from consim.gossip.keyring import KeyringError
from consim.gossip.types import GossipError, GossipEvent, GossipReady, KeyringResponse, Member
from consim.net.network import Network, RpcError, Timer
from consim.spec import ServerSpec


class PoolHost(Protocol):
    """The server a gossip pool belongs to (``ServerNode``)."""

    spec: ServerSpec
    name: str
    datacenter: str
    node_id: str
    raft_protocol: int
    net: Network
    events: EventLog
    running: bool
    paused: bool
    gossip_tags: dict[str, str]

    @property
    def node_dir(self) -> Path | None: ...

    async def wait_resumed(self) -> None:
        """Return once the server is not paused."""

    def contained_error(self, where: str, exc: BaseException, subsystem: str = "agent") -> None:
        """Count and log an error this server survives, and carry on."""


KEY_EVENTS = frozenset({"key_installed", "key_used", "key_removed"})


class GossipPool:
    """One serf pool of one server. ``wan`` pools name members ``node.dc``."""

    def __init__(
        self,
        node: PoolHost,
        *,
        wan: bool,
        config: GossipConfig,
        initial_key: str | None,
        rng: random.Random,
        on_event: Callable[[GossipPool, GossipEvent], None] | None = None,
    ) -> None:
        self.node = node
        self.wan = wan
        self.segment = "wan" if wan else "lan"
        self.name = f"{node.name}.{node.datacenter}" if wan else node.name
        self.address = node.spec.serf_wan_address if wan else node.spec.serf_lan_address
        self.config = config
        self.initial_key = initial_key
        self.rng = rng
        self.on_event = on_event
        self.core: GossipCore | None = None
        # Without a data dir the keyring lives here, so a crash keeps what was "on disk".
        self._keyring_memory: str | None = None
        self._timer: Timer | None = None
        # Datagrams handed to the network as awaitables (while paused) and not yet handled.
        self._held = [0]
        self._queries: dict[int, tuple[trio.Event, list[Any]]] = {}
        # Joins awaiting their push-pull outcome: join id -> (done, [error or None]).
        self._join_waiters: dict[int, tuple[trio.Event, list[str | None]]] = {}

    # ---- keyring files -----------------------------------------------------------------------
    @property
    def keyring_path(self) -> Path | None:
        if self.node.node_dir is None:
            return None
        return self.node.node_dir / "serf" / ("remote.keyring" if self.wan else "local.keyring")

    def _load_keyring(self) -> Keyring | None:
        path = self.keyring_path
        text = self._keyring_memory
        if path is not None and path.exists():
            text = path.read_text()
        if text is not None:
            return Keyring.from_json(text)
        if self.initial_key is None:
            return None
        keyring = Keyring.from_b64([self.initial_key])
        self._persist(keyring)
        return keyring

    def _persist(self, keyring: Keyring | None) -> None:
        if keyring is None:
            return
        text = keyring.to_json()
        self._keyring_memory = text
        path = self.keyring_path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)

    # ---- running -----------------------------------------------------------------------------
    async def run(
        self, join: list[str], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        spec = self.node.spec
        tags = consul_server_tags(
            dc=spec.datacenter,
            node_id=self.node.node_id,
            # consim agent adds Consul's "expect" / "bootstrap" tags (node.gossip_tags).
            extra={"raft_vsn": str(self.node.raft_protocol), **self.node.gossip_tags},
        )
        now = trio.current_time()
        # This incarnation's pending queries: a crashed incarnation unwinding late must not fail
        # (or drop) the queries of the one restarted after it.
        queries: dict[int, tuple[trio.Event, list[Any]]] = {}
        self._queries = queries
        joins: dict[int, tuple[trio.Event, list[str | None]]] = {}
        self._join_waiters = joins
        self._held = [0]
        self.core = GossipCore(
            self.name,
            self.address,
            tags=tags,
            config=self.config,
            rng=self.rng,
            now=now,
            keyring=self._load_keyring(),
        )
        # The gossip timer lives on the network (a heap entry in virtual time, not a task).
        timer = self._timer = self.node.net.timer(
            functools.partial(self._on_timer, self.core), self.address
        )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.node.net.serve_datagrams, self.address, self._on_datagram)
                # memberlist's TCP listener on the same port: push-pull and the fallback probe.
                await nursery.start(
                    self.node.net.serve_streams, self.address, self._on_stream, _frame_length
                )
                for address in join:
                    if address != self.address:
                        self.core.join(address, now)
                self._flush()  # arms the timer
                task_status.started()
        finally:
            timer.disarm()
            if self._timer is timer:  # a restart may already have armed the next incarnation's
                self._timer = None  # nothing (resume, a late flush) may re-arm a dead pool's timer
            for done, box in queries.values():
                box.append(None)
                done.set()
            queries.clear()
            for done, error in joins.values():
                error.append("server is not running")
                done.set()
            joins.clear()

    def _on_timer(self, core: GossipCore) -> None:
        if self.core is not core or self.node.paused:
            return  # another incarnation's timer, or paused: resume() re-arms it
        try:
            core.tick(trio.current_time())
            self._flush()
        except Exception as exc:
            self._contain("gossip timer", exc)

    def _contain(self, where: str, exc: BaseException) -> None:
        """Gossip is self-healing (the next probe, gossip or push-pull repairs a lost round), so
        the pool logs the failure and goes on; the timer is re-armed, else the pool would stop."""
        self.node.contained_error(f"{self.segment} {where}", exc, self._subsystem)
        core, timer = self.core, self._timer
        if core is not None and timer is not None:
            now = trio.current_time()
            retry = now + core.config.t(core.config.probe_interval)
            try:
                deadline = core.next_deadline()
            except Exception:
                deadline = retry
            timer.arm(max(min(deadline, retry), now))

    @property
    def _subsystem(self) -> str:
        return f"agent.server.serf.{self.segment}"

    def resume(self) -> None:
        """The server was resumed: run the tick held while it was paused (if the pool still runs:
        a server killed while paused stays dead)."""
        if self.core is not None and self._timer is not None and self.node.running:
            self._timer.arm(trio.current_time())

    def _on_datagram(self, src: str, payload: bytes) -> Awaitable[None] | None:
        """Called synchronously by the network; while paused datagrams wait, in order."""
        held = self._held
        if self.node.paused or held[0]:
            held[0] += 1
            return self._held_datagram(held, src, payload)
        self._deliver(src, payload)
        return None

    def _on_stream(self, src: str, data: bytes) -> bytes | None:
        """One incoming stream exchange; a paused server does not answer (the dialer retries)."""
        core = self.core
        if core is None or self.node.paused:
            return None
        try:
            reply = core.receive_stream(src, data, trio.current_time())
            self._flush()
        except Exception as exc:
            self._contain("stream handler", exc)
            return None
        return reply

    def _on_stream_reply(self, core: GossipCore, dst: str, data: bytes) -> None:
        if self.core is not core or self.node.paused:
            return
        try:
            core.receive_stream_reply(dst, data, trio.current_time())
            self._flush()
        except Exception as exc:
            self._contain("stream reply handler", exc)

    def _on_stream_error(self, core: GossipCore, dst: str, reason: str) -> None:
        if self.core is not core:
            return
        try:
            core.stream_failed(dst, reason, trio.current_time())
            self._flush()
        except Exception as exc:
            self._contain("stream error handler", exc)

    def _deliver(self, src: str, payload: bytes) -> None:
        if self.core is not None:
            try:
                self.core.receive(src, payload, trio.current_time())
                self._flush()
            except Exception as exc:
                self._contain("datagram handler", exc)

    async def _held_datagram(self, held: list[int], src: str, payload: bytes) -> None:
        try:
            if self.node.paused:
                await self.node.wait_resumed()
            self._deliver(src, payload)
        finally:
            held[0] -= 1

    def _flush(self) -> None:
        core = self.core
        assert core is not None
        ready = core.ready()
        try:
            self._send_and_emit(core, ready)
        finally:
            # Whatever failed above (it is contained by the caller), the joins and queries this
            # batch finished are answered: their cores have forgotten them, nothing would later.
            for jid, error in ready.join_results:
                join_waiter = self._join_waiters.pop(jid, None)
                if join_waiter is not None:
                    join_waiter[1].append(error)
                    join_waiter[0].set()
            for qid, result in ready.query_results:
                waiter = self._queries.pop(qid, None)
                if waiter is not None:
                    waiter[1].append(result)
                    waiter[0].set()
            # Only ever moves the timer earlier (the common datagram leaves the deadline as is).
            if self._timer is not None:
                self._timer.arm(core.next_deadline())

    def _send_and_emit(self, core: GossipCore, ready: GossipReady) -> None:
        send = self.node.net.send_datagram
        for dst, data in ready.datagrams:
            send(self.address, dst, data)
        for dst, data in ready.streams:
            self.node.net.send_stream(
                self.address,
                dst,
                data,
                _frame_length,
                functools.partial(self._on_stream_reply, core, dst),
                functools.partial(self._on_stream_error, core, dst),
            )
        persist = False
        for event in ready.events:
            self.node.events.emit(
                self.node.name,
                event.kind,
                {"pool": self.segment, **event.fields},
                level=event.level,
                subsystem=f"agent.server.serf.{self.segment}",
                message=event.message,
            )
            if event.kind in KEY_EVENTS:
                persist = True
            if self.on_event is not None:
                self.on_event(self, event)
        if persist:
            self._persist(core.keyring)

    # ---- operations --------------------------------------------------------------------------
    def members(self) -> list[Member]:
        return [] if self.core is None else self.core.members()

    async def keyring_query(
        self, op: str, key: str | None, relay_factor: int = 0
    ) -> KeyringResponse:
        core = self._running_core()
        try:
            qid = core.start_keyring_query(op, key, trio.current_time(), relay_factor)
        except KeyringError as exc:
            # serf's handleKeyRequest returns a bad key's decode error with an empty response,
            # and Consul reports it as this pool's error (one line per pool in the 500).
            return KeyringResponse(op=op, num_nodes=0, error=str(exc))
        except ValueError as exc:
            raise RpcError(str(exc)) from None
        done = trio.Event()
        box: list[Any] = []
        self._queries[qid] = (done, box)
        self._flush()
        await done.wait()
        if box[0] is None:
            raise RpcError("server is not running")
        return box[0]

    def force_leave(self, name: str, prune: bool) -> None:
        try:
            self._running_core().force_leave(name, prune, trio.current_time())
        except GossipError as exc:
            raise RpcError(str(exc)) from None
        self._flush()

    async def join(self, address: str, given: str | None = None) -> None:
        """serf Join of one address (``given``: as the operator typed it, before the default port
        was added), as Consul's agent JoinLAN/JoinWAN run it: returns once the push-pull answer
        has arrived and merged; otherwise raises memberlist's error wrapped the way Consul's
        /v1/agent/join returns it (go-multierror). Both outcomes are logged as the agent does."""
        core = self._running_core()
        shown = address if given is None else given
        pool = "WAN" if self.wan else "LAN"
        try:
            parse_address(address)
        except AddressError as exc:
            # memberlist names the address as given, not the one ensurePort made of it.
            self._join_failed(shown, f"Failed to resolve {shown}: {exc}")
        jid = core.join(address, trio.current_time(), once=True)
        done = trio.Event()
        box: list[str | None] = []
        self._join_waiters[jid] = (done, box)
        self._flush()
        await done.wait()
        if box[0] is not None:
            self._join_failed(shown, box[0])
        self.node.events.emit(
            self.node.name,
            "joined",
            {"pool": self.segment, "number_of_nodes": 1},
            subsystem="agent",
            message=f"({pool}) joined",
        )

    def start_join(self, address: str) -> None:
        """Start a join without waiting for it (resent a few times until answered): what a
        starting server does with its peers, and Consul's WAN flood of its LAN servers."""
        try:
            self._running_core().join(address, trio.current_time())
        except GossipError as exc:
            raise RpcError(str(exc)) from None
        self._flush()

    def _join_failed(self, shown: str, error_text: str) -> NoReturn:
        error = multierror([error_text])
        pool = "WAN" if self.wan else "LAN"
        self.node.events.emit(
            self.node.name,
            "join_failed",
            {"pool": self.segment, "address": shown, "number_of_nodes": 0, "error": error},
            level="WARN",
            subsystem="agent",
            message=f"({pool}) couldn't join",
        )
        raise RpcError(error)

    def leave(self) -> None:
        self._running_core().leave(trio.current_time())
        self._flush()

    def user_event(self, name: str, payload: bytes) -> None:
        """serf's UserEvent: gossip ``name`` with ``payload`` (delivered here too)."""
        core = self._running_core()
        core.user_event(name, payload, trio.current_time())
        self._flush()

    def _running_core(self) -> GossipCore:
        if self.core is None or not self.node.running:
            raise RpcError("server is not running")
        return self.core


def _frame_length(buf: bytes) -> int | None:
    try:
        return wire.stream_length(buf)
    except wire.WireError as exc:
        raise ValueError(str(exc)) from None


def keyring_entry(response: KeyringResponse, *, wan: bool, datacenter: str) -> dict[str, Any]:
    """One element of the /v1/operator/keyring list (Consul's KeyringResponse JSON)."""
    entry: dict[str, Any] = {
        "WAN": wan,
        "Datacenter": datacenter,
        "Segment": "",
        "Keys": dict(response.keys),
        "PrimaryKeys": dict(response.primary_keys),
        "NumNodes": response.num_nodes,
        "Error": response.error or "",
    }
    if response.messages:
        entry["Messages"] = dict(sorted(response.messages.items()))
    return entry
