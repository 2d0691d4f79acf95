"""memberlist / serf wire format: byte-exact shapes, LZW, CRC, compound, and a fuzz of every
message type (malformed input is dropped and counted, never raised)."""

from __future__ import annotations

import os
import random
import zlib

import pytest

from consim.gossip import GossipCore, Keyring, lzw, wire

from .helpers import K1

ME = "127.0.0.1:8301"
PEER = "127.0.0.2:8301"


def test_ping_bytes_match_a_capture_of_a_serf_agent() -> None:
    # The ping a serf agent "b" at 127.0.50.2:7946 sent to "a" (wire notes, decrypted capture).
    captured = bytes.fromhex(
        "0085a44e6f6465a161a55365714e6f01aa536f7572636541646472a47f003202"
        "aa536f757263654e6f6465a162aa536f75726365506f7274cd1f0a"
    )
    assert wire.enc_ping(1, "a", "127.0.50.2:7946", "b") == captured
    [ping] = wire.decode_packet(captured)
    assert ping == {"t": "ping", "seq": 1, "node": "a", "src": "127.0.50.2:7946", "src_node": "b"}


def test_list_keys_query_matches_serfs_encoding() -> None:
    query = wire.enc_s_query(
        ltime=1,
        qid=0x2212A5B2,
        address="127.0.50.1:7946",
        source_node="a",
        name="_serf_list-keys",
        payload=wire.enc_key_request(None),
        timeout_ns=3_200_000_000,
    )
    expected_start = bytes.fromhex("048ba441646472a47f003201a746696c74657273c0a5466c61677300")
    assert query.startswith(expected_start)
    assert b"\xa7Timeout\xce\xbe\xbc\x20\x00" in query  # 3.2 s as int64 nanoseconds
    assert b"\xa7Payload\xa7\x07\x81\xa3Key\xa0" in query  # [7][{Key: ""}] as raw, not bin


def test_tags_are_serfs_meta_and_strings_are_raw_not_bin() -> None:
    meta = wire.encode_tags({"role": "consul", "dc": "dc1"})
    assert meta[0] == 0xFF
    assert b"\xd9" not in meta and b"\xc4" not in meta  # never str8 or bin (go-msgpack)
    assert wire.decode_tags(meta) == {"role": "consul", "dc": "dc1"}
    assert wire.decode_tags(b"consul") == {"role": "consul"}  # serf protocol < 3


def test_lzw_round_trips_and_rejects_garbage() -> None:
    rng = random.Random(5)
    for n in (0, 1, 300, 9000):
        data = bytes(rng.randrange(4) for _ in range(n))
        assert lzw.decompress(lzw.compress(data)) == data
    with pytest.raises(lzw.LZWError):
        lzw.decompress(b"\xff\xff\xff\xff")


def test_compressed_crc_compound_packet_is_understood() -> None:
    core = GossipCore("s1", ME, rng=random.Random(1), now=0.0)
    core.ready()
    alive = wire.enc_alive("s2", 1, PEER, wire.encode_tags({"role": "consul"}))
    ping = wire.enc_ping(3, "s1", PEER, "s2")
    packet = wire.enc_crc(wire.enc_compress(wire.enc_compound([ping, alive])))
    core.receive(PEER, packet, 0.1)
    assert [m.name for m in core.members()] == ["s1", "s2"]
    [(dst, ack)] = core.ready().datagrams
    assert dst == PEER and wire.decode_packet(ack)[0]["seq"] == 3
    # A wrong checksum is dropped (memberlist: "Got invalid checksum for UDP packet").
    bad = bytearray(packet)
    bad[1:5] = (zlib.crc32(packet[5:]) ^ 1).to_bytes(4, "big")
    core.receive(PEER, bytes(bad), 0.2)
    assert core.counters["dropped_malformed"] == 1


def _samples(core: GossipCore) -> list[bytes]:
    """One valid packet of every message type (and a push-pull stream)."""
    meta = wire.encode_tags({"role": "consul"})
    query = wire.enc_s_query(
        ltime=1,
        qid=5,
        address=PEER,
        source_node="s2",
        name="_serf_list-keys",
        payload=wire.enc_key_request(None),
        timeout_ns=10**9,
        flags=1,
        relay_factor=1,
    )
    resp = wire.enc_s_query_resp(1, 5, "s2", 0, wire.enc_key_response(True, "", [], ""))
    return [
        wire.enc_ping(1, "s1", PEER, "s2"),
        wire.enc_indirect_ping(2, "s3", "127.0.0.3:8301", True, PEER, "s2"),
        wire.enc_ack(1),
        wire.enc_nack(2),
        wire.enc_suspect("s3", 1, "s2"),
        wire.enc_dead("s3", 1, "s2"),
        wire.enc_alive("s3", 1, "127.0.0.3:8301", meta),
        wire.enc_user(wire.enc_s_leave(2, "s3", False)),
        wire.enc_user(wire.enc_s_join(2, "s3")),
        wire.enc_user(wire.enc_s_user_event(1, "consul:event:x", b"p", True)),
        wire.enc_user(query),
        wire.enc_user(resp),
        wire.enc_user(wire.enc_relay(PEER, "s2", resp)),
        wire.enc_compound([wire.enc_ack(1), wire.enc_nack(2)]),
        wire.enc_compress(wire.enc_ping(1, "s1", PEER, "s2")),
        wire.enc_crc(wire.enc_ack(1)),
    ]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1 and b:
            del b[rng.randrange(len(b)) :]
        elif op == 2:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif b:
            i = rng.randrange(len(b))
            b[i:i] = b[i : i + rng.randint(1, 8)]
    return bytes(b)


