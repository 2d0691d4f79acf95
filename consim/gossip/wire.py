"""memberlist 0.2.2 and serf 0.9.4 on the wire (what Debian's ``serf`` agent speaks).

Packets (UDP)::

    packet   = [12 hasCrc][crc32 BE] msg | msg          (sealed by ``Keyring.seal`` when encrypted)
    msg      = [type][go-msgpack body] | [7 compound][n][n x u16 BE len][parts] | [9 compress][{Algo, Buf}]
    user msg = [8][serf type][go-msgpack body]

Bodies are go-msgpack ``MsgpackHandle{}`` encodings of Go structs: maps keyed by the Go field
name in sorted order, strings and byte slices both as old-spec raw (``use_bin_type=False``),
integers in their smallest form, ``time.Duration`` as int64 nanoseconds, nil as ``c0``.

Streams (TCP push-pull, same port)::

    stream   = [10 encrypt][L u32 BE][sealed, AAD = those 5 bytes] | plain
    plain    = [9 compress][{Algo, Buf: LZW(inner)}] | inner
    inner    = [6 pushPull][{Join, Nodes, UserStateLen}][Nodes x pushNodeState][user state]
             | [0 ping][ping] (answered with [2 ack][ack]) | [13 err][{Error}]

Decoding turns a packet into a list of messages as plain dicts with a ``"t"`` key (the form the
core handles); anything that does not parse raises :class:`WireError`, and the caller drops the
packet and counts it.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
import zlib
from typing import Any

import msgpack

from consim.address import valid_address
from consim.gossip import lzw

# memberlist message types
PING, INDIRECT_PING, ACK, SUSPECT, ALIVE, DEAD, PUSH_PULL, COMPOUND = range(8)
USER, COMPRESS, ENCRYPT, NACK, HAS_CRC, ERR = range(8, 14)
# serf message types (inside memberlist user messages)
S_LEAVE, S_JOIN, S_PUSH_PULL, S_USER_EVENT, S_QUERY, S_QUERY_RESP, S_CONFLICT = range(7)
S_KEY_REQUEST, S_KEY_RESPONSE, S_RELAY = 7, 8, 9

QUERY_FLAG_ACK = 1
QUERY_FLAG_NO_BROADCAST = 2
TAG_MAGIC = 0xFF
# serf's QueryBuffer / EventBuffer: ring sizes for de-duplication.
QUERY_BUFFER = 512
EVENT_BUFFER = 512

# memberlist ProtocolVersionMin/Max and the version a Consul server speaks (2), then serf's
# delegate protocol range and Consul's serf protocol 4: what a Consul server advertises.
VSN = (1, 5, 2, 2, 5, 4)
# Stream limit (memberlist maxPushStateBytes).
MAX_PUSH_STATE = 20 * 1024 * 1024
META_MAX = 512

_packb = msgpack.Packer(use_bin_type=False, autoreset=True).pack


class WireError(ValueError):
    """A packet or stream that memberlist would fail to decode."""


def pack(obj: Any) -> bytes:
    """go-msgpack's encoding of an already Go-shaped value (dict keys in Go field order)."""
    return _packb(obj)


def unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=True, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise WireError(f"msgpack: {exc}") from None


# ---------------------------------------------------------------- addresses and tags


@functools.lru_cache(maxsize=65536)
def ip_bytes(host: str) -> bytes:
    return ipaddress.ip_address(host).packed


@functools.lru_cache(maxsize=65536)
def ip_text(raw: Any) -> str:
    if not isinstance(raw, bytes) or len(raw) not in (4, 16):
        raise WireError("bad IP")
    ip = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # Go's net.IP keeps IPv4 as 16 bytes at times
    return str(ip)


# Addresses repeat endlessly (every packet names the same few hundred members): cache both ways.
@functools.lru_cache(maxsize=65536)
def _join_address(raw: bytes, port: int) -> str:
    host = ip_text(raw)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if not valid_address(address):
        raise WireError(f"bad address {address}")
    return address


