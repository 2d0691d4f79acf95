"""The one parser for ``host:port`` address strings (RPC, serf and HTTP addresses, gossip members).

Every address that arrives from outside (a gossip ``alive`` message or push-pull state, an indirect
ping target, a query's origin, a datagram's or RPC hello's declared source, ``/v1/agent/join``)
goes through :func:`parse_address` before anything stores or dials it, so a bad one is rejected
where it enters instead of failing later in a timer or a send. The reasons are Go's texts, the ones
memberlist's ``resolveAddr`` passes on (``net.SplitHostPort``, ``strconv.ParseUint(port, 10,
16)``): ``/v1/agent/join`` shows them as Consul does.

consim does no DNS: the host must be an IP literal (IPv6 in brackets). A leaf module (no I/O), so
the sans-IO gossip core and the networks share it.
"""

from __future__ import annotations

import ipaddress

__all__ = ["AddressError", "parse_address", "valid_address", "host_part", "MAX_PORT"]

MAX_PORT = 65535
_DIGITS = frozenset("0123456789")
_CACHE: dict[str, tuple[str, int]] = {}  # the same few addresses are checked on every message
_CACHE_LIMIT = 65536


class AddressError(ValueError):
    """Not a usable ``host:port``; ``str(err)`` is the reason in Go's words."""


def _split_host_port(address: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort``, with its error texts."""
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise AddressError(f"address {address}: missing ']' in address")
        host, rest = address[1:end], address[end + 1 :]
        if not rest.startswith(":"):
            if rest == "":
                raise AddressError(f"address {address}: missing port in address")
            raise AddressError(f"address {address}: unexpected ']' in address")
        return host, rest[1:]
    host, sep, port = address.rpartition(":")
    if not sep:
        raise AddressError(f"address {address}: missing port in address")
    if ":" in host:
        raise AddressError(f"address {address}: too many colons in address")
    return host, port


def _parse_port(port: str) -> int:
    """Go's ``strconv.ParseUint(port, 10, 16)``: ASCII digits only, at most 65535."""
    if not port or not set(port) <= _DIGITS:
        raise AddressError(f'strconv.ParseUint: parsing "{port}": invalid syntax')
    value = int(port)
    if value > MAX_PORT:
        raise AddressError(f'strconv.ParseUint: parsing "{port}": value out of range')
    return value


def parse_address(address: str) -> tuple[str, int]:
    """``"127.0.0.2:8301"`` -> ``("127.0.0.2", 8301)``; :class:`AddressError` for anything else
    (no port, a port that is not a number or above 65535, an empty or non-IP host)."""
    if type(address) is not str:
        raise AddressError(f"address must be a string, got {type(address).__name__}")
    cached = _CACHE.get(address)
    if cached is not None:
        return cached
    host, port_text = _split_host_port(address)
    port = _parse_port(port_text)
    if not host:
        # What Go's resolver says for an empty name (memberlist would try DNS next).
        raise AddressError("lookup : no such host")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise AddressError(f"lookup {host}: no such host") from None
    result = (host, port)
    if len(_CACHE) < _CACHE_LIMIT:
        _CACHE[address] = result
    return result


def valid_address(address: object) -> bool:
    """True for a string :func:`parse_address` accepts."""
    if type(address) is str and address in _CACHE:
        return True
    try:
        parse_address(address)  # type: ignore[arg-type]
    except AddressError:
        return False
    return True


def host_part(address: str) -> str:
    """The host of an address :func:`parse_address` accepts (callers have validated it)."""
    return parse_address(address)[0]
