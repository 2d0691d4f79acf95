"""Raft between servers on byte 1 of the server port, as hashicorp/raft 1.1.2's NetworkTransport.

The core speaks in one-way messages; the wire in request/response pairs on a connection
(``consim.raft.hashicorp_wire``). This module joins the two:

- Requests the core sends (AppendEntries, RequestVote, TimeoutNow; pre-vote as rpc type 4 when
  the cluster has it on) go on one connection per peer, pipelined: responses come back in order
  and each is matched to its request, which supplies what the wire lacks (the sequence number,
  the entries' extent, whether it was a pre-vote). A lost connection reports every unanswered
  request to the core (``send_failed``) and the next request dials again.
- InstallSnapshot: hashicorp streams a snapshot in one request (header, then Size raw bytes) on a
  connection of its own. The core's first chunk opens it and writes the header; each chunk's
  bytes follow, and the chunk is acknowledged to the core when written; the response to the
  whole request answers the last chunk.
- Incoming requests are stepped into the core with the connection as the place its answer goes:
  the core's response to that sender, in that same step, is written back. A request the core
  ignores (a stranger's vote request, say) still gets hashicorp's refusal, because a hashicorp
  peer waits for every answer. An incoming snapshot is handed to the core in the chunks it
  arrives in; the answer to the last one is the response.
- Servers are named by address on the wire; the transport maps an address to the server id of
  the latest configuration that has it (else the address itself is the id).
- While the server is paused, everything inbound waits, in order, and runs on resume.

Robustness: a connection whose bytes are not this protocol (unknown rpc type, undecodable or
wrong-shaped msgpack, a request over the size limit, a request not complete within the read
timeout) is closed and counted in ``counters["raft_wire_dropped"]`` (and ``raft_wire_stalled``
for the timeout); the decoder never holds more than the size limit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import trio

from consim.net.network import Network, Timer
from consim.net.portmux import RPC_RAFT, ConnHandler, MuxConn
from consim.raft import hashicorp_wire as hw
from consim.raft import messages as rm
from consim.raft.core import Outbound, RaftCore
from consim.raft.types import MalformedMessage, SnapshotMeta

MAX_MESSAGE = 8 * 1024 * 1024  # as the network's frame limit
MAX_PIPELINE = 1024  # unanswered requests on one connection before it is given up
MAX_SNAPSHOT = 1 << 30  # the largest snapshot a peer may announce (it arrives as it streams)
READ_TIMEOUT = 10.0  # Consul's raft transport timeout


class TransportHost(Protocol):
    address: str
    paused: bool
    counters: dict[str, int]

    def raft_core(self) -> RaftCore | None:
        """The running core, or None (not running)."""

    def step_raft(self, src_id: str, message: rm.Message) -> None:
        """Step one message into the core and drain its Ready."""

    def raft_send_failed(self, to_id: str, message: rm.Message) -> None: ...


class RaftTransport:
    def __init__(
        self,
        host: TransportHost,
        net: Network,
        *,
        pre_vote: bool = False,
        read_timeout: float = READ_TIMEOUT,
        max_message: int = MAX_MESSAGE,
    ) -> None:
        self.host = host
        self.net = net
        self.pre_vote = pre_vote
        self.read_timeout = read_timeout
        self.max_message = max_message
        self.peers: dict[str, _Client] = {}  # peer address -> pipelined connection
        self.snapshots: dict[str, _SnapshotSend] = {}  # peer address -> transfer in progress
        self.accepted: set[_Server] = set()
        self._answering: _Answer | None = None
        self._held: deque[Callable[[], None]] = deque()
        self._later: list[Callable[[], None]] = []
        self._timer: Timer | None = None
        self._resume_timer: Timer | None = None
        self._after_resume: Callable[[], None] | None = None
        # The last AppendEntries batch encoded: (first index, last index, last term), bytes.
        self._entries_key: tuple[int, int, int] | None = None
        self._entries_encoded = b""

    # ---- lifetime --------------------------------------------------------------------------
    def start(self) -> None:
        self.net.port_mux(self.host.address).register(RPC_RAFT, self._accept)
        self._timer = self.net.timer(self._run_later, self.host.address)
        self._resume_timer = self.net.timer(self._on_resume_timer, self.host.address)

    def stop(self) -> None:
        """The incarnation ended: every connection closes, nothing more reaches the core."""
        mux = self.net.port_mux(self.host.address)
        if RPC_RAFT in mux:
            mux.unregister(RPC_RAFT)
        for client in list(self.peers.values()):
            client.conn.close()
        for send in list(self.snapshots.values()):
            send.conn.close()
        for server in list(self.accepted):
            server.conn.close()
        self.peers.clear()
        self.snapshots.clear()
        self.accepted.clear()
        self._held.clear()
        self._later.clear()
        if self._timer is not None:
            self._timer.disarm()
        if self._resume_timer is not None:
            self._resume_timer.disarm()
        self._after_resume = None

    def count(self, name: str) -> None:
        counters = self.host.counters
        counters[name] = counters.get(name, 0) + 1

    # ---- inbound ordering ------------------------------------------------------------------
    def inbound(self, work: Callable[[], None]) -> None:
        """Run ``work`` (it steps the core) now, or after what is held while paused."""
        if self.host.paused or self._held:
            self._held.append(work)
            return
        work()

    def resume(self) -> None:
        """The server resumed: run what arrived meanwhile, in order."""
        held = self._held
        while held and not self.host.paused:
            held.popleft()()

    def resume_soon(self, then: Callable[[], None]) -> None:
        """The server resumed (SIGCONT): what arrived meanwhile runs, in order, from a timer at
        this instant, then ``then`` (the held Raft tick). Tasks that waited for the resume (HTTP
        requests queued on a paused server) get their turn alongside, as goroutines do after
        SIGCONT: a paused leader may answer a queued default-mode read before it learns of
        the new term, Consul's documented stale-read window."""
        self._after_resume = then
        if self._resume_timer is not None:
            self._resume_timer.arm(trio.current_time())

    def _on_resume_timer(self) -> None:
        if self.host.paused:
            return  # paused again: the next resume arms it
        self.resume()
        then, self._after_resume = self._after_resume, None
        if then is not None and not self._held:
            then()

    def defer(self, work: Callable[[], None]) -> None:
        """Run ``work`` from a timer, never inside the core's Ready loop that asked for it."""
        self._later.append(work)
        if self._timer is not None:
            self._timer.arm(trio.current_time())

    def _run_later(self) -> None:
        work, self._later = self._later, []
        for w in work:
            self.inbound(w)

    # ---- naming ----------------------------------------------------------------------------
    def id_of(self, address: str) -> str:
        core = self.host.raft_core()
        if core is not None:
            for conf in (core.latest_configuration, core.configuration):
                server = conf.by_address(address)
                if server is not None:
                    return server.id
        return address

    # ---- outbound --------------------------------------------------------------------------
    def send(self, out: Outbound) -> None:
        """One message from the core's Ready (raises if it cannot be encoded: the driver logs
        it and tells the core)."""
        msg = out.message
        if isinstance(
            msg,
            rm.AppendEntriesResponse
            | rm.RequestVoteResponse
            | rm.InstallSnapshotResponse
            | rm.TimeoutNowResponse,
        ):
            self._answer(out.to_id, msg)
            return
        if isinstance(msg, rm.InstallSnapshot):
            self._send_chunk(out.to_id, out.to_address, msg)
            return
        if isinstance(msg, rm.AppendEntries):
            entries = msg.entries
            encoded = None
            if entries:
                # Followers in step get the same batch: encode it once. Within one leader term
                # the log only appends, so the message's term with the batch's indexes is exact.
                key = (msg.term, entries[0].index, entries[-1].index, entries[-1].term)
                if key == self._entries_key:
                    encoded = self._entries_encoded
                else:
                    encoded = self._entries_encoded = hw.encode_entries(entries)
                    self._entries_key = key
            data = hw.append_entries_request(
                msg.term,
                self.host.address,
                msg.prev_log_index,
                msg.prev_log_term,
                entries,
                msg.leader_commit,
                encoded_entries=encoded,
            )
        elif isinstance(msg, rm.RequestVote):
            if msg.pre_vote:
                data = hw.request_pre_vote_request(
                    msg.term, self.host.address, msg.last_log_index, msg.last_log_term
                )
            else:
                data = hw.request_vote_request(
                    msg.term,
                    self.host.address,
                    msg.last_log_index,
                    msg.last_log_term,
                    msg.leadership_transfer,
                )
        elif isinstance(msg, rm.TimeoutNow):
            data = hw.timeout_now_request()
        else:
            raise TypeError(f"not a raft request: {type(msg).__name__}")
        if len(data) > self.max_message:
            raise ValueError(f"message of {len(data)} bytes exceeds limit {self.max_message}")
        client = self.peers.get(out.to_address)
        if client is None or client.conn.closed:
            client = _Client(self, out.to_address)
            client.conn = self.net.dial(
                self.host.address, out.to_address, RPC_RAFT, lambda c: client
            )
            self.peers[out.to_address] = client
        if len(client.pending) >= MAX_PIPELINE:
            self.count("raft_pipeline_full")
            client.conn.close()
            raise ConnectionError(f"{MAX_PIPELINE} requests unanswered by {out.to_address}")
        client.pending.append((out.to_id, msg))
        client.conn.write(data)

    def _send_chunk(self, to_id: str, to_address: str, msg: rm.InstallSnapshot) -> None:
        send = self.snapshots.get(to_address)
        if msg.offset == 0:
            if send is not None:
                send.conn.close()
            send = _SnapshotSend(self, to_id, to_address, msg)
            send.conn = self.net.dial(self.host.address, to_address, RPC_RAFT, lambda c: send)
            self.snapshots[to_address] = send
            meta = msg.meta
            send.conn.write(
                hw.install_snapshot_request(
                    msg.term,
                    self.host.address,
                    meta.index,
                    meta.term,
                    meta.configuration,
                    meta.configuration_index,
                    msg.size,
                )
            )
        elif (
            send is None or send.conn.closed or send.written != msg.offset or send.meta != msg.meta
        ):
            # The stream cannot rewind: start the transfer over.
            if send is not None:
                send.conn.close()
            self.snapshots.pop(to_address, None)
            reply = rm.InstallSnapshotResponse(msg.term, False, msg.meta.index, 0, False)
            self.defer(lambda: self.host.step_raft(to_id, reply))
            return
        if msg.data:
            send.conn.write(msg.data)
        send.written = msg.offset + len(msg.data)
        if not msg.done:
            ack = rm.InstallSnapshotResponse(msg.term, True, msg.meta.index, send.written, False)
            self.defer(lambda: self.host.step_raft(to_id, ack))

    # ---- answering incoming requests --------------------------------------------------------
    def _answer(self, to_id: str, msg: rm.Message) -> None:
        answering = self._answering
        if answering is None or answering.src_id != to_id or not isinstance(msg, answering.kind):
            self.count("raft_unanswerable")
            return
        answering.answer(msg)

    def step_request(self, answer: _Answer, src_id: str, msg: rm.Message) -> None:
        """Step an incoming request with ``answer`` as where its response goes."""
        outer, self._answering = self._answering, answer
        try:
            self.host.step_raft(src_id, msg)
        finally:
            self._answering = outer

    def _accept(self, conn: MuxConn) -> ConnHandler:
        server = _Server(self, conn)
        self.accepted.add(server)
        return server