def join_address(raw: Any, port: Any) -> str:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise WireError("bad port")
    if not isinstance(raw, bytes):
        raise WireError("bad IP")
    return _join_address(raw, port)


@functools.lru_cache(maxsize=65536)
def split_address(address: str) -> tuple[bytes, int]:
    host, _, port = address.rpartition(":")
    return ip_bytes(host.strip("[]")), int(port)


def encode_tags(tags: dict[str, str]) -> bytes:
    """serf's node meta (protocol >= 3): the magic byte then a msgpack map of strings."""
    return bytes([TAG_MAGIC]) + pack(tags)


def decode_tags(meta: Any) -> dict[str, str]:
    """serf decodeTags. The dict may be shared between calls: callers copy before changing it."""
    if not isinstance(meta, bytes):
        raise WireError("bad Meta")
    return _decode_tags(meta)


@functools.lru_cache(maxsize=4096)
def _decode_tags(meta: bytes) -> dict[str, str]:
    if not meta or meta[0] != TAG_MAGIC:
        return {"role": meta.decode("utf-8", "replace")}  # serf protocol < 3: the role only
    tags = unpack(meta[1:])
    if not isinstance(tags, dict):
        raise WireError("bad tags")
    out = {}
    for k, v in tags.items():
        if not isinstance(k, bytes) or not isinstance(v, bytes):
            raise WireError("bad tags")
        out[k.decode("utf-8", "replace")] = v.decode("utf-8", "replace")
    return out


# ---------------------------------------------------------------- field access


def _get(body: dict, key: bytes, typ: type, default: Any = ...) -> Any:
    value = body.get(key, default)
    if value is ...:
        raise WireError(f"missing {key.decode()}")
    if value is None and default is not ...:
        return default
    if typ is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise WireError(f"bad {key.decode()}")
    elif typ is str:
        if not isinstance(value, bytes):
            raise WireError(f"bad {key.decode()}")
        return value.decode("utf-8", "replace")
    elif not isinstance(value, typ):
        raise WireError(f"bad {key.decode()}")
    return value


def _body(data: bytes) -> dict:
    body = unpack(data)
    if not isinstance(body, dict):
        raise WireError("body is not a map")
    return body


# ---------------------------------------------------------------- memberlist messages (encode)


def enc_ping(seq: int, node: str, src: str, src_node: str) -> bytes:
    addr, port = split_address(src)
    return bytes([PING]) + pack(
        {"Node": node, "SeqNo": seq, "SourceAddr": addr, "SourceNode": src_node, "SourcePort": port}
    )


def enc_indirect_ping(
    seq: int, node: str, target: str, nack: bool, src: str, src_node: str
) -> bytes:
    taddr, tport = split_address(target)
    addr, port = split_address(src)
    return bytes([INDIRECT_PING]) + pack(
        {
            "Nack": nack,
            "Node": node,
            "Port": tport,
            "SeqNo": seq,
            "SourceAddr": addr,
            "SourceNode": src_node,
            "SourcePort": port,
            "Target": taddr,
        }
    )


# serf's ack payload: ping version 1 + a fresh Vivaldi coordinate (consim does not model RTT).
ACK_PAYLOAD = bytes([1]) + pack(
    {"Adjustment": 0.0, "Error": 1.5, "Height": 10.0e-6, "Vec": [0.0] * 8}
)


def enc_ack(seq: int, payload: bytes = ACK_PAYLOAD) -> bytes:
    return bytes([ACK]) + pack({"Payload": payload, "SeqNo": seq})


def enc_nack(seq: int) -> bytes:
    return bytes([NACK]) + pack({"SeqNo": seq})


def enc_suspect(node: str, inc: int, accuser: str) -> bytes:
    return bytes([SUSPECT]) + pack({"From": accuser, "Incarnation": inc, "Node": node})


def enc_dead(node: str, inc: int, accuser: str) -> bytes:
    return bytes([DEAD]) + pack({"From": accuser, "Incarnation": inc, "Node": node})


