"""A yamux session, sans-IO (hashicorp/yamux's wire format; Consul's RPCMultiplexV2).

Frames: a 12-byte big-endian header ``[version 0][type][flags u16][stream id u32][length u32]``;
types 0 data (``length`` payload bytes follow), 1 window update (``length`` = window delta), 2
ping (``length`` = opaque value, echoed with ACK), 3 go-away (``length`` = code: 0 normal, 1
protocol error, 2 internal error); flags SYN 1, ACK 2, FIN 4, RST 8. A stream opens with SYN (a
window update of delta 0), is accepted with ACK, half-closes with FIN and is reset with RST.
Each direction of a stream starts with a 256 KiB window; the receiver grants more with window
updates once the reader has consumed at least half of it (yamux's rule), and a sender never
sends past what it was granted. Client streams have odd ids, server streams even ones.

Bytes go in with :meth:`Session.receive_data` (returns events), bytes to write come out of
:meth:`Session.data_to_send`. Abuse is handled as yamux does, with flat memory: a bad version or
type, a frame past the receive window, a duplicate SYN, a window grown past 2^32-1 or a
go-away with an error code end the session (:class:`YamuxError`; a go-away with the protocol
error code is queued first where yamux sends one); data for an unknown stream is discarded
without being buffered; streams past ``max_streams`` are refused with RST. Counters in
``stats``: ``yamux_frames_in``, ``yamux_unknown_stream``, ``yamux_discarded_bytes``,
``yamux_streams_refused``, ``yamux_pings``, ``yamux_protocol_errors``.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field

VERSION = 0
TYPE_DATA, TYPE_WINDOW_UPDATE, TYPE_PING, TYPE_GO_AWAY = 0, 1, 2, 3
FLAG_SYN, FLAG_ACK, FLAG_FIN, FLAG_RST = 1, 2, 4, 8
GO_AWAY_NORMAL, GO_AWAY_PROTOCOL_ERROR, GO_AWAY_INTERNAL_ERROR = 0, 1, 2
INITIAL_WINDOW = 256 * 1024
HEADER = struct.Struct(">BBHII")
HEADER_SIZE = HEADER.size
MAX_WINDOW = 2**32 - 1
DEFAULT_MAX_STREAMS = 256  # yamux's AcceptBacklog


class YamuxError(Exception):
    """The session is over (protocol error, or the peer's error go-away)."""


@dataclass(frozen=True)
class _StreamEvent:
    stream_id: int


class StreamOpened(_StreamEvent):
    """The peer opened a stream (its SYN)."""


class StreamAccepted(_StreamEvent):
    """The peer acknowledged a stream we opened (its ACK)."""


@dataclass(frozen=True)
class StreamData(_StreamEvent):
    data: bytes


class StreamEnded(_StreamEvent):
    """The peer half-closed its side (FIN): EOF for the reader."""


class StreamReset(_StreamEvent):
    """The peer reset the stream (RST)."""


class WindowOpened(_StreamEvent):
    """More of this stream's pending output went out (its writer may go on)."""


@dataclass(frozen=True)
class GoneAway:
    code: int


Event = (
    StreamOpened | StreamAccepted | StreamData | StreamEnded | StreamReset | WindowOpened | GoneAway
)


def frame(kind: int, flags: int, stream_id: int, length: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(VERSION, kind, flags, stream_id, length) + payload


@dataclass
class _Stream:
    stream_id: int
    send_window: int = INITIAL_WINDOW
    recv_window: int = INITIAL_WINDOW  # what the peer may still send
    unread: int = 0  # received, not yet consumed by the reader
    pending: bytearray = field(default_factory=bytearray)  # accepted, waiting for window
    flags_due: int = 0  # ACK (accepted) or SYN (opened) not yet sent
    fin_due: bool = False  # local close once pending is out
    local_closed: bool = False
    remote_closed: bool = False
    awaiting_ack: bool = False  # opened by us, the peer has not acknowledged it yet


class Session:
    """One side of a yamux session (``client=True`` opens odd stream ids)."""

    def __init__(
        self,
        *,
        client: bool = False,
        max_streams: int = DEFAULT_MAX_STREAMS,
        window: int = INITIAL_WINDOW,
        stats: Counter[str] | None = None,
    ) -> None:
        self.client = client
        self.max_streams = max_streams
        self.window = window
        self.stats: Counter[str] = stats if stats is not None else Counter()
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1 if client else 2
        self._out = bytearray()
        self._buf = bytearray()
        self._header: tuple[int, int, int, int] | None = None  # a data frame awaiting payload
        self._discard = 0  # payload bytes of a frame for an unknown stream still to skip
        self.remote_go_away = False
        self.local_go_away = False
        self.closed = False

    # ---- output --------------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def _protocol_error(self, message: str, *, go_away: bool = True) -> YamuxError:
        self.stats["yamux_protocol_errors"] += 1
        if go_away and not self.closed:
            self._out += frame(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR)
        self.closed = True
        return YamuxError(message)

    # ---- streams -------------------------------------------------------------------------------
    @property
    def stream_ids(self) -> list[int]:
        return list(self._streams)

    def open_stream(self) -> int:
        """A new outgoing stream (SYN goes out with its first frame, now)."""
        if self.closed or self.remote_go_away:
            raise YamuxError("remote end is not accepting connections")
        stream_id = self._next_id
        self._next_id += 2
        s = self._streams[stream_id] = _Stream(stream_id, recv_window=self.window)
        s.flags_due = FLAG_SYN
        s.awaiting_ack = True
        self._window_update(s, 0)
        return stream_id

    def _flags(self, s: _Stream) -> int:
        flags, s.flags_due = s.flags_due, 0
        return flags

    def _window_update(self, s: _Stream, delta: int, extra: int = 0) -> None:
        self._out += frame(TYPE_WINDOW_UPDATE, self._flags(s) | extra, s.stream_id, delta)

    def send(self, stream_id: int, data: bytes) -> None:
        """Queue ``data`` on a stream; it goes out as the peer's window allows."""
        s = self._streams.get(stream_id)
        if s is None or s.local_closed or s.fin_due:
            raise YamuxError("stream closed")
        s.pending += data
        self._pump(s)

    def pending(self, stream_id: int) -> int:
        """Bytes queued on the stream and not yet sent (waiting for window)."""
        s = self._streams.get(stream_id)
        return 0 if s is None else len(s.pending)

    def _pump(self, s: _Stream) -> None:
        while s.pending and s.send_window > 0:
            n = min(len(s.pending), s.send_window)
            chunk = bytes(s.pending[:n])
            del s.pending[:n]
            s.send_window -= n
            self._out += frame(TYPE_DATA, self._flags(s), s.stream_id, n, chunk)
        if s.fin_due and not s.pending:
            s.fin_due = False
            s.local_closed = True
            self._window_update(s, 0, FLAG_FIN)
            self._maybe_forget(s)

    def consumed(self, stream_id: int, n: int) -> None:
        """The reader took ``n`` bytes: grant the window back once half of it is free."""
        s = self._streams.get(stream_id)
        if s is None:
            return
        s.unread = max(0, s.unread - n)
        delta = (self.window - s.unread) - s.recv_window
        if delta >= self.window // 2 and not s.remote_closed:
            s.recv_window += delta
            self._window_update(s, delta)

    def close_stream(self, stream_id: int) -> None:
        """Half-close our side (FIN once pending data is out)."""
        s = self._streams.get(stream_id)
        if s is None or s.local_closed or s.fin_due:
            return
        s.fin_due = True
        self._pump(s)

    def reset_stream(self, stream_id: int) -> None:
        s = self._streams.pop(stream_id, None)
        if s is not None:
            self._out += frame(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0)

    def _maybe_forget(self, s: _Stream) -> None:
        if s.local_closed and s.remote_closed:
            self._streams.pop(s.stream_id, None)

    def ping(self, opaque: int) -> None:
        self._out += frame(TYPE_PING, FLAG_SYN, 0, opaque)

    def go_away(self, code: int = GO_AWAY_NORMAL) -> None:
        self.local_go_away = True
        self._out += frame(TYPE_GO_AWAY, 0, 0, code)

    # ---- input ---------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[Event]:
        """Events for ``data``; raises YamuxError when the session must end (write out
        ``data_to_send()`` first: it may hold a go-away)."""
        if self.closed:
            raise YamuxError("session shutdown")
        events: list[Event] = []
        buf = self._buf
        buf += data
        pos = 0
        try:
            while True:
                if self._discard:
                    n = min(self._discard, len(buf) - pos)
                    self._discard -= n
                    self.stats["yamux_discarded_bytes"] += n
                    pos += n
                    if self._discard:
                        break
                if self._header is not None:
                    kind, flags, stream_id, length = self._header
                    if len(buf) - pos < length:
                        break
                    payload = bytes(buf[pos : pos + length])
                    pos += length
                    self._header = None
                    self._on_data(flags, stream_id, payload, events)
                    continue
                if len(buf) - pos < HEADER_SIZE:
                    break
                version, kind, flags, stream_id, length = HEADER.unpack_from(buf, pos)
                pos += HEADER_SIZE
                self.stats["yamux_frames_in"] += 1
                if version != VERSION:
                    raise self._protocol_error("invalid protocol version", go_away=False)
                if kind in (TYPE_DATA, TYPE_WINDOW_UPDATE):
                    self._on_stream_header(kind, flags, stream_id, length, events)
                elif kind == TYPE_PING:
                    self.stats["yamux_pings"] += 1
                    if flags & FLAG_SYN:
                        self._out += frame(TYPE_PING, FLAG_ACK, 0, length)
                elif kind == TYPE_GO_AWAY:
                    if length == GO_AWAY_NORMAL:
                        self.remote_go_away = True
                        events.append(GoneAway(length))
                    else:
                        self.closed = True
                        raise YamuxError(f"remote go away: code {length}")
                else:
                    raise self._protocol_error("invalid msg type", go_away=False)
        finally:
            del buf[:pos]
        return events

    def _on_stream_header(
        self, kind: int, flags: int, stream_id: int, length: int, events: list[Event]
    ) -> None:
        if flags & FLAG_SYN:
            self._incoming(stream_id, events)
        s = self._streams.get(stream_id)
        if s is None:
            self.stats["yamux_unknown_stream"] += 1
            if kind == TYPE_DATA:
                self._discard = length  # skipped as it arrives, never buffered
            return
        if kind == TYPE_WINDOW_UPDATE:
            self._flags_in(s, flags, events)
            if s.stream_id not in self._streams:
                return
            if s.send_window + length > MAX_WINDOW:
                raise self._protocol_error("send window overflow")
            if length:
                s.send_window += length
                before = len(s.pending)
                self._pump(s)
                if len(s.pending) < before or not s.pending:
                    events.append(WindowOpened(stream_id))
            return
        if length > s.recv_window:
            raise self._protocol_error("recv window exceeded")
        if length:
            self._header = (kind, flags, stream_id, length)
        else:
            self._on_data(flags, stream_id, b"", events)

    def _on_data(self, flags: int, stream_id: int, payload: bytes, events: list[Event]) -> None:
        s = self._streams.get(stream_id)
        if s is None:  # reset while its payload was arriving
            self.stats["yamux_discarded_bytes"] += len(payload)
            return
        if payload:
            s.recv_window -= len(payload)
            s.unread += len(payload)
            events.append(StreamData(stream_id, payload))
        self._flags_in(s, flags, events)

    def _incoming(self, stream_id: int, events: list[Event]) -> None:
        if stream_id == 0:
            raise self._protocol_error("stream id 0")
        if stream_id in self._streams:
            raise self._protocol_error("duplicate stream initiated")
        if self.local_go_away or len(self._streams) >= self.max_streams:
            self.stats["yamux_streams_refused"] += 1
            self._out += frame(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0)
            return
        s = self._streams[stream_id] = _Stream(stream_id, recv_window=self.window)
        s.flags_due = FLAG_ACK
        self._window_update(s, 0)  # accept at once, as yamux's AcceptStream does
        events.append(StreamOpened(stream_id))

    def _flags_in(self, s: _Stream, flags: int, events: list[Event]) -> None:
        if flags & FLAG_ACK and s.awaiting_ack:
            s.awaiting_ack = False
            events.append(StreamAccepted(s.stream_id))
        if flags & FLAG_RST:
            self._streams.pop(s.stream_id, None)
            events.append(StreamReset(s.stream_id))
            return
        if flags & FLAG_FIN and not s.remote_closed:
            s.remote_closed = True
            events.append(StreamEnded(s.stream_id))
            self._maybe_forget(s)