class _Answer:
    """Where the response to one incoming request goes."""

    __slots__ = ("kind", "src_id", "answered", "on_answer")

    def __init__(self, kind: type, src_id: str, on_answer: Callable[[Any], None]) -> None:
        self.kind = kind
        self.src_id = src_id
        self.answered = False
        self.on_answer = on_answer

    def answer(self, msg: Any) -> None:
        if self.answered:
            return
        self.answered = True
        self.on_answer(msg)


class _Client:
    """The dialing end of the pipelined connection to one peer."""

    def __init__(self, transport: RaftTransport, address: str) -> None:
        self.t = transport
        self.address = address
        self.conn: MuxConn = None  # type: ignore[assignment]  # set right after dialing
        self.reader = hw.ResponseReader(transport.max_message)
        self.pending: deque[tuple[str, rm.Message]] = deque()

    def data_received(self, data: bytes) -> None:
        t = self.t
        try:
            self.reader.feed(data)
            for error, body in self.reader.responses():
                if not self.pending:
                    raise MalformedMessage("a response nobody asked for")
                to_id, request = self.pending.popleft()
                if error:
                    t.count("raft_peer_errors")
                    t.defer(lambda to_id=to_id, r=request: t.host.raft_send_failed(to_id, r))
                    continue
                reply = _response_for(request, hw.check_header(body))
                t.inbound(lambda to_id=to_id, reply=reply: t.host.step_raft(to_id, reply))
        except MalformedMessage:
            t.count("raft_wire_dropped")
            self.conn.close()

    def connection_lost(self) -> None:
        t = self.t
        if t.peers.get(self.address) is self:
            del t.peers[self.address]
        pending, self.pending = self.pending, deque()
        for to_id, request in pending:
            t.inbound(lambda to_id=to_id, r=request: t.host.raft_send_failed(to_id, r))


