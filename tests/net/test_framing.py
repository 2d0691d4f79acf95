"""msgpack as the network carries it (``consim.net.framing``): one value per message."""

import msgpack
import pytest

from consim.net.framing import FrameError, pack, unpack


def test_round_trip_keeps_binary_and_text_apart() -> None:
    value = [0, 1, "Status.Leader", {"k": b"\x00\xff", 1: None}, "x" * 100_000]
    assert unpack(pack(value)) == value


def test_undecodable_and_trailing_bytes() -> None:
    with pytest.raises(FrameError):
        unpack(b"\xc1\xc1")  # 0xc1 is never valid msgpack
    with pytest.raises(FrameError):
        unpack(msgpack.packb(1) + msgpack.packb(2))  # two values in one message
    with pytest.raises(TypeError):
        pack({1, 2})  # not serialisable: at the sender, as on the wire