def enc_alive(
    node: str, inc: int, address: str, meta: bytes, vsn: tuple[int, ...] | list[int] = VSN
) -> bytes:
    addr, port = split_address(address)
    return bytes([ALIVE]) + pack(
        {"Addr": addr, "Incarnation": inc, "Meta": meta, "Node": node, "Port": port, "Vsn": vsn}
    )


def enc_user(serf_msg: bytes) -> bytes:
    return bytes([USER]) + serf_msg


def enc_compound(parts: list[bytes]) -> bytes:
    if len(parts) > 255:
        raise ValueError("too many parts")
    head = bytes([COMPOUND, len(parts)]) + b"".join(struct.pack(">H", len(p)) for p in parts)
    return head + b"".join(parts)


def enc_crc(msg: bytes) -> bytes:
    return bytes([HAS_CRC]) + struct.pack(">I", zlib.crc32(msg)) + msg


def enc_compress(msg: bytes) -> bytes:
    return bytes([COMPRESS]) + pack({"Algo": 0, "Buf": lzw.compress(msg)})


# ---------------------------------------------------------------- serf messages (encode)


def enc_s_leave(ltime: int, node: str, prune: bool) -> bytes:
    return bytes([S_LEAVE]) + pack({"LTime": ltime, "Node": node, "Prune": prune})


def enc_s_join(ltime: int, node: str) -> bytes:
    return bytes([S_JOIN]) + pack({"LTime": ltime, "Node": node})


def enc_s_user_event(ltime: int, name: str, payload: bytes, cc: bool) -> bytes:
    return bytes([S_USER_EVENT]) + pack(
        {"CC": cc, "LTime": ltime, "Name": name, "Payload": payload}
    )


def enc_s_query(
    *,
    ltime: int,
    qid: int,
    address: str,
    source_node: str,
    name: str,
    payload: bytes,
    timeout_ns: int,
    flags: int = 0,
    relay_factor: int = 0,
    filters: list[bytes] | None = None,
) -> bytes:
    addr, port = split_address(address)
    return bytes([S_QUERY]) + pack(
        {
            "Addr": addr,
            "Filters": filters,
            "Flags": flags,
            "ID": qid,
            "LTime": ltime,
            "Name": name,
            "Payload": payload,
            "Port": port,
            "RelayFactor": relay_factor,
            "SourceNode": source_node,
            "Timeout": timeout_ns,
        }
    )


def enc_s_query_resp(ltime: int, qid: int, sender: str, flags: int, payload: bytes | None) -> bytes:
    return bytes([S_QUERY_RESP]) + pack(
        {"Flags": flags, "From": sender, "ID": qid, "LTime": ltime, "Payload": payload}
    )


def enc_s_push_pull(
    *,
    ltime: int,
    status_ltimes: dict[str, int],
    left_members: list[str],
    event_ltime: int,
    events: list[Any] | None,
    query_ltime: int,
) -> bytes:
    return bytes([S_PUSH_PULL]) + pack(
        {
            "EventLTime": event_ltime,
            "Events": events,
            "LTime": ltime,
            "LeftMembers": left_members,
            "QueryLTime": query_ltime,
            "StatusLTimes": status_ltimes,
        }
    )


def enc_key_request(key: bytes | None) -> bytes:
    return bytes([S_KEY_REQUEST]) + pack({"Key": key if key is not None else b""})


def enc_key_response(result: bool, message: str, keys: list[str], primary: str) -> bytes:
    return bytes([S_KEY_RESPONSE]) + pack(
        {"Keys": keys, "Message": message, "PrimaryKey": primary, "Result": result}
    )


def dec_key_request(payload: Any) -> bytes:
    if not isinstance(payload, bytes) or not payload or payload[0] != S_KEY_REQUEST:
        raise WireError("bad key request")
    body = _body(payload[1:])
    key = body.get(b"Key")
    if key is None:
        return b""
    if not isinstance(key, bytes):
        raise WireError("bad Key")
    return key


