"""Consul's RPC framing, sans-IO: Go's ``net/rpc`` over msgpack (hashicorp/net-rpc-msgpackrpc)
with Consul's codec settings.

A conversation on a connection (first byte 0, ``RPCConsul``) or a yamux stream is a sequence of
msgpack values with no other framing: a request is a header ``{"ServiceMethod": str, "Seq":
u64}`` followed by the argument struct; a response is ``{"Error": str, "Seq", "ServiceMethod"}``
followed by the reply struct (Go's ``invalidRequest``, an empty map, when ``Error`` is set).
Responses are matched to requests by ``Seq``.

What Consul's handle (go-msgpack 0.5.5 ``MsgpackHandle{RawToString: true}``, ``WriteExt`` off)
puts on the wire, and so what :func:`go_pack` writes: strings and byte slices both as old-spec
"raw" (fixraw, raw16, raw32; never str8 or bin), structs as maps keyed by Go field name in sorted
order (embedded structs flattened: ``QueryOptions`` -> ``Token``, ``AllowStale``...), integers in
their smallest form, ``time.Duration`` as int64 nanoseconds, nil as ``c0``. The decoder accepts
every msgpack form; raw values come back as ``str`` (invalid UTF-8 kept with surrogateescape, so
a ``[]byte`` field such as ``DirEnt.Value`` is recovered exactly by :func:`raw_bytes`).

Abuse is bounded here: a value longer than ``max_message`` bytes, bytes that are not msgpack and
headers of the wrong shape raise :class:`ProtocolError` (the caller closes that connection, as
Go's codec does when a decode fails); nothing is buffered past ``max_message``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from consim.net.framing import MAX_FRAME

MAX_SEQ = 2**64 - 1


class ProtocolError(Exception):
    """The peer sent something that is not this protocol: close the connection."""


def _go_order(obj: Any) -> Any:
    """Dicts with their keys sorted (go-msgpack writes struct fields by sorted name; Go maps
    have no order, so sorting them too keeps consim's bytes deterministic)."""
    if isinstance(obj, dict):
        try:
            items = sorted(obj.items())
        except TypeError:
            items = list(obj.items())
        return {k: _go_order(v) for k, v in items}
    if isinstance(obj, list | tuple):
        return [_go_order(v) for v in obj]
    return obj


def go_pack(obj: Any, *, sort: bool = True) -> bytes:
    """One value as Consul's codec writes it (raises TypeError if not encodable).

    ``sort=False`` is for consim's own shapes (endpoints with no Consul struct mapping): dict
    order kept and bytes as msgpack bin, so a bytes field stays bytes at the other end (every
    decoder, Go's included, reads bin)."""
    if not sort:
        return msgpack.packb(obj, use_bin_type=True)
    return msgpack.packb(_go_order(obj), use_bin_type=False)


def raw_bytes(value: Any) -> bytes | None:
    """A Go ``[]byte`` field as decoded here (raw -> str with surrogateescape, bin -> bytes)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise ProtocolError(f"expected bytes, got {type(value).__name__}")


class _Decoder:
    """Complete msgpack values out of a byte stream, at most ``max_message`` bytes buffered."""

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self._unpacker = msgpack.Unpacker(
            raw=False,
            unicode_errors="surrogateescape",
            strict_map_key=False,
            max_buffer_size=max_message,
        )
        self._fed = 0
        # Where the last complete value ended. Not ``tell()`` itself: msgpack moves it past the
        # header of a container it has begun (a request header's map) while the rest is missing,
        # which would make a stalled request look complete and never time out.
        self._consumed = 0

    def feed(self, data: bytes) -> list[Any]:
        out: list[Any] = []
        view = memoryview(data)
        while view:
            # Feed no more than the buffer can take, drain, feed the rest: a value larger than
            # max_message can never complete and is refused once the buffer is full.
            room = self.max_message - self.buffered
            if room <= 0:
                raise ProtocolError(f"message exceeds {self.max_message} bytes")
            chunk, view = view[:room], view[room:]
            try:
                self._unpacker.feed(chunk)
            except msgpack.BufferFull:
                raise ProtocolError(f"message exceeds {self.max_message} bytes") from None
            self._fed += len(chunk)
            out.extend(self._drain())
        return out

    @property
    def buffered(self) -> int:
        """Bytes fed and not yet part of a returned value."""
        return self._fed - self._consumed

    def _drain(self) -> list[Any]:
        out: list[Any] = []
        try:
            for obj in self._unpacker:
                out.append(obj)
                self._consumed = self._unpacker.tell()
        except msgpack.OutOfData:  # pragma: no cover - iteration stops on its own
            pass
        except (ValueError, msgpack.UnpackException, TypeError) as exc:
            raise ProtocolError(f"undecodable message: {exc.__class__.__name__}") from None
        return out


@dataclass(frozen=True)
class Request:
    seq: int
    method: str
    body: Any


@dataclass(frozen=True)
class Response:
    seq: int
    method: str
    error: str
    body: Any


def _header_fields(obj: Any, names: tuple[str, ...]) -> tuple[int, str, str]:
    """(Seq, ServiceMethod, Error) of a header, Go's zero values for missing fields; a value Go
    could not decode into ``rpc.Request``/``rpc.Response`` is a ProtocolError."""
    if not isinstance(obj, dict):
        raise ProtocolError(f"header is not a map: {type(obj).__name__}")
    seq = obj.get("Seq", 0)
    method = obj.get("ServiceMethod", "")
    error = obj.get("Error", "") if "Error" in names else ""
    if seq is None:
        seq = 0
    if method is None:
        method = ""
    if error is None:
        error = ""
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise ProtocolError(f"header Seq is not a uint64: {seq!r}")
    if not isinstance(method, str) or not isinstance(error, str):
        raise ProtocolError("header ServiceMethod/Error is not a string")
    return seq, method, error


class _Conversation:
    """One side of a conversation: each message is a header, then a body."""

    _HEADER: tuple[str, ...] = ()

    def __init__(self, max_message: int = MAX_FRAME) -> None:
        self._decoder = _Decoder(max_message)
        self._header: tuple[int, str, str] | None = None

    @property
    def partial(self) -> bool:
        """True while a message has started and is not complete."""
        return self._header is not None or self._decoder.buffered > 0

    def _messages(self, data: bytes) -> list[tuple[tuple[int, str, str], Any]]:
        """(header fields, body) of every message ``data`` completes (raises ProtocolError)."""
        out: list[tuple[tuple[int, str, str], Any]] = []
        for obj in self._decoder.feed(data):
            if self._header is None:
                self._header = _header_fields(obj, self._HEADER)
            else:
                out.append((self._header, obj))
                self._header = None
        return out


class ServerCodec(_Conversation):
    """The server side of one conversation: bytes in -> requests; responses -> bytes."""

    _HEADER = ("Seq", "ServiceMethod")

    def feed(self, data: bytes) -> list[Request]:
        """The requests completed by ``data`` (raises ProtocolError)."""
        return [Request(seq, method, body) for (seq, method, _), body in self._messages(data)]

    @staticmethod
    def response(seq: int, method: str, error: str, body: Any, *, sort: bool = True) -> bytes:
        """A response; with an ``error`` the body is Go's ``invalidRequest`` (an empty map)."""
        header = {"Error": error, "Seq": seq, "ServiceMethod": method}
        return go_pack(header) + go_pack({} if error else body, sort=sort)


class ClientCodec(_Conversation):
    """The client side: requests -> bytes; bytes in -> responses (match them by ``seq``)."""

    _HEADER = ("Seq", "ServiceMethod", "Error")

    @staticmethod
    def request(seq: int, method: str, args: Any, *, sort: bool = True) -> bytes:
        return go_pack({"Seq": seq, "ServiceMethod": method}) + go_pack(args, sort=sort)

    def feed(self, data: bytes) -> list[Response]:
        """The responses completed by ``data`` (raises ProtocolError)."""
        return [Response(*header, body) for header, body in self._messages(data)]