@pytest.mark.parametrize("keyed", [False, True])
def test_fuzzed_packets_of_every_type_are_dropped_and_counted_never_raised(keyed: bool) -> None:
    seed = int(os.environ.get("CONSIM_FUZZ_SEED", "20261201"))
    print(f"fuzz seed={seed} (CONSIM_FUZZ_SEED to replay)")
    rng = random.Random(seed + keyed)
    keyring = Keyring([K1]) if keyed else None
    core = GossipCore("s1", ME, rng=random.Random(1), now=0.0, keyring=keyring)
    seal = random.Random(2)
    samples = _samples(core)
    stream = wire.enc_push_pull(
        [("s2", PEER, b"", 1, 0, wire.VSN)],
        wire.enc_s_push_pull(
            ltime=1,
            status_ltimes={"s2": 1},
            left_members=[],
            event_ltime=1,
            events=None,
            query_ltime=1,
        ),
        False,
    )
    now = 0.0
    dropped_before = 0
    for i in range(3000):
        now += 0.001
        plain = _mutate(rng, rng.choice(samples))
        packet = keyring.seal(plain, seal) if keyring is not None else plain
        core.receive(PEER, packet, now)  # must never raise
        if i % 10 == 0:
            raw = _mutate(rng, stream)
            data = wire.seal_stream(raw, keyring, seal) if keyring is not None else raw
            core.receive_stream(PEER, data, now)
            core.receive_stream_reply(PEER, data, now)
        core.tick(now)
        core.ready()
    drops = sum(v for k, v in core.counters.items() if k.startswith("dropped_"))
    assert drops > dropped_before + 500, (seed, core.counters)  # most mutants are refused
    assert core.counters["packets_in"] == 3000
    # Still a working member afterwards: a clean ping gets its ack.
    ping = wire.enc_ping(99, "s1", PEER, "s2")
    core.receive(PEER, keyring.seal(ping, seal) if keyring else ping, now + 1)
    acks = [
        m
        for dst, d in core.ready().datagrams
        if dst == PEER
        for m in wire.decode_packet(keyring.open(d) if keyring else d)
        if m["t"] == "ack" and m["seq"] == 99
    ]
    assert acks, (seed, core.counters)


def test_user_events_are_deduplicated_by_lamport_time_and_logged_as_consul_does() -> None:
    core = GossipCore("s1", ME, rng=random.Random(1), now=0.0)
    core.ready()
    event = wire.enc_user(wire.enc_s_user_event(7, "consul:event:deploy", b"v1", True))
    core.receive(PEER, event, 0.1)
    core.receive(PEER, event, 0.2)  # the same event gossiped again
    other = wire.enc_user(wire.enc_s_user_event(7, "custom", b"", False))
    core.receive(PEER, other, 0.3)  # same LTime, another event: not a duplicate
    events = [(e.level, e.message) for e in core.ready().events if e.kind == "user_event"]
    assert events == [("DEBUG", "new event: deploy"), ("WARN", "Unhandled local event: custom")]
    assert core.event_clock.time() == 8  # witnessed: at least one past what it saw


def test_queries_are_deduplicated_and_acked_to_the_originator() -> None:
    core = GossipCore("s1", ME, rng=random.Random(1), now=0.0)
    core.ready()
    query = wire.enc_user(
        wire.enc_s_query(
            ltime=3,
            qid=11,
            address="127.0.0.9:7946",
            source_node="agent",
            name="hello",
            payload=b"",
            timeout_ns=10**9,
            flags=wire.QUERY_FLAG_ACK,
        )
    )
    core.receive(PEER, query, 0.1)
    core.receive(PEER, query, 0.2)
    sent = [(d, m) for d, p in core.ready().datagrams for m in wire.decode_packet(p)]
    acks = [(d, m) for d, m in sent if m["t"] == "qr"]
    assert len(acks) == 1
    dst, ack = acks[0]
    assert dst == "127.0.0.9:7946" and ack["flags"] == wire.QUERY_FLAG_ACK
    assert (ack["ltime"], ack["id"], ack["from"]) == (3, 11, "s1")