def dec_key_response(payload: Any) -> dict[str, Any]:
    """serf keymanager's decode of one answer; WireError when it would not decode."""
    if not isinstance(payload, bytes) or not payload or payload[0] != S_KEY_RESPONSE:
        raise WireError("bad key response")
    body = _body(payload[1:])
    keys = body.get(b"Keys") or []
    if not isinstance(keys, list) or not all(isinstance(k, bytes) for k in keys):
        raise WireError("bad Keys")
    return {
        "result": bool(body.get(b"Result")),
        "message": _get(body, b"Message", str, ""),
        "keys": [k.decode("ascii", "replace") for k in keys],
        "primary": _get(body, b"PrimaryKey", str, ""),
    }


def enc_relay(dest: str, dest_name: str, inner: bytes) -> bytes:
    addr, port = split_address(dest)
    header = pack({"DestAddr": {"IP": addr, "Port": port, "Zone": ""}, "DestName": dest_name})
    return bytes([S_RELAY]) + header + inner


# ---------------------------------------------------------------- decoding


def decode_packet(data: bytes) -> list[dict[str, Any]]:
    """An opened UDP packet -> its messages; WireError if any layer does not parse."""
    if len(data) >= 5 and data[0] == HAS_CRC:
        (expected,) = struct.unpack(">I", data[1:5])
        if zlib.crc32(data[5:]) != expected:
            raise WireError("invalid checksum")
        data = data[5:]
    out: list[dict[str, Any]] = []
    _decode_msg(data, out, 0)
    return out


def _decode_msg(data: bytes, out: list[dict[str, Any]], depth: int) -> None:
    if not data:
        raise WireError("empty message")
    if depth > 4:
        raise WireError("nested too deep")
    t = data[0]
    body = data[1:]
    if t == COMPOUND:
        if not body:
            raise WireError("missing compound length byte")
        n = body[0]
        if len(body) < 1 + 2 * n:
            raise WireError("truncated len slice")
        lengths = struct.unpack(f">{n}H", body[1 : 1 + 2 * n])
        pos = 1 + 2 * n
        for length in lengths:
            if pos + length > len(body):
                raise WireError("truncated compound message")
            _decode_msg(body[pos : pos + length], out, depth + 1)
            pos += length
    elif t == COMPRESS:
        _decode_msg(decompress_body(body), out, depth + 1)
    elif t == USER:
        out.append(decode_serf(body))
    else:
        out.append(decode_memberlist(t, body))


def decompress_body(body: bytes) -> bytes:
    c = _body(body)
    if _get(c, b"Algo", int) != 0:
        raise WireError("unknown compression algorithm")
    buf = c.get(b"Buf")
    if not isinstance(buf, bytes):
        raise WireError("bad Buf")
    try:
        return lzw.decompress(buf, MAX_PUSH_STATE)
    except lzw.LZWError as exc:
        raise WireError(f"lzw: {exc}") from None


def decode_memberlist(t: int, data: bytes) -> dict[str, Any]:
    body = _body(data)
    if t == PING:
        return {
            "t": "ping",
            "seq": _get(body, b"SeqNo", int),
            "node": _get(body, b"Node", str, ""),
            "src": _source(body),
            "src_node": _get(body, b"SourceNode", str, ""),
        }
    if t == INDIRECT_PING:
        return {
            "t": "preq",
            "seq": _get(body, b"SeqNo", int),
            "node": _get(body, b"Node", str, ""),
            "ta": join_address(body.get(b"Target"), _get(body, b"Port", int)),
            "nack": bool(body.get(b"Nack")),
            "src": _source(body),
            "src_node": _get(body, b"SourceNode", str, ""),
        }
    if t == ACK:
        payload = body.get(b"Payload")
        return {"t": "ack", "seq": _get(body, b"SeqNo", int), "payload": payload}
    if t == NACK:
        return {"t": "nack", "seq": _get(body, b"SeqNo", int)}
    if t in (SUSPECT, DEAD):
        return {
            "t": "suspect" if t == SUSPECT else "dead",
            "node": _get(body, b"Node", str),
            "inc": _get(body, b"Incarnation", int),
            "from": _get(body, b"From", str, ""),
        }
    if t == ALIVE:
        return _alive(body, "alive")
    raise WireError(f"msg type ({t}) not supported")


