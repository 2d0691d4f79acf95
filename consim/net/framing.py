"""Length-prefixed msgpack frames over trio streams.

A frame is a 4-byte big-endian length followed by that many bytes of one msgpack value. The length
is checked against ``max_frame`` *before* any body byte is buffered, so a hostile prefix cannot make
us allocate; the body is accumulated only as it actually arrives.

A frame that has started must finish within ``read_timeout`` seconds (a deadline per frame, not per
read, so a peer trickling one byte at a time cannot pin a connection either). Between frames a
connection may idle forever: pooled RPC connections are long-lived and quiet.
"""

from __future__ import annotations

import math
import os
import struct
import threading
from typing import Any

import msgpack
import trio

MAX_FRAME = 8 * 1024 * 1024
DEFAULT_READ_TIMEOUT = 10.0
_HEADER = struct.Struct(">I")
_HEADER_SIZE = _HEADER.size
_COMPACT_AT = 64 * 1024  # drop consumed bytes from the buffer past this offset
_RECV_CHUNK = 64 * 1024


class FrameError(Exception):
    """The peer sent something that is not a frame: the connection must be closed."""


class FrameTooLarge(FrameError):
    pass


class FrameTimeout(FrameError):
    """A frame started but did not finish within the read timeout."""


_unpackb = msgpack.unpackb
# One reusable Packer per thread: ``msgpack.packb`` builds a Packer per call, which is ~40% of the
# cost of packing a Raft message. A Packer resets itself when packing raises.
_packers = threading.local()


def _packer() -> msgpack.Packer:
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
    return packer


_KEEP_PACKER_BUFFER = 1024 * 1024  # a Packer keeps its largest buffer: drop one that grew past this


def pack(obj: Any) -> bytes:
    """msgpack-encode one value the way the wire does (raises TypeError if not serialisable)."""
    data = (getattr(_packers, "packer", None) or _packer()).pack(obj)
    if len(data) > _KEEP_PACKER_BUFFER:
        _packers.packer = None  # one big message must not pin its buffer for the process's life
    return data


def unpack(data: bytes) -> Any:
    """Decode exactly one msgpack value; raises FrameError on anything else."""
    try:
        # unpackb bounds every container/string by len(data), which we already capped.
        return _unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise FrameError(f"undecodable frame: {exc.__class__.__name__}") from None


def encode_frame(obj: Any, max_frame: int = MAX_FRAME) -> bytes:
    body = pack(obj)
    if len(body) > max_frame:
        raise FrameTooLarge(f"frame of {len(body)} bytes exceeds limit {max_frame}")
    return _HEADER.pack(len(body)) + body


