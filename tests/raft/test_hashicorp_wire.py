"""hashicorp/raft 1.1.2's NetworkTransport encoding (consim.raft.hashicorp_wire).

The expected bytes were printed by tests/conformance/hashicorp_raft/wire_samples (a Go program
encoding the same messages with hashicorp/raft 1.1.2 and go-msgpack); the conformance test there
re-checks them against the Go program when Go is installed.
"""

from __future__ import annotations

import random

import msgpack
import pytest

from consim.raft import hashicorp_wire as hw
from consim.raft.configuration import decode_configuration, encode_configuration
from consim.raft.types import Configuration, EntryType, LogEntry, MalformedMessage, Server, Suffrage

GO = {
    "append_entries": "87a7456e74726965739285a444617461a568656c6c6faa457874656e73696f6e73c0a5496e6465780ba45465726d05a4547970650085a444617461c0aa457874656e73696f6e73c0a5496e6465780ca45465726d05a45479706501a64c6561646572ae3132372e302e302e313a38333030b14c6561646572436f6d6d6974496e64657809ac507265764c6f67456e7472790aab507265764c6f675465726d04af50726f746f636f6c56657273696f6e03a45465726d05",
    "heartbeat": "87a7456e7472696573c0a64c6561646572ae3132372e302e302e323a38333030b14c6561646572436f6d6d6974496e64657800ac507265764c6f67456e74727900ab507265764c6f675465726d00af50726f746f636f6c56657273696f6e03a45465726d07",
    "append_entries_response": "85a74c6173744c6f670cae4e6f52657472794261636b6f6666c2af50726f746f636f6c56657273696f6e03a753756363657373c3a45465726d05",
    "request_vote": "86a943616e646964617465ae3132372e302e302e333a38333030ac4c6173744c6f67496e64657828ab4c6173744c6f675465726d07b24c6561646572736869705472616e73666572c3af50726f746f636f6c56657273696f6e03a45465726d08",
    "request_vote_response": "84a74772616e746564c3a55065657273c0af50726f746f636f6c56657273696f6e03a45465726d08",
    "configuration": "81a7536572766572739283a741646472657373ae3132372e302e302e313a38333030a24944a469642d31a853756666726167650083a741646472657373ae3132372e302e302e323a38333030a24944a469642d32a8537566667261676501",
    "install_snapshot": "8aad436f6e66696775726174696f6eda005e81a7536572766572739283a741646472657373ae3132372e302e302e313a38333030a24944a469642d31a853756666726167650083a741646472657373ae3132372e302e302e323a38333030a24944a469642d32a8537566667261676501b2436f6e66696775726174696f6e496e6465785aac4c6173744c6f67496e64657864ab4c6173744c6f675465726d08a64c6561646572ae3132372e302e302e313a38333030a55065657273c0af50726f746f636f6c56657273696f6e03a453697a6503af536e617073686f7456657273696f6e01a45465726d09",
    "install_snapshot_response": "83af50726f746f636f6c56657273696f6e03a753756363657373c3a45465726d09",
    "timeout_now": "81af50726f746f636f6c56657273696f6e03",
    "timeout_now_response": "81af50726f746f636f6c56657273696f6e03",
    "big_data_prefix": "85a444617461da012c78",
}
CONF = Configuration(
    (Server("id-1", "127.0.0.1:8300"), Server("id-2", "127.0.0.2:8300", Suffrage.NONVOTER))
)


def go(name: str) -> bytes:
    return bytes.fromhex(GO[name])


