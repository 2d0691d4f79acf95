"""Consul's net/rpc-over-msgpack framing, byte for byte (consim.net.msgpackrpc)."""

from __future__ import annotations

import random

import msgpack
import pytest

from consim.net.msgpackrpc import (
    ClientCodec,
    ProtocolError,
    Request,
    Response,
    ServerCodec,
    go_pack,
    raw_bytes,
)

# What a Go net/rpc client with net-rpc-msgpackrpc writes for Status.Ping (struct{} args).
PING = bytes.fromhex("82 a3 536571 01 ad 536572766963654d6574686f64 ab 5374617475732e50696e67 80")


def test_request_decoded_from_go_bytes_in_any_split():
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    data = PING * 3
    codec = ServerCodec()
    got: list[Request] = []
    pos = 0
    while pos < len(data):
        n = rng.randint(1, 7)
        got += codec.feed(data[pos : pos + n])
        pos += n
    assert got == [Request(1, "Status.Ping", {})] * 3, f"seed {seed}"
    assert not codec.partial


def test_response_bytes_are_go_msgpack_sorted_raw():
    data = ServerCodec.response(7, "Status.Leader", "", "127.0.0.1:8300")
    # {"Error": "", "Seq": 7, "ServiceMethod": "Status.Leader"} in sorted field order, then
    # the string as old-spec raw (a fixraw, never str8/bin).
    assert data == (
        b"\x83\xa5Error\xa0\xa3Seq\x07\xadServiceMethod\xadStatus.Leader" + b"\xae127.0.0.1:8300"
    )


def test_error_response_body_is_invalid_request():
    data = ServerCodec.response(3, "KVS.Get", "No cluster leader", {"ignored": 1})
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    header, body = list(unpacker)
    assert header == {"Error": "No cluster leader", "Seq": 3, "ServiceMethod": "KVS.Get"}
    assert body == {}


def test_go_pack_bytes_and_strings_are_raw_and_maps_sorted():
    out = go_pack({"b": b"\xff\x00", "a": "x" * 40, "n": 300})
    # keys a, b, n in order; a 40-char string as raw16 (da), bytes as fixraw (a2): no bin/str8
    assert out == b"\x83\xa1a\xda\x00\x28" + b"x" * 40 + b"\xa1b\xa2\xff\x00\xa1n\xcd\x01\x2c"
    assert b"\xc4" not in out and b"\xd9" not in out


def test_raw_value_round_trips_non_utf8_bytes():
    value = bytes(range(256))
    codec = ServerCodec()
    (req,) = codec.feed(go_pack({"Seq": 1, "ServiceMethod": "KVS.Apply"}) + go_pack(value))
    assert raw_bytes(req.body) == value
    # a bin-typed value (what a newer encoder writes) decodes to the same bytes
    (req,) = codec.feed(
        go_pack({"Seq": 2, "ServiceMethod": "KVS.Apply"}) + msgpack.packb(value, use_bin_type=True)
    )
    assert raw_bytes(req.body) == value


def test_client_codec_matches_by_seq():
    client = ClientCodec()
    server = ServerCodec()
    (req,) = server.feed(client.request(41, "Status.Peers", {"Datacenter": "dc1"}))
    assert req == Request(41, "Status.Peers", {"Datacenter": "dc1"})
    out = ServerCodec.response(41, "Status.Peers", "", ["a", "b"])
    out += ServerCodec.response(40, "Status.Ping", "boom", None)
    assert client.feed(out) == [
        Response(41, "Status.Peers", "", ["a", "b"]),
        Response(40, "Status.Ping", "boom", {}),
    ]


@pytest.mark.parametrize(
    "header",
    [
        ["Seq", 1],  # not a map
        {"Seq": "1", "ServiceMethod": "Status.Ping"},  # Seq not an integer
        {"Seq": -1, "ServiceMethod": "Status.Ping"},  # not a uint64
        {"Seq": 1, "ServiceMethod": 5},
    ],
)
def test_header_of_the_wrong_shape_is_a_protocol_error(header):
    with pytest.raises(ProtocolError):
        ServerCodec().feed(msgpack.packb(header) + b"\x80")


def test_missing_header_fields_are_go_zero_values():
    (req,) = ServerCodec().feed(msgpack.packb({}) + b"\xc0")
    assert req == Request(0, "", None)


def test_garbage_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        ServerCodec().feed(b"\xc1\xc1\xc1")  # 0xc1 is never valid msgpack


def test_oversized_message_refused_before_buffering_it():
    codec = ServerCodec(max_message=1024)
    # a raw32 announcing 100 MB: refused once the buffer is full, never held
    head = go_pack({"Seq": 1, "ServiceMethod": "KVS.Apply"})
    codec.feed(head)
    with pytest.raises(ProtocolError, match="exceeds 1024"):
        for _ in range(10):
            codec.feed(b"\xdb\x05\xf5\xe1\x00" + b"x" * 500)
    assert codec._decoder.buffered <= 1024


def test_partial_while_a_request_is_incomplete():
    codec = ServerCodec()
    assert not codec.partial
    codec.feed(PING[:4])
    assert codec.partial
    codec.feed(PING[4:-1])  # header complete, body not
    assert codec.partial
    assert codec.feed(PING[-1:]) == [Request(1, "Status.Ping", {})]
    assert not codec.partial


def test_a_request_cut_anywhere_is_partial() -> None:
    """Every prefix of a request is an unfinished request (so the server's read timeout applies
    to a peer that stalls there), and a whole one is not."""
    data = ClientCodec.request(1, "Status.Ping", {"Datacenter": "dc1"})
    for cut in range(1, len(data)):
        codec = ServerCodec()
        assert codec.feed(data[:cut]) == [] and codec.partial, cut
        assert [r.seq for r in codec.feed(data[cut:])] == [1] and not codec.partial, cut