class FrameReader:
    """Reads frames from a trio stream; one reader per connection.

    On a :class:`trio.SocketStream` it reads the socket's descriptor directly (``os.read`` when
    data is there, ``wait_readable`` when not), skipping trio's stream wrappers; any other stream
    goes through ``receive_some``. Between frames there is no deadline, so no cancel scope either.
    """

    def __init__(
        self,
        stream: trio.abc.ReceiveStream,
        *,
        max_frame: int = MAX_FRAME,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        self._stream = stream
        self._sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        self.max_frame = max_frame
        self.read_timeout = read_timeout
        self._buf = bytearray()
        self._pos = 0  # start of the first unconsumed byte in _buf

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete (for memory accounting in tests)."""
        return len(self._buf) - self._pos

    def _next_buffered(self) -> tuple[bool, Any]:
        """(True, frame) if a whole frame is buffered, else (False, None)."""
        buf, pos = self._buf, self._pos
        size = len(buf)
        if size - pos < _HEADER_SIZE:
            return False, None
        (length,) = _HEADER.unpack_from(buf, pos)
        if length > self.max_frame:
            raise FrameTooLarge(f"length prefix {length} exceeds limit {self.max_frame}")
        end = pos + _HEADER_SIZE + length
        if size < end:
            return False, None
        body = buf[pos + _HEADER_SIZE : end]
        if end == size:
            buf.clear()
            self._pos = 0
        elif end > _COMPACT_AT:
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end
        return True, unpack(body)

    async def receive(self) -> Any:
        """Next decoded frame. Raises trio.EndOfChannel on a clean EOF between frames,
        FrameError on garbage, an oversized prefix, EOF mid-frame or a stalled frame."""
        done, obj = self._next_buffered()
        if done:
            return obj
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        deadline = math.inf if not self._buf else trio.current_time() + self.read_timeout
        while True:
            if deadline == math.inf:
                chunk = await self._read()
            else:
                with trio.move_on_at(deadline) as scope:
                    chunk = await self._read()
                if scope.cancelled_caught:
                    raise FrameTimeout(f"frame not completed within {self.read_timeout}s")
            if not chunk:
                if self._buf:
                    raise FrameError("connection closed mid-frame")
                raise trio.EndOfChannel
            if not self._buf:
                # The first byte of a frame starts its deadline.
                deadline = trio.current_time() + self.read_timeout
            self._buf += chunk
            done, obj = self._next_buffered()
            if done:
                return obj

    async def _read(self) -> bytes:
        sock = self._sock
        if sock is None:
            return await self._stream.receive_some(_RECV_CHUNK)
        waited = False
        while True:
            fd = sock.fileno()  # -1 once the stream is closed: never read a recycled descriptor
            if fd < 0:
                raise trio.ClosedResourceError("the stream is closed")
            try:
                chunk = os.read(fd, _RECV_CHUNK)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
                waited = True
                continue
            if not waited:
                await trio.lowlevel.checkpoint()  # data was waiting: still let others run
            return chunk


class FrameWriter:
    """Sends encoded frames on one stream; concurrent senders never interleave.

    On a :class:`trio.SocketStream` a frame is first written synchronously (``os.write`` on the
    socket's descriptor: it either goes whole, which is the usual case, or the rest follows through
    ``send_all`` under the lock); nobody else can run in between, so a frame written this way needs
    no lock. That path does not yield: callers await something else right after (their reply).
    """

    def __init__(self, stream: trio.abc.SendStream) -> None:
        self._stream = stream
        self._sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._lock = trio.Lock()
        # Set once a frame went out in part and the rest did not follow (cancelled, timed out or
        # failed): the stream is then unusable and every later send fails.
        self.torn = False

    async def send(self, data: bytes, deadline: float = math.inf) -> None:
        """Send one frame; ``trio.TooSlowError`` if it cannot go by ``deadline``. If that (or a
        cancellation) happens while waiting for an earlier frame, nothing of this one was written
        and the stream stays usable; if part of it went out, ``torn`` is set."""
        sock = self._sock
        locked = False
        if self.torn:
            raise trio.ClosedResourceError("an earlier frame was cut short")
        if sock is not None and not self._lock.locked():
            fd = sock.fileno()
            if fd < 0:
                raise trio.ClosedResourceError("the stream is closed")
            try:
                sent = os.write(fd, data)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            rest: bytes | memoryview = memoryview(data)[sent:]
            self._lock.acquire_nowait()  # free (checked above, nothing ran since)
            locked = True
        else:
            rest = data
        with trio.move_on_at(deadline) as scope:
            try:
                if not locked:
                    await self._lock.acquire()
                    locked = True
                    if self.torn:  # the frame ahead of us was cut short
                        raise trio.ClosedResourceError("an earlier frame was cut short")
                try:
                    await self._stream.send_all(rest)
                except BaseException:
                    self.torn = True  # (conservatively: send_all may have written nothing)
                    raise
            finally:
                if locked:
                    self._lock.release()
        if scope.cancelled_caught:
            raise trio.TooSlowError("frame not sent by its deadline")


async def send_frame(stream: trio.abc.SendStream, obj: Any, max_frame: int = MAX_FRAME) -> None:
    await stream.send_all(encode_frame(obj, max_frame))
