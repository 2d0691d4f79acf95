"""The sans-IO yamux session (consim.net.yamux): frames byte for byte, flow control, abuse."""

from __future__ import annotations

import random

import pytest

from consim.net.yamux import (
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    GO_AWAY_PROTOCOL_ERROR,
    HEADER,
    INITIAL_WINDOW,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    GoneAway,
    Session,
    StreamData,
    StreamEnded,
    StreamOpened,
    StreamReset,
    YamuxError,
    frame,
)


def frames(data: bytes) -> list[tuple[int, int, int, int]]:
    """(type, flags, stream id, length) of each frame in ``data`` (payloads skipped)."""
    out, pos = [], 0
    while pos < len(data):
        _, kind, flags, sid, length = HEADER.unpack_from(data, pos)
        out.append((kind, flags, sid, length))
        pos += 12 + (length if kind == TYPE_DATA else 0)
    return out


def test_go_client_open_is_accepted_with_ack():
    server = Session()
    # yamux's Stream.Open: a window update with SYN and delta 0 on stream 1
    events = server.receive_data(bytes.fromhex("00 01 0001 00000001 00000000"))
    assert events == [StreamOpened(1)]
    assert server.data_to_send() == bytes.fromhex("00 01 0002 00000001 00000000")
    server.send(1, b"hello")
    assert server.data_to_send() == bytes.fromhex("00 00 0000 00000001 00000005") + b"hello"


def test_client_and_server_talk_in_any_split():
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    client, server = Session(client=True), Session()
    sid = client.open_stream()
    assert sid == 1
    client.send(sid, b"x" * 1000)
    client.close_stream(sid)
    wire = client.data_to_send()
    events = []
    pos = 0
    while pos < len(wire):
        n = rng.randint(1, 40)
        events += server.receive_data(wire[pos : pos + n])
        pos += n
    data = b"".join(e.data for e in events if isinstance(e, StreamData))
    assert data == b"x" * 1000, f"seed {seed}"
    assert events[0] == StreamOpened(1) and events[-1] == StreamEnded(1), f"seed {seed}"


def test_window_is_respected_and_granted_back_at_half():
    client, server = Session(client=True), Session()
    sid = client.open_stream()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())  # the ACK
    client.send(sid, b"a" * (INITIAL_WINDOW + 1000))
    wire = client.data_to_send()
    assert sum(n for k, _, _, n in frames(wire) if k == TYPE_DATA) == INITIAL_WINDOW
    assert client.pending(sid) == 1000  # waits for the peer's window update
    events = server.receive_data(wire)
    got = sum(len(e.data) for e in events if isinstance(e, StreamData))
    assert got == INITIAL_WINDOW
    server.consumed(sid, INITIAL_WINDOW // 2 - 1)
    assert server.data_to_send() == b""  # less than half consumed: no update yet
    server.consumed(sid, 1)
    update = server.data_to_send()
    assert frames(update) == [(TYPE_WINDOW_UPDATE, 0, sid, INITIAL_WINDOW // 2)]
    client.receive_data(update)
    assert client.pending(sid) == 0
    assert sum(n for k, _, _, n in frames(client.data_to_send()) if k == TYPE_DATA) == 1000


def test_ping_is_echoed_with_ack():
    server = Session()
    assert server.receive_data(frame(TYPE_PING, FLAG_SYN, 0, 0xDEADBEEF)) == []
    assert server.data_to_send() == frame(TYPE_PING, FLAG_ACK, 0, 0xDEADBEEF)
    assert server.stats["yamux_pings"] == 1


def test_bad_version_ends_the_session():
    server = Session()
    with pytest.raises(YamuxError, match="invalid protocol version"):
        server.receive_data(b"\x01" + bytes(11))
    assert server.stats["yamux_protocol_errors"] == 1
    with pytest.raises(YamuxError):
        server.receive_data(b"")  # closed for good


def test_unknown_type_ends_the_session():
    with pytest.raises(YamuxError, match="invalid msg type"):
        Session().receive_data(HEADER.pack(0, 9, 0, 0, 0))


def test_data_past_the_receive_window_is_a_protocol_error_with_go_away():
    server = Session()
    server.receive_data(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
    server.data_to_send()
    with pytest.raises(YamuxError, match="recv window exceeded"):
        server.receive_data(HEADER.pack(0, TYPE_DATA, 0, 1, INITIAL_WINDOW + 1))
    assert server.data_to_send() == frame(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR)


def test_huge_window_update_is_a_protocol_error_not_a_wrap():
    server = Session()
    server.receive_data(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
    with pytest.raises(YamuxError, match="window overflow"):
        server.receive_data(frame(TYPE_WINDOW_UPDATE, 0, 1, 2**32 - 1))


def test_data_for_unknown_stream_is_discarded_without_buffering():
    server = Session()
    # a 10 MB data frame for a stream nobody opened: skipped as it arrives
    server.receive_data(HEADER.pack(0, TYPE_DATA, 0, 77, 10_000_000))
    for _ in range(10):
        assert server.receive_data(b"z" * 65536) == []
        assert len(server._buf) == 0
    assert server.stats["yamux_unknown_stream"] == 1
    assert server.stats["yamux_discarded_bytes"] == 10 * 65536
    # window updates for unknown streams are ignored, the session goes on
    server.receive_data(b"z" * (10_000_000 - 10 * 65536))
    assert server.receive_data(frame(TYPE_WINDOW_UPDATE, 0, 99, 5)) == []
    assert server.receive_data(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0)) == [StreamOpened(1)]


def test_duplicate_syn_and_stream_zero_are_protocol_errors():
    server = Session()
    server.receive_data(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
    with pytest.raises(YamuxError, match="duplicate stream"):
        server.receive_data(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
    with pytest.raises(YamuxError, match="stream id 0"):
        Session().receive_data(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 0, 0))


def test_streams_past_the_backlog_are_refused_with_rst():
    server = Session(max_streams=2)
    for sid in (1, 3):
        server.receive_data(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, sid, 0))
    server.data_to_send()
    assert server.receive_data(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 5, 0)) == []
    assert server.data_to_send() == frame(TYPE_WINDOW_UPDATE, FLAG_RST, 5, 0)
    assert server.stats["yamux_streams_refused"] == 1


def test_reset_and_fin_and_go_away():
    server = Session()
    server.receive_data(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
    server.receive_data(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 3, 0))
    assert server.receive_data(frame(TYPE_WINDOW_UPDATE, FLAG_RST, 1, 0)) == [StreamReset(1)]
    assert server.receive_data(frame(TYPE_DATA, FLAG_FIN, 3, 0)) == [StreamEnded(3)]
    server.close_stream(3)
    assert 3 not in server.stream_ids  # both sides closed: forgotten
    assert server.receive_data(frame(TYPE_GO_AWAY, 0, 0, 0)) == [GoneAway(0)]
    assert server.remote_go_away
    with pytest.raises(YamuxError, match="code 1"):
        server.receive_data(frame(TYPE_GO_AWAY, 0, 0, 1))
