"""memberlist's EnableCompression: packets LZW-compressed when that is smaller, push-pull always."""

from __future__ import annotations

from dataclasses import replace

from consim.gossip import wire
from consim.gossip.harness import Harness

from .helpers import K1, LAN, converged, fail


def test_a_compressing_pool_converges_and_sends_compress_messages() -> None:
    h = Harness(5)
    seen: list[int] = []
    cores = h.add_pool(5, keys=[K1], config=replace(LAN, compression=True))
    for core in cores:
        emit = core._emit_packet  # noqa: SLF001 - observe the plaintext before sealing

        def spy(address, data, emit=emit):
            seen.append(data[0] if data[0] != wire.HAS_CRC else data[5])
            emit(address, data)

        core._emit_packet = spy  # noqa: SLF001
    names = [c.name for c in cores]
    assert h.run_until_true(lambda: converged(h, names), 30), fail(h, "pool never converged")
    h.run_for(10)  # quiet: plain pings and acks, which LZW would make longer
    assert wire.COMPRESS in seen, "no packet was worth compressing"
    assert len(set(seen) - {wire.COMPRESS}) > 1, "small packets must stay uncompressed"
    assert all(c.counters["dropped_malformed"] == 0 for c in cores)


def test_push_pull_is_compressed_and_read_back() -> None:
    h = Harness(6)
    cores = h.add_pool(2, config=replace(LAN, compression=True))
    stream = cores[0]._push_pull_bytes(join=False)  # noqa: SLF001
    assert stream[0] == wire.COMPRESS
    assert wire.dec_stream_inner(stream)["t"] == "pp"
