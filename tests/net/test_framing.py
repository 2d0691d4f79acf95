import struct

import msgpack
import pytest
import trio
import trio.testing

from consim.net.framing import (
    FrameError,
    FrameReader,
    FrameTimeout,
    FrameTooLarge,
    encode_frame,
    send_frame,
)


async def test_round_trip_split_across_reads() -> None:
    a, b = trio.testing.memory_stream_pair()
    reader = FrameReader(b)
    values = [[0, 1, "Status.Leader", {"k": b"\x00\xff", 1: None}], "x" * 100_000, 7]
    data = b"".join(encode_frame(v) for v in values)
    async with trio.open_nursery() as nursery:

        async def trickle() -> None:
            for i in range(0, len(data), 7777):
                await a.send_all(data[i : i + 7777])

        nursery.start_soon(trickle)
        got = [await reader.receive() for _ in values]
    assert got == values
    assert reader.buffered == 0
    await a.aclose()
    with pytest.raises(trio.EndOfChannel):
        await reader.receive()


async def test_oversized_prefix_refused_before_buffering() -> None:
    a, b = trio.testing.memory_stream_pair()
    reader = FrameReader(b, max_frame=1024)
    await a.send_all(struct.pack(">I", 1025) + b"abc")
    with pytest.raises(FrameTooLarge):
        await reader.receive()
    with pytest.raises(FrameTooLarge):
        encode_frame(b"x" * 2000, max_frame=1024)


async def test_undecodable_and_trailing_bytes() -> None:
    a, b = trio.testing.memory_stream_pair()
    reader = FrameReader(b)
    await a.send_all(struct.pack(">I", 2) + b"\xc1\xc1")  # 0xc1 is never valid msgpack
    with pytest.raises(FrameError):
        await reader.receive()
    a, b = trio.testing.memory_stream_pair()
    reader = FrameReader(b)
    body = msgpack.packb(1) + msgpack.packb(2)  # two values in one frame
    await a.send_all(struct.pack(">I", len(body)) + body)
    with pytest.raises(FrameError):
        await reader.receive()


async def test_eof_mid_frame_is_an_error() -> None:
    a, b = trio.testing.memory_stream_pair()
    reader = FrameReader(b)
    await a.send_all(encode_frame([1, 2, 3])[:-1])
    await a.aclose()
    with pytest.raises(FrameError):
        await reader.receive()


async def test_stall_mid_frame_times_out_but_idle_does_not(autojump_clock: trio.abc.Clock) -> None:
    a, b = trio.testing.memory_stream_pair()
    reader = FrameReader(b, read_timeout=10.0)
    async with trio.open_nursery() as nursery:

        async def late_sender() -> None:
            await trio.sleep(3600)  # an idle pooled connection: no timeout between frames
            await send_frame(a, "after an hour")
            await a.send_all(encode_frame("stalled")[:3])

        nursery.start_soon(late_sender)
        assert await reader.receive() == "after an hour"
        start = trio.current_time()
        with pytest.raises(FrameTimeout):
            await reader.receive()
        assert trio.current_time() - start == pytest.approx(10.0)