def test_requests_encode_as_hashicorp_does() -> None:
    entries = [LogEntry(11, 5, EntryType.COMMAND, b"hello"), LogEntry(12, 5, EntryType.NOOP)]
    assert hw.append_entries_request(5, "127.0.0.1:8300", 10, 4, entries, 9) == b"\x00" + go(
        "append_entries"
    )
    assert hw.append_entries_request(7, "127.0.0.2:8300", 0, 0, [], 0) == b"\x00" + go("heartbeat")
    assert hw.request_vote_request(8, "127.0.0.3:8300", 40, 7, True) == b"\x01" + go("request_vote")
    assert hw.install_snapshot_request(9, "127.0.0.1:8300", 100, 8, CONF, 90, 3) == b"\x02" + go(
        "install_snapshot"
    )
    assert hw.timeout_now_request() == b"\x03" + go("timeout_now")
    big = hw.append_entries_request(
        1, "a", 0, 0, [LogEntry(1, 1, EntryType.COMMAND, b"x" * 300)], 0
    )
    assert go("big_data_prefix") in big  # raw16, never bin or str8
    # the assembled request is what the general encoder writes, for any batch size
    many = [LogEntry(i, 2, EntryType.COMMAND, bytes([i]) * i) for i in range(1, 40)]
    general = b"\x00" + hw.pack(
        {
            "Entries": [hw.encode_log(e) for e in many],
            "Leader": b"127.0.0.1:8300",
            "LeaderCommitIndex": 2**40,
            "PrevLogEntry": 0,
            "PrevLogTerm": 0,
            "ProtocolVersion": 3,
            "Term": 2,
        }
    )
    assert hw.append_entries_request(2, "127.0.0.1:8300", 0, 0, many, 2**40) == general


def test_responses_encode_as_hashicorp_does() -> None:
    assert hw.append_entries_response(5, 12, True) == b"\xa0" + go("append_entries_response")
    assert hw.request_vote_response(8, True) == b"\xa0" + go("request_vote_response")
    assert hw.install_snapshot_response(9, True) == b"\xa0" + go("install_snapshot_response")
    assert hw.timeout_now_response() == b"\xa0" + go("timeout_now_response")


def test_configuration_entries_are_hashicorps_encoding() -> None:
    assert encode_configuration(CONF) == go("configuration")
    assert decode_configuration(go("configuration")) == CONF
    # The list form older consim data dirs hold still reads.
    legacy = msgpack.packb(CONF.to_wire(), use_bin_type=True)
    assert decode_configuration(legacy) == CONF
    staging = hw.pack({"Servers": [{"Address": "a:1", "ID": "x", "Suffrage": 2}]})
    assert decode_configuration(staging).servers[0].suffrage is Suffrage.NONVOTER
    with pytest.raises(MalformedMessage):
        decode_configuration(hw.pack({"Servers": [{"Suffrage": 9}]}))


def test_request_reader_decodes_go_bytes_in_any_split() -> None:
    stream = (
        b"\x00"
        + go("append_entries")
        + b"\x02"
        + go("install_snapshot")
        + b"abc"
        + b"\x03"
        + go("timeout_now")
    )
    rng = random.Random(7)
    for _ in range(30):
        reader = hw.RequestReader(1 << 20)
        events = []
        pos = 0
        while pos < len(stream):
            n = rng.randint(1, 40)
            reader.feed(stream[pos : pos + n])
            pos += n
            events.extend(reader.events())
        kinds = [e[0] for e in events if not isinstance(e[1], bytes)]
        assert kinds == [hw.RPC_APPEND_ENTRIES, hw.RPC_INSTALL_SNAPSHOT, hw.RPC_TIMEOUT_NOW]
        assert b"".join(e[1] for e in events if isinstance(e[1], bytes)) == b"abc"
        ae = events[0][1]
        assert hw.uint(ae, b"Term") == 5 and hw.text(ae, b"Leader") == "127.0.0.1:8300"
        entries = hw.decode_entries(ae, hw.uint(ae, b"PrevLogEntry"))
        assert entries == (
            LogEntry(11, 5, EntryType.COMMAND, b"hello"),
            LogEntry(12, 5, EntryType.NOOP, b""),
        )
        assert not reader.in_message


