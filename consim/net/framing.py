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
import struct
from typing import Any

import msgpack
import trio

MAX_FRAME = 8 * 1024 * 1024
DEFAULT_READ_TIMEOUT = 10.0
_HEADER = struct.Struct(">I")
_RECV_CHUNK = 64 * 1024


class FrameError(Exception):
    """The peer sent something that is not a frame: the connection must be closed."""


class FrameTooLarge(FrameError):
    pass


class FrameTimeout(FrameError):
    """A frame started but did not finish within the read timeout."""


def pack(obj: Any) -> bytes:
    """msgpack-encode one value the way the wire does (raises TypeError if not serialisable)."""
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    """Decode exactly one msgpack value; raises FrameError on anything else."""
    try:
        # unpackb bounds every container/string by len(data), which we already capped.
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise FrameError(f"undecodable frame: {exc.__class__.__name__}") from None


def encode_frame(obj: Any, max_frame: int = MAX_FRAME) -> bytes:
    body = pack(obj)
    if len(body) > max_frame:
        raise FrameTooLarge(f"frame of {len(body)} bytes exceeds limit {max_frame}")
    return _HEADER.pack(len(body)) + body


class FrameReader:
    """Reads frames from a trio stream; one reader per connection."""

    def __init__(
        self,
        stream: trio.abc.ReceiveStream,
        *,
        max_frame: int = MAX_FRAME,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        self._stream = stream
        self.max_frame = max_frame
        self.read_timeout = read_timeout
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete (for memory accounting in tests)."""
        return len(self._buf)

    async def receive(self) -> Any:
        """Next decoded frame. Raises trio.EndOfChannel on a clean EOF between frames,
        FrameError on garbage, an oversized prefix, EOF mid-frame or a stalled frame."""
        deadline = math.inf if not self._buf else trio.current_time() + self.read_timeout
        while True:
            if len(self._buf) >= _HEADER.size:
                (length,) = _HEADER.unpack_from(self._buf)
                if length > self.max_frame:
                    raise FrameTooLarge(f"length prefix {length} exceeds limit {self.max_frame}")
                end = _HEADER.size + length
                if len(self._buf) >= end:
                    body = bytes(self._buf[_HEADER.size : end])
                    del self._buf[:end]
                    return unpack(body)
            with trio.move_on_at(deadline) as scope:
                chunk = await self._stream.receive_some(_RECV_CHUNK)
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


async def send_frame(stream: trio.abc.SendStream, obj: Any, max_frame: int = MAX_FRAME) -> None:
    await stream.send_all(encode_frame(obj, max_frame))
