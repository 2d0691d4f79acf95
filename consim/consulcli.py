"""Consul's own commands, output byte for byte: ``operator raft list-peers|remove-peer|
transfer-leader`` and ``kv get|put``.

Each command is an async function over an :data:`HttpTransport` (method, path, headers, body ->
status, headers, body), so the same code runs against a live server (httpx, :func:`httpx_transport`)
and inside a virtual-time scenario (``Cluster.http`` in process). Flags follow Go's ``flag``
package as Consul uses it: single dash (``-stale``, ``-http-addr=127.0.0.1:8500``), ``-name value``
or ``-name=value``, flags before positional arguments, and the environment variables
``CONSUL_HTTP_ADDR`` / ``CONSUL_HTTP_TOKEN``. Output goes to stdout, errors to stderr, exit 1 on
failure, as Consul's ``cli.Ui`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

HttpTransport = Callable[
    [str, str, dict[str, str], bytes], Awaitable[tuple[int, dict[str, str], bytes]]
]
DEFAULT_HTTP_ADDR = "127.0.0.1:8500"
UINT64 = 1 << 64


class TransportError(Exception):
    """The request never got an HTTP answer; ``str()`` is what Go's client would say."""


@dataclass
class Output:
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""

    def out(self, text: str) -> None:
        self.stdout += text + "\n"

    def error(self, text: str) -> Output:
        self.stderr += text + "\n"
        self.exit_code = 1
        return self


@dataclass
class HttpFlags:
    """Consul's ``command/flags.HTTPFlags`` (client + server flags) that consim honours."""

    http_addr: str = ""
    token: str = ""
    datacenter: str = ""
    stale: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def address(self, env: Mapping[str, str]) -> str:
        addr = self.http_addr or env.get("CONSUL_HTTP_ADDR", "") or DEFAULT_HTTP_ADDR
        for scheme in ("http://", "https://"):
            if addr.startswith(scheme):
                addr = addr[len(scheme) :]
        return addr.rstrip("/")

    def token_value(self, env: Mapping[str, str]) -> str:
        return self.token or env.get("CONSUL_HTTP_TOKEN", "")


class FlagError(Exception):
    pass


_BOOL_FLAGS = {"stale"}
_STRING_FLAGS = {"http-addr", "token", "datacenter"}


def parse_flags(argv: list[str], flags: HttpFlags, own: set[str] | None = None) -> list[str]:
    """Go ``flag.Parse``: flags until the first non-flag or ``--``; returns the positionals."""
    own = own or set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return argv[i + 1 :]
        if not arg.startswith("-") or arg == "-":
            return argv[i:]
        name = arg.lstrip("-")
        if arg.startswith("---") or not name or name.startswith("="):
            raise FlagError(f"bad flag syntax: {arg}")
        value: str | None = None
        if "=" in name:
            name, value = name.split("=", 1)
        if name in _BOOL_FLAGS:
            if value is None or value.lower() in ("1", "t", "true"):
                flags.stale = True
            elif value.lower() in ("0", "f", "false"):
                flags.stale = False
            else:
                raise FlagError(f'invalid boolean value "{value}" for -{name}: parse error')
        elif name in _STRING_FLAGS or name in own:
            if value is None:
                i += 1
                if i >= len(argv):
                    raise FlagError(f"flag needs an argument: -{name}")
                value = argv[i]
            if name == "http-addr":
                flags.http_addr = value
            elif name == "token":
                flags.token = value
            elif name == "datacenter":
                flags.datacenter = value
            else:
                flags.extra[name] = value
        else:
            raise FlagError(f"flag provided but not defined: -{name}")
        i += 1
    return []


def _query(flags: HttpFlags, **params: str) -> str:
    pairs = [(k, v) for k, v in params.items()]
    if flags.datacenter:
        pairs.append(("dc", flags.datacenter))
    if flags.stale:
        pairs.append(("stale", ""))
    return ("?" + urlencode(pairs)) if pairs else ""


async def _call(
    transport: HttpTransport,
    flags: HttpFlags,
    env: Mapping[str, str],
    method: str,
    path: str,
    body: bytes = b"",
) -> tuple[int, bytes]:
    headers = {}
    token = flags.token_value(env)
    if token:
        headers["X-Consul-Token"] = token
    status, _, answer = await transport(method, path, headers, body)
    return status, answer


def _unexpected(status: int, body: bytes) -> str:
    # Consul's api client: fmt.Errorf("Unexpected response code: %d (%s)", code, body)
    return f"Unexpected response code: {status} ({body.decode('utf-8', 'replace')})"


def _columnize(rows: list[list[str]]) -> str:
    """ryanuber/columnize with Consul's config: columns padded, glue two spaces, last unpadded."""
    widths = [0] * max(len(r) for r in rows)
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in rows:
        cells = [c.ljust(widths[i]) if i < len(row) - 1 else c for i, c in enumerate(row)]
        lines.append("  ".join(cells))
    return "\n".join(lines).strip()