def test_response_reader_pairs_error_and_body() -> None:
    reader = hw.ResponseReader(1 << 16)
    reader.feed(b"\xa0" + go("append_entries_response") + hw.error_response("unknown rpc type 9"))
    got = list(reader.responses())
    assert got[0][0] == "" and hw.boolean(got[0][1], b"Success") is True
    assert got[1] == ("unknown rpc type 9", {})


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x09" + go("timeout_now"), "unknown rpc type 9"),
        (b"\x00\x93\x01\x02\x03", "expected a map"),  # valid msgpack, wrong shape
        (b"\x00" + hw.pack({"ProtocolVersion": 9}), "unsupported protocol version"),
        (b"\x02" + hw.pack({"Size": -1}), "bad snapshot Size"),
        (b"\x00\xc1", "undecodable"),
    ],
)
def test_request_reader_refuses_garbage(data: bytes, why: str) -> None:
    reader = hw.RequestReader(1 << 16)
    reader.feed(data)
    with pytest.raises(MalformedMessage, match=why):
        list(reader.events())


def test_oversized_request_is_refused_before_buffering() -> None:
    reader = hw.RequestReader(1024)
    with pytest.raises(MalformedMessage, match="size limit"):
        reader.feed(b"\x00" + b"\xdb\xff\xff\xff\xff" + b"x" * 2000)


@pytest.mark.parametrize(
    "entries",
    [
        [{"Index": 12, "Term": 1, "Type": 0}],  # not contiguous after PrevLogEntry 10
        [{"Index": 11, "Term": 1, "Type": 2}],  # deprecated AddPeer
        [{"Index": 11, "Term": "x", "Type": 0}],
        [{"Index": 11, "Term": 1, "Type": 0, "Data": 5}],
        "not a list",
    ],
)
def test_bad_entries_are_malformed(entries: object) -> None:
    body = msgpack.unpackb(hw.pack({"Entries": entries}), raw=True)
    with pytest.raises(MalformedMessage):
        hw.decode_entries(body, 10)


def _decoded(entries: object, prev: int) -> object:
    try:
        return hw._decode_entries_strictly(entries, prev)
    except MalformedMessage as exc:
        return ("malformed", str(exc))


def test_the_usual_batch_decoder_agrees_with_the_strict_one() -> None:
    """decode_entries takes a fast loop for the usual batch and the strict one for anything
    else: on valid batches mutated at random both give the same entries or the same error."""
    seed = 14_007
    rng = random.Random(seed)
    print("seed", seed)
    odd: list[object] = [None, True, False, -1, 2**63, 1.0, b"", b"x", "x", [], {}, 3]
    fields = [b"Index", b"Term", b"Type", b"Data", b"Extensions"]
    fast_taken = 0
    for _ in range(3000):
        prev = rng.choice([0, 1, 10, (1 << 63) - 3])
        n = rng.randint(1, 4)
        kinds = list(hw._LOG_TYPE.items())
        batch: list[object] = []
        for i in range(n):
            kind, code = rng.choice(kinds)
            data = rng.choice([b"", b"cmd", None]) if kind is not EntryType.COMMAND else b"c"
            entry = LogEntry(prev + 1 + i, rng.choice([1, 5]), kind, data or b"")
            batch.append(
                {
                    b"Data": data,
                    b"Extensions": None,
                    b"Index": entry.index,
                    b"Term": entry.term,
                    b"Type": code,
                }
            )
        for _ in range(rng.choice([0, 0, 1, 2])):
            e = rng.choice(batch)
            what = rng.random() if isinstance(e, dict) else 1.0
            if what < 0.6:
                e[rng.choice(fields)] = rng.choice(odd)
            elif what < 0.8:
                e.pop(rng.choice(fields), None)
            else:
                batch[rng.randrange(len(batch))] = rng.choice(odd)
        body = msgpack.unpackb(hw.pack({"Entries": batch}), raw=True)
        strict = _decoded(body[b"Entries"], prev)
        fast = hw._decode_usual_entries(body[b"Entries"], prev)
        if fast is not None:
            fast_taken += 1
            assert fast == strict, batch
        try:
            public: object = hw.decode_entries(body, prev)
        except MalformedMessage as exc:
            public = ("malformed", str(exc))
        assert public == strict, batch
    assert fast_taken > 300  # the usual batch does take the fast loop