def _response_for(request: rm.Message, body: dict[bytes, Any]) -> rm.Message:
    """The core's view of a hashicorp response, completed from the request it answers."""
    term = hw.uint(body, b"Term")
    if isinstance(request, rm.AppendEntries):
        if hw.boolean(body, b"Success"):
            last = request.prev_log_index + len(request.entries)
            return rm.AppendEntriesResponse(term, True, last, 0, request.seq)
        last_log = hw.uint(body, b"LastLog")
        # hashicorp's back-off: nextIndex = max(min(nextIndex-1, LastLog+1), 1)
        hint = max(1, min(request.prev_log_index, last_log + 1))
        return rm.AppendEntriesResponse(term, False, last_log, hint, request.seq)
    if isinstance(request, rm.RequestVote):
        return rm.RequestVoteResponse(term, hw.boolean(body, b"Granted"), request.pre_vote)
    if isinstance(request, rm.TimeoutNow):
        return rm.TimeoutNowResponse(request.term, True)
    raise MalformedMessage(f"no response expected for {type(request).__name__}")


class _SnapshotSend:
    """The dialing end of one InstallSnapshot transfer."""

    def __init__(
        self, transport: RaftTransport, to_id: str, address: str, first: rm.InstallSnapshot
    ):
        self.t = transport
        self.to_id = to_id
        self.address = address
        self.meta: SnapshotMeta = first.meta
        self.size = first.size
        self.term = first.term
        self.written = 0
        self.answered = False
        self.conn: MuxConn = None  # type: ignore[assignment]
        self.reader = hw.ResponseReader(transport.max_message)

    def data_received(self, data: bytes) -> None:
        t = self.t
        try:
            self.reader.feed(data)
            for error, body in self.reader.responses():
                if self.answered:
                    raise MalformedMessage("a second snapshot response")
                self.answered = True
                ok = not error and hw.boolean(hw.check_header(body), b"Success")
                term = hw.uint(body, b"Term") if not error else self.term
                reply = rm.InstallSnapshotResponse(
                    term, ok, self.meta.index, self.size if ok else 0, True
                )
                t.inbound(lambda reply=reply: t.host.step_raft(self.to_id, reply))
                self.conn.close()
        except MalformedMessage:
            t.count("raft_wire_dropped")
            self.conn.close()

    def connection_lost(self) -> None:
        t = self.t
        if t.snapshots.get(self.address) is self:
            del t.snapshots[self.address]
        if not self.answered:
            self.answered = True
            first = rm.InstallSnapshot(self.term, "", "", self.meta, b"", 0, self.size, False)
            t.inbound(lambda: t.host.raft_send_failed(self.to_id, first))