_VALID_VSN: set[tuple[int, ...]] = set()


def _alive(body: dict, kind: str) -> dict[str, Any]:
    # Hot in push-pull (one call per member per exchange): fields read inline, Vsn checked once
    # per distinct value.
    vsn = body.get(b"Vsn")
    if vsn is not None:
        if isinstance(vsn, bytes):  # a []uint8 that went out as raw
            vsn = list(vsn)
        key = tuple(vsn) if isinstance(vsn, list) else None
        if key not in _VALID_VSN:
            if key is None or len(key) not in (0, 6):
                raise WireError("bad Vsn")
            for v in key:
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 256:
                    raise WireError("bad Vsn")
            _VALID_VSN.add(key)
    name = body.get(b"Node" if kind == "alive" else b"Name")
    inc = body.get(b"Incarnation")
    if not isinstance(name, bytes):
        raise WireError("bad Node")
    if not isinstance(inc, int) or isinstance(inc, bool):
        raise WireError("bad Incarnation")
    meta = body.get(b"Meta") or b""
    return {
        "t": kind,
        "node": name.decode("utf-8", "replace"),
        "inc": inc,
        "addr": join_address(body.get(b"Addr"), body.get(b"Port")),
        "tags": decode_tags(meta),
        "meta": meta,
        "vsn": vsn or None,
    }


def _source(body: dict) -> str | None:
    addr, port = body.get(b"SourceAddr"), body.get(b"SourcePort")
    if not addr or not port:
        return None
    return join_address(addr, port)


def decode_serf(data: bytes) -> dict[str, Any]:
    """One serf message (the bytes after memberlist's user type byte)."""
    if not data:
        raise WireError("empty user message")
    t = data[0]
    raw = bytes(data)
    if t == S_RELAY:
        unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
        unpacker.feed(data[1:])
        try:
            header = unpacker.unpack()
        except Exception:
            raise WireError("bad relay header") from None
        if not isinstance(header, dict) or not isinstance(header.get(b"DestAddr"), dict):
            raise WireError("bad relay header")
        dest = header[b"DestAddr"]
        return {
            "t": "s_relay",
            "dest": join_address(dest.get(b"IP"), dest.get(b"Port")),
            "dest_name": _get(header, b"DestName", str, ""),
            "inner": bytes(data[1 + unpacker.tell() :]),
        }
    body = _body(data[1:])
    if t == S_LEAVE:
        return {
            "t": "s_leave",
            "ltime": _get(body, b"LTime", int),
            "node": _get(body, b"Node", str),
            "prune": bool(body.get(b"Prune")),
            "raw": raw,
        }
    if t == S_JOIN:
        return {
            "t": "s_join",
            "ltime": _get(body, b"LTime", int),
            "node": _get(body, b"Node", str),
            "raw": raw,
        }
    if t == S_USER_EVENT:
        return {
            "t": "s_event",
            "ltime": _get(body, b"LTime", int),
            "name": _get(body, b"Name", str),
            "payload": _get(body, b"Payload", bytes, b""),
            "cc": bool(body.get(b"CC")),
            "raw": raw,
        }
    if t == S_QUERY:
        filters = body.get(b"Filters") or []
        if not isinstance(filters, list) or not all(isinstance(f, bytes) for f in filters):
            raise WireError("bad Filters")
        return {
            "t": "q",
            "ltime": _get(body, b"LTime", int),
            "id": _get(body, b"ID", int),
            "oa": join_address(body.get(b"Addr"), _get(body, b"Port", int)),
            "origin": _get(body, b"SourceNode", str, ""),
            "filters": filters,
            "flags": _get(body, b"Flags", int, 0),
            "relay": _get(body, b"RelayFactor", int, 0),
            "timeout": _get(body, b"Timeout", int, 0),
            "name": _get(body, b"Name", str),
            "payload": _get(body, b"Payload", bytes, b""),
            "raw": raw,
        }
    if t == S_QUERY_RESP:
        return {
            "t": "qr",
            "ltime": _get(body, b"LTime", int),
            "id": _get(body, b"ID", int),
            "from": _get(body, b"From", str),
            "flags": _get(body, b"Flags", int, 0),
            "payload": _get(body, b"Payload", bytes, b""),
        }
    if t in (S_PUSH_PULL, S_CONFLICT):
        return {"t": "s_ignored", "type": t}
    raise WireError(f"unknown serf message type {t}")