# ---- operator raft ---------------------------------------------------------------------------
async def list_peers(
    argv: list[str], transport: HttpTransport, env: Mapping[str, str] | None = None
) -> Output:
    env = os.environ if env is None else env
    out = Output()
    flags = HttpFlags()
    try:
        extra = parse_flags(argv, flags)
    except FlagError as exc:
        return out.error(f"Failed to parse args: {exc}")
    if extra:
        return out.error(f"Failed to parse args: unexpected arguments: {' '.join(extra)}")
    try:
        status, body = await _call(
            transport, flags, env, "GET", "/v1/operator/raft/configuration" + _query(flags)
        )
    except TransportError as exc:
        return out.error(f"Error getting peers: Failed to retrieve raft configuration: {exc}")
    if status != 200:
        return out.error(
            "Error getting peers: Failed to retrieve raft configuration: "
            + _unexpected(status, body)
        )
    reply = json.loads(body)
    servers = reply.get("Servers") or []
    leader_last = 0
    for s in servers:
        if s.get("Leader"):
            leader_last = int(s.get("LastIndex", 0))
    rows = [
        [
            "Node",
            "ID",
            "Address",
            "State",
            "Voter",
            "RaftProtocol",
            "Commit Index",
            "Trails Leader By",
        ]
    ]
    for s in servers:
        last = int(s.get("LastIndex", 0))
        # uint64 arithmetic, as in Go: a server ahead of a stale view wraps around.
        trails = (leader_last - last) % UINT64
        if s.get("Leader"):
            trails_text = "-"
        elif trails == 1:
            trails_text = "1 commit"
        else:
            trails_text = f"{trails} commits"
        rows.append(
            [
                str(s.get("Node", "")),
                str(s.get("ID", "")),
                str(s.get("Address", "")),
                "leader" if s.get("Leader") else "follower",
                "true" if s.get("Voter") else "false",
                str(s.get("ProtocolVersion") or "<=1"),
                str(last),
                trails_text,
            ]
        )
    out.out(_columnize(rows))
    return out


async def remove_peer(
    argv: list[str], transport: HttpTransport, env: Mapping[str, str] | None = None
) -> Output:
    env = os.environ if env is None else env
    out = Output()
    flags = HttpFlags()
    try:
        parse_flags(argv, flags, own={"address", "id"})
    except FlagError as exc:
        return out.error(f"Failed to parse args: {exc}")
    address = flags.extra.get("address", "")
    server_id = flags.extra.get("id", "")
    if not address and not server_id:
        return out.error("Error removing peer: an address or id is required for the peer to remove")
    if address and server_id:
        return out.error("Error removing peer: cannot give both an address and id")
    params = {"address": address} if address else {"id": server_id}
    try:
        status, body = await _call(
            transport,
            flags,
            env,
            "DELETE",
            "/v1/operator/raft/peer" + _query(flags, **params),
        )
    except TransportError as exc:
        return out.error(f"Error removing peer: {exc}")
    if status != 200:
        return out.error(f"Error removing peer: {_unexpected(status, body)}")
    if address:
        out.out(f'Removed peer with address "{address}"')
    else:
        out.out(f'Removed peer with id "{server_id}"')
    return out


async def transfer_leader(
    argv: list[str], transport: HttpTransport, env: Mapping[str, str] | None = None
) -> Output:
    env = os.environ if env is None else env
    out = Output()
    flags = HttpFlags()
    try:
        parse_flags(argv, flags, own={"id"})
    except FlagError as exc:
        return out.error(f"Failed to parse args: {exc}")
    params = {"id": flags.extra["id"]} if flags.extra.get("id") else {}
    # Consul's own text has the typo "transfering" and no colon before the wrapped error.
    try:
        status, body = await _call(
            transport,
            flags,
            env,
            "POST",
            "/v1/operator/raft/transfer-leader" + _query(flags, **params),
        )
    except TransportError as exc:
        return out.error(f"Error transfering leadership: Failed to transfer leadership {exc}")
    if status != 200:
        return out.error(
            "Error transfering leadership: Failed to transfer leadership "
            + _unexpected(status, body)
        )
    if not json.loads(body or b"{}").get("Success"):
        return out.error("Error transfering leadership: Failed to transfer leadership")
    out.out("Success")
    return out