class _Server:
    """The accepting end of one connection: requests in, responses out, in order."""

    def __init__(self, transport: RaftTransport, conn: MuxConn) -> None:
        self.t = transport
        self.conn = conn
        self.reader = hw.RequestReader(transport.max_message)
        self._snapshot: _SnapshotReceive | None = None
        self._timer: Timer | None = None
        self._messages = 0  # requests completed (the stall timer checks it moved)

    def data_received(self, data: bytes) -> None:
        self.t.inbound(lambda: self._feed(data))

    def _feed(self, data: bytes) -> None:
        t = self.t
        if self.conn.closed:
            return
        try:
            self.reader.feed(data)
            for rpc_type, body in self.reader.events():
                if rpc_type == hw.RPC_INSTALL_SNAPSHOT and isinstance(body, bytes):
                    self._snapshot_data(body)
                else:
                    self._messages += 1
                    self._request(rpc_type, body)
                if self.conn.closed:
                    return
        except MalformedMessage:
            t.count("raft_wire_dropped")
            self.conn.close()
            return
        if self.reader.in_message:
            self._arm_stall()

    def _arm_stall(self) -> None:
        t = self.t
        if self._timer is None:
            self._timer = t.net.timer(self._check_stall, t.host.address)
        seen = self._messages
        progress = self._snapshot.received if self._snapshot is not None else -1
        self._stall_mark = (seen, progress)
        self._timer.arm(trio.current_time() + t.read_timeout)

    def _check_stall(self) -> None:
        if self.conn.closed or not self.reader.in_message:
            return
        progress = self._snapshot.received if self._snapshot is not None else -1
        if (self._messages, progress) == self._stall_mark:
            self.t.count("raft_wire_stalled")
            self.t.count("raft_wire_dropped")
            self.conn.close()
            return
        self._arm_stall()

    def connection_lost(self) -> None:
        self.t.accepted.discard(self)
        if self._timer is not None:
            self._timer.disarm()

    def _write(self, data: bytes) -> None:
        self.conn.write(data)

    def _request(self, rpc_type: int, body: dict[bytes, Any]) -> None:
        t = self.t
        core = t.host.raft_core()
        if rpc_type == hw.RPC_APPEND_ENTRIES:
            leader = hw.text(body, b"Leader")
            prev = hw.uint(body, b"PrevLogEntry")
            msg: rm.Message = rm.AppendEntries(
                hw.uint(body, b"Term"),
                t.id_of(leader),
                leader,
                prev,
                hw.uint(body, b"PrevLogTerm"),
                hw.decode_entries(body, prev),
                hw.uint(body, b"LeaderCommitIndex"),
            )
            answer = _Answer(
                rm.AppendEntriesResponse,
                msg.leader_id,
                lambda r: self._write(
                    hw.append_entries_response(r.term, r.last_log_index, r.success)
                ),
            )
            t.step_request(answer, msg.leader_id, msg)
            if not answer.answered:
                term, last = (core.term, core.last_index) if core is not None else (0, 0)
                self._write(hw.append_entries_response(term, last, False))
        elif rpc_type in (hw.RPC_REQUEST_VOTE, hw.RPC_REQUEST_PRE_VOTE):
            candidate = hw.text(body, b"Candidate")
            pre_vote = rpc_type == hw.RPC_REQUEST_PRE_VOTE
            if pre_vote and not t.pre_vote:
                raise MalformedMessage("unknown rpc type 4")  # as a 1.1.2 node answers it
            msg = rm.RequestVote(
                hw.uint(body, b"Term"),
                t.id_of(candidate),
                hw.uint(body, b"LastLogIndex"),
                hw.uint(body, b"LastLogTerm"),
                pre_vote,
                hw.boolean(body, b"LeadershipTransfer"),
            )
            encode = hw.request_pre_vote_response if pre_vote else hw.request_vote_response
            answer = _Answer(
                rm.RequestVoteResponse,
                msg.candidate_id,
                lambda r: self._write(encode(r.term, r.granted)),
            )
            t.step_request(answer, msg.candidate_id, msg)
            if not answer.answered:
                self._write(encode(core.term if core is not None else 0, False))
        elif rpc_type == hw.RPC_INSTALL_SNAPSHOT:
            if hw.uint(body, b"SnapshotVersion") != hw.SNAPSHOT_VERSION:
                raise MalformedMessage("unsupported snapshot version")
            if hw.uint(body, b"Size") > MAX_SNAPSHOT:
                raise MalformedMessage("snapshot larger than this server takes")
            leader = hw.text(body, b"Leader")
            meta = SnapshotMeta(
                hw.uint(body, b"LastLogIndex"),
                hw.uint(body, b"LastLogTerm"),
                hw.decode_configuration(hw.raw(body, b"Configuration")),
                hw.uint(body, b"ConfigurationIndex"),
            )
            self._snapshot = _SnapshotReceive(
                hw.uint(body, b"Term"), t.id_of(leader), leader, meta, hw.uint(body, b"Size")
            )
        else:  # TimeoutNow: hashicorp's request names nobody; the leader we follow sent it
            leader_id = core.leader_id if core is not None and core.leader_id else ""
            term = core.term if core is not None else 0
            answer = _Answer(rm.TimeoutNowResponse, leader_id, lambda r: None)
            t.step_request(answer, leader_id, rm.TimeoutNow(term, leader_id))
            self._write(hw.timeout_now_response())

    def _snapshot_data(self, chunk: bytes) -> None:
        s = self._snapshot
        if s is None:
            raise MalformedMessage("snapshot data without a request")
        offset = s.received
        s.received += len(chunk)
        done = s.received >= s.size
        if s.result is None:
            msg = rm.InstallSnapshot(
                s.term, s.leader_id, s.leader, s.meta, chunk, offset, s.size, done
            )

            def on_answer(r: rm.InstallSnapshotResponse) -> None:
                if r.done or not r.success:
                    s.result = r

            answer = _Answer(rm.InstallSnapshotResponse, s.leader_id, on_answer)
            self.t.step_request(answer, s.leader_id, msg)
        if done:
            self._snapshot = None
            r = s.result
            if r is None:
                core = self.t.host.raft_core()
                self._write(hw.install_snapshot_response(core.term if core else 0, False))
            else:
                self._write(hw.install_snapshot_response(r.term, r.success and r.done))


class _SnapshotReceive:
    __slots__ = ("term", "leader_id", "leader", "meta", "size", "received", "result")

    def __init__(self, term: int, leader_id: str, leader: str, meta: SnapshotMeta, size: int):
        self.term = term
        self.leader_id = leader_id
        self.leader = leader
        self.meta = meta
        self.size = size
        self.received = 0
        self.result: rm.InstallSnapshotResponse | None = None