def filters_match(filters: list[bytes], name: str, tags: dict[str, str]) -> bool:
    """serf shouldProcessQuery: node-name filters (type 0) and tag regexps (type 1)."""
    import re

    for f in filters:
        if not f:
            raise WireError("empty filter")
        body = unpack(f[1:])
        if f[0] == 0:
            if not isinstance(body, list):
                raise WireError("bad node filter")
            if name.encode() not in body:
                return False
        elif f[0] == 1:
            if not isinstance(body, dict):
                raise WireError("bad tag filter")
            tag = _get(body, b"Tag", str)
            expr = _get(body, b"Expr", str)
            try:
                if tag not in tags or re.match(expr, tags[tag]) is None:
                    return False
            except re.error:
                return False
        else:
            raise WireError("unknown filter type")
    return True


# ---------------------------------------------------------------- push-pull stream


def enc_push_pull(
    nodes: list[tuple[str, str, bytes, int, int, Any]], user_state: bytes, join: bool
) -> bytes:
    """[6][header][states][user state]; each node: (name, address, meta, inc, state, vsn)."""
    parts = [
        bytes([PUSH_PULL]),
        pack({"Join": join, "Nodes": len(nodes), "UserStateLen": len(user_state)}),
    ]
    append = parts.append
    for name, address, meta, inc, state, vsn in nodes:
        append(_node_state(name, address, meta, inc, state, tuple(vsn)))
    append(user_state)
    return b"".join(parts)


# A member's state is the same bytes exchange after exchange until it changes: cache both ways.
@functools.lru_cache(maxsize=1 << 16)
def _node_state(
    name: str, address: str, meta: bytes, inc: int, state: int, vsn: tuple[int, ...]
) -> bytes:
    addr, port = split_address(address)
    return _packb(
        {
            "Addr": addr,
            "Incarnation": inc,
            "Meta": meta,
            "Name": name,
            "Port": port,
            "State": state,
            "Vsn": list(vsn),
        }
    )


@functools.lru_cache(maxsize=1 << 16)
def _decode_node_state(raw: bytes) -> dict[str, Any]:
    """One pushNodeState (shared between calls: read-only for callers)."""
    entry = unpack(raw)
    if not isinstance(entry, dict):
        raise WireError("bad node state")
    node = _alive(entry, "state")
    node["state"] = _get(entry, b"State", int)
    if node["state"] not in (0, 1, 2, 3):
        raise WireError("bad State")
    return node


def dec_stream_inner(data: bytes) -> dict[str, Any]:
    """A decrypted, decompressed stream: push-pull, ping, user message or error."""
    if not data:
        raise WireError("empty stream")
    t = data[0]
    if t == COMPRESS:
        return dec_stream_inner(decompress_body(data[1:]))
    if t == PING:
        return decode_memberlist(PING, data[1:])
    if t == ACK:
        return decode_memberlist(ACK, data[1:])
    if t == ERR:
        body = _body(data[1:])
        return {"t": "err", "error": _get(body, b"Error", str, "")}
    if t == USER:
        unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
        unpacker.feed(data[1:])
        try:
            header = unpacker.unpack()
        except Exception:
            raise WireError("bad user message header") from None
        if not isinstance(header, dict):
            raise WireError("bad user message header")
        length = _get(header, b"UserMsgLen", int)
        start = 1 + unpacker.tell()
        return {"t": "stream_user", "msg": decode_serf(data[start : start + length])}
    if t != PUSH_PULL:
        raise WireError(f"received invalid msgType ({t})")
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=MAX_PUSH_STATE)
    unpacker.feed(data[1:])
    try:
        header = unpacker.unpack()
        if not isinstance(header, dict):
            raise WireError("bad push-pull header")
        count = _get(header, b"Nodes", int)
        user_len = _get(header, b"UserStateLen", int, 0)
        if count < 0 or user_len < 0:
            raise WireError("bad push-pull header")
        states = []
        body = data[1:]
        for _ in range(count):
            start = unpacker.tell()
            unpacker.skip()
            states.append(_decode_node_state(bytes(body[start : unpacker.tell()])))
    except WireError:
        raise
    except Exception as exc:
        raise WireError(f"push-pull: {exc}") from None
    start = 1 + unpacker.tell()
    user = bytes(data[start : start + user_len])
    if len(user) != user_len:
        raise WireError(f"Failed to read full user state ({len(user)} / {user_len})")
    return {
        "t": "pp",
        "join": bool(header.get(b"Join")),
        "states": states,
        "user": decode_serf_push_pull(user) if user else None,
    }