# ---- kv ----------------------------------------------------------------------------------------
async def kv_get(
    argv: list[str], transport: HttpTransport, env: Mapping[str, str] | None = None
) -> Output:
    env = os.environ if env is None else env
    out = Output()
    flags = HttpFlags()
    try:
        args = parse_flags(argv, flags)
    except FlagError as exc:
        return out.error(f"Failed to parse args: {exc}")
    if not args:
        return out.error("Error! Missing KEY argument")
    if len(args) > 1:
        return out.error(f"Too many arguments (expected 1, got {len(args)})")
    key = args[0]
    try:
        status, body = await _call(
            transport, flags, env, "GET", "/v1/kv/" + quote(key, safe="/") + _query(flags)
        )
    except TransportError as exc:
        return out.error(f"Error querying Consul agent: {exc}")
    if status == 404:
        return out.error(f"Error! No key exists at: {key}")
    if status != 200:
        return out.error(f"Error querying Consul agent: {_unexpected(status, body)}")
    import base64

    entries = json.loads(body)
    value = entries[0].get("Value") if entries else None
    out.out(base64.b64decode(value).decode("utf-8", "replace") if value else "")
    return out


async def kv_put(
    argv: list[str], transport: HttpTransport, env: Mapping[str, str] | None = None
) -> Output:
    env = os.environ if env is None else env
    out = Output()
    flags = HttpFlags()
    try:
        args = parse_flags(argv, flags)
    except FlagError as exc:
        return out.error(f"Failed to parse args: {exc}")
    if not args:
        return out.error("Error! Missing KEY argument")
    if len(args) > 2:
        return out.error(f"Error! Too many arguments (expected 1 or 2, got {len(args)})")
    key = args[0]
    value = args[1] if len(args) == 2 else ""
    try:
        status, body = await _call(
            transport,
            flags,
            env,
            "PUT",
            "/v1/kv/" + quote(key, safe="/") + _query(flags),
            value.encode(),
        )
    except TransportError as exc:
        return out.error(f"Error! Failed writing data: {exc}")
    if status != 200:
        return out.error(f"Error! Failed writing data: {_unexpected(status, body)}")
    out.out(f"Success! Data written to: {key}")
    return out


COMMANDS: dict[tuple[str, ...], Callable[..., Awaitable[Output]]] = {
    ("operator", "raft", "list-peers"): list_peers,
    ("operator", "raft", "remove-peer"): remove_peer,
    ("operator", "raft", "transfer-leader"): transfer_leader,
    ("kv", "get"): kv_get,
    ("kv", "put"): kv_put,
}


async def run_command(
    argv: list[str], transport: HttpTransport, env: Mapping[str, str] | None = None
) -> Output:
    """Run ``argv`` (e.g. ``["operator", "raft", "list-peers", "-stale"]``)."""
    for words, command in COMMANDS.items():
        if tuple(argv[: len(words)]) == words:
            return await command(argv[len(words) :], transport, env)
    return Output().error(f"Unknown command: consul {' '.join(argv)}")


def httpx_transport(address: str, timeout: float = 65.0) -> HttpTransport:
    """A transport to a live agent at ``host:port``; connection errors read as Go's do."""

    async def transport(
        method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        import httpx

        url = f"http://{address}{path}"
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                response = await client.request(method, url, headers=headers, content=body)
        except httpx.ConnectError:
            verb = method[0] + method[1:].lower()
            raise TransportError(
                f'{verb} "{url}": dial tcp {address}: connect: connection refused'
            ) from None
        except httpx.HTTPError as exc:
            raise TransportError(f'{method} "{url}": {exc}') from None
        return response.status_code, dict(response.headers), response.content

    return transport


def main_for(words: tuple[str, ...]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import trio

        argv = list(args.consul_args)
        flags = HttpFlags()
        # The address is needed before the command parses its flags (it builds the transport);
        # Go's flag syntax: -http-addr=X, -http-addr X, with one or two dashes.
        for i, a in enumerate(argv):
            name, eq, value = a.lstrip("-").partition("=")
            if a.startswith("-") and name == "http-addr":
                flags.http_addr = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
        address = flags.address(os.environ)
        result: Output = trio.run(COMMANDS[words], argv, httpx_transport(address), os.environ)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.exit_code

    return run


def register_consul_commands(sub: Any) -> None:
    """Add ``consim operator raft ...`` and ``consim kv ...`` to the ``consim`` parser."""
    operator = sub.add_parser("operator", help="Consul's operator commands (same output)")
    op_sub = operator.add_subparsers(dest="operator_command", required=True)
    raft = op_sub.add_parser("raft", help="consul operator raft ...")
    raft_sub = raft.add_subparsers(dest="raft_command", required=True)
    for name in ("list-peers", "remove-peer", "transfer-leader"):
        p = raft_sub.add_parser(name, help=f"consul operator raft {name}", prefix_chars="+")
        p.add_argument("consul_args", nargs=argparse.REMAINDER)
        p.set_defaults(func=main_for(("operator", "raft", name)))
    kv = sub.add_parser("kv", help="consul kv get|put")
    kv_sub = kv.add_subparsers(dest="kv_command", required=True)
    for name in ("get", "put"):
        p = kv_sub.add_parser(name, help=f"consul kv {name}", prefix_chars="+")
        p.add_argument("consul_args", nargs=argparse.REMAINDER)
        p.set_defaults(func=main_for(("kv", name)))