def decode_serf_push_pull(user: bytes) -> dict[str, Any]:
    if user[0] != S_PUSH_PULL:
        raise WireError(f"Remote state has bad type prefix: {user[0]}")
    body = _body(user[1:])
    status = body.get(b"StatusLTimes") or {}
    left = body.get(b"LeftMembers") or []
    if not isinstance(status, dict) or not isinstance(left, list):
        raise WireError("bad serf push-pull")
    ltimes = {}
    for k, v in status.items():
        if not isinstance(k, bytes) or not isinstance(v, int) or isinstance(v, bool):
            raise WireError("bad StatusLTimes")
        ltimes[k.decode("utf-8", "replace")] = v
    if not all(isinstance(x, bytes) for x in left):
        raise WireError("bad LeftMembers")
    return {
        "ltime": _get(body, b"LTime", int, 0),
        "status_ltimes": ltimes,
        "left": [x.decode("utf-8", "replace") for x in left],
        "event_ltime": _get(body, b"EventLTime", int, 0),
        "query_ltime": _get(body, b"QueryLTime", int, 0),
        "events": body.get(b"Events"),
    }


def seal_stream(plain: bytes, keyring: Any, rng: Any) -> bytes:
    """memberlist encryptLocalState: the [10][length] header is the AES-GCM additional data."""
    length = 1 + 12 + len(plain) + 16
    header = bytes([ENCRYPT]) + struct.pack(">I", length)
    return header + keyring.seal(plain, rng, aad=header)


def stream_length(buf: bytes) -> int | None:
    """How many bytes the stream message starting ``buf`` takes, or None if more are needed.

    Encrypted streams say it in their header; plaintext ones are a run of msgpack objects whose
    count the header gives, so the reader parses as it goes (memberlist reads with a decoder)."""
    if not buf:
        return None
    if buf[0] == ENCRYPT:
        if len(buf) < 5:
            return None
        (length,) = struct.unpack(">I", buf[1:5])
        if length > MAX_PUSH_STATE:
            raise WireError(f"Remote node state is larger than limit ({length})")
        return 5 + length if len(buf) >= 5 + length else None
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=MAX_PUSH_STATE)
    unpacker.feed(buf[1:])
    try:
        first = unpacker.unpack()
        if buf[0] == PUSH_PULL:
            if not isinstance(first, dict):
                raise WireError("bad push-pull header")
            for _ in range(_get(first, b"Nodes", int)):
                unpacker.skip()
            end = 1 + unpacker.tell() + _get(first, b"UserStateLen", int, 0)
            return end if len(buf) >= end else None
        if buf[0] == USER:
            if not isinstance(first, dict):
                raise WireError("bad user header")
            end = 1 + unpacker.tell() + _get(first, b"UserMsgLen", int)
            return end if len(buf) >= end else None
    except msgpack.OutOfData:
        return None
    except WireError:
        raise
    except Exception as exc:
        raise WireError(f"stream: {exc}") from None
    return 1 + unpacker.tell()
