"""Consul's own commands, output byte for byte: ``operator raft list-peers|remove-peer|
transfer-leader``, ``kv get|put``, ``keyring``, ``members`` and ``force-leave``.

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
import base64
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from consim.gossip.types import STATUS_NAMES
from consim.http.client import DEFAULT_TIMEOUT

HttpTransport = Callable[
    [str, str, dict[str, str], bytes], Awaitable[tuple[int, dict[str, str], bytes]]
]
DEFAULT_HTTP_ADDR = "127.0.0.1:8500"


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


# Consul's HTTPFlags: ClientFlags (every command) and ServerFlags (-datacenter, -stale; only the
# commands that merge them: operator raft, kv).
_CLIENT_STRING_FLAGS = frozenset({"http-addr", "token"})
_SERVER_STRING_FLAGS = frozenset({"datacenter"})
_SERVER_BOOL_FLAGS = frozenset({"stale"})


def _parse_bool(name: str, value: str | None) -> bool:
    if value is None or value.lower() in ("1", "t", "true"):
        return True
    if value.lower() in ("0", "f", "false"):
        return False
    raise FlagError(f'invalid boolean value "{value}" for -{name}: parse error')


def parse_flags(
    argv: list[str],
    flags: HttpFlags,
    own: set[str] | frozenset[str] | None = None,
    *,
    bools: frozenset[str] = frozenset(),
    server_flags: bool = True,
) -> list[str]:
    """Go ``flag.Parse``: flags until the first non-flag or ``--``; returns the positionals.

    ``own`` names the command's string flags, ``bools`` its boolean flags; their values land in
    ``flags.extra`` (booleans as ``"true"``/``"false"``).
    """
    own = own or set()
    strings = _CLIENT_STRING_FLAGS | (_SERVER_STRING_FLAGS if server_flags else frozenset())
    bool_flags = bools | (_SERVER_BOOL_FLAGS if server_flags else frozenset())
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
        if name in bool_flags:
            on = _parse_bool(name, value)
            if name == "stale":
                flags.stale = on
            else:
                flags.extra[name] = "true" if on else "false"
        elif name in strings or name in own:
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


# ---- the shared preamble ---------------------------------------------------------------------
class Failed(Exception):
    """Ends a command: ``str()`` goes to stderr and the exit code is 1."""


@dataclass(frozen=True)
class CommandSpec:
    """What differs between commands before they talk to the agent.

    ``strings``/``bools``: the command's own flags. ``parse_error``: the prefix Consul puts before
    a flag error (operator raft says ``Failed to parse args: ``; commands that let Go's ``flag``
    package report print the bare error followed by ``usage``). ``missing``/``too_many``: the
    texts for too few / too many positional arguments (``{n}`` is the count), ``max_args`` the
    limit, ``None`` meaning positionals are not checked here.
    """

    strings: frozenset[str] = frozenset()
    bools: frozenset[str] = frozenset()
    server_flags: bool = True
    parse_error: str = "Failed to parse args: "
    usage: str = ""
    min_args: int = 0
    max_args: int | None = None
    missing: str = ""
    too_many: str = ""


@dataclass
class Invocation:
    """One run of a command: parsed flags and positionals, the transport, the output so far."""

    flags: HttpFlags
    args: list[str]
    transport: HttpTransport
    env: Mapping[str, str]
    out: Output

    def flag(self, name: str) -> str:
        return self.flags.extra.get(name, "")

    def on(self, name: str) -> bool:
        return self.flags.extra.get(name) == "true"

    async def request(
        self,
        method: str,
        path: str,
        *,
        error: str,
        params: dict[str, str] | None = None,
        body: bytes = b"",
        accept: tuple[int, ...] = (200,),
    ) -> tuple[int, bytes]:
        """The HTTP call; a transport failure or an unaccepted status raises :class:`Failed`
        with ``error`` followed by Go's error text (``Unexpected response code: ...``)."""
        target = path + _query(self.flags, **(params or {}))
        try:
            status, answer = await _call(self.transport, self.flags, self.env, method, target, body)
        except TransportError as exc:
            raise Failed(f"{error}{exc}") from None
        if status not in accept:
            raise Failed(f"{error}{_unexpected(status, answer)}")
        return status, answer


CommandFunc = Callable[[list[str], HttpTransport, "Mapping[str, str] | None"], Awaitable[Output]]


def consul_command(spec: CommandSpec) -> Callable[[Callable[[Invocation], Awaitable[None]]], Any]:
    """Wrap a command body with the preamble every command shares: flags, positionals, errors."""

    def wrap(body: Callable[[Invocation], Awaitable[None]]) -> CommandFunc:
        async def run(
            argv: list[str], transport: HttpTransport, env: Mapping[str, str] | None = None
        ) -> Output:
            out = Output()
            flags = HttpFlags()
            try:
                args = parse_flags(
                    argv,
                    flags,
                    spec.strings,
                    bools=spec.bools,
                    server_flags=spec.server_flags,
                )
            except FlagError as exc:
                out.error(f"{spec.parse_error}{exc}")
                if spec.usage:
                    out.error(spec.usage.rstrip("\n"))
                return out
            if spec.max_args is not None:
                if len(args) < spec.min_args:
                    return out.error(spec.missing.format(n=len(args)))
                if len(args) > spec.max_args:
                    return out.error(spec.too_many.format(n=len(args), args=" ".join(args)))
            env_ = os.environ if env is None else env
            try:
                await body(Invocation(flags, args, transport, env_, out))
            except Failed as exc:
                out.error(str(exc))
            return out

        run.__name__ = body.__name__
        run.__doc__ = body.__doc__
        return run

    return wrap


# ---- operator raft ---------------------------------------------------------------------------
def _operator_spec(**spec: Any) -> CommandSpec:
    """The operator commands take no positionals; Go's flag package names the extra ones."""
    return CommandSpec(
        max_args=0, too_many="Failed to parse args: unexpected arguments: {args}", **spec
    )


@consul_command(_operator_spec())
async def list_peers(cmd: Invocation) -> None:
    _, body = await cmd.request(
        "GET",
        "/v1/operator/raft/configuration",
        error="Error getting peers: Failed to retrieve raft configuration: ",
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
        # Go subtracts uint64s, so a server ahead of the leader in a stale view would wrap
        # around to ~1.8e19; such a server trails by nothing.
        trails = max(0, leader_last - last)
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
    cmd.out.out(_columnize(rows))


@consul_command(CommandSpec(strings=frozenset({"address", "id"})))
async def remove_peer(cmd: Invocation) -> None:
    address, server_id = cmd.flag("address"), cmd.flag("id")
    if not address and not server_id:
        raise Failed("Error removing peer: an address or id is required for the peer to remove")
    if address and server_id:
        raise Failed("Error removing peer: cannot give both an address and id")
    params = {"address": address} if address else {"id": server_id}
    await cmd.request(
        "DELETE", "/v1/operator/raft/peer", params=params, error="Error removing peer: "
    )
    if address:
        cmd.out.out(f'Removed peer with address "{address}"')
    else:
        cmd.out.out(f'Removed peer with id "{server_id}"')


@consul_command(CommandSpec(strings=frozenset({"id"})))
async def transfer_leader(cmd: Invocation) -> None:
    params = {"id": cmd.flag("id")} if cmd.flag("id") else {}
    # Consul's own text has the typo "transfering" and no colon before the wrapped error.
    error = "Error transfering leadership: Failed to transfer leadership "
    _, body = await cmd.request(
        "POST", "/v1/operator/raft/transfer-leader", params=params, error=error
    )
    if not json.loads(body or b"{}").get("Success"):
        raise Failed(error.rstrip())
    cmd.out.out("Success")


# ---- kv ----------------------------------------------------------------------------------------
def _optional_key_spec(**spec: Any) -> CommandSpec:
    """kv get and kv delete: KEY may be left out (with -recurse: every key)."""
    return CommandSpec(
        min_args=0, max_args=1, too_many="Too many arguments (expected 1, got {n})", **spec
    )


@consul_command(_optional_key_spec(bools=frozenset({"recurse"})))
async def kv_get(cmd: Invocation) -> None:
    key = cmd.args[0] if cmd.args else ""
    if cmd.on("recurse"):
        # consul kv get -recurse: one "key:value" line per entry under the prefix.
        status, body = await cmd.request(
            "GET",
            "/v1/kv/" + quote(key, safe="/"),
            params={"recurse": ""},
            error="Error querying Consul agent: ",
            accept=(200, 404),
        )
        for entry in json.loads(body) if status == 200 else []:
            value = entry.get("Value")
            text = base64.b64decode(value).decode("utf-8", "replace") if value else ""
            cmd.out.out(f"{entry.get('Key', '')}:{text}")
        return
    if not key:
        raise Failed("Error! Missing KEY argument")
    status, body = await cmd.request(
        "GET",
        "/v1/kv/" + quote(key, safe="/"),
        error="Error querying Consul agent: ",
        accept=(200, 404),
    )
    if status == 404:
        raise Failed(f"Error! No key exists at: {key}")
    entries = json.loads(body)
    value = entries[0].get("Value") if entries else None
    cmd.out.out(base64.b64decode(value).decode("utf-8", "replace") if value else "")


@consul_command(
    CommandSpec(
        min_args=1,
        max_args=2,
        missing="Error! Missing KEY argument",
        too_many="Error! Too many arguments (expected 1 or 2, got {n})",
    )
)
async def kv_put(cmd: Invocation) -> None:
    key = cmd.args[0]
    value = cmd.args[1] if len(cmd.args) == 2 else ""
    await cmd.request(
        "PUT",
        "/v1/kv/" + quote(key, safe="/"),
        body=value.encode(),
        error="Error! Failed writing data: ",
    )
    cmd.out.out(f"Success! Data written to: {key}")


# ---- keyring -----------------------------------------------------------------------------------
KEYRING_USAGE = """\
Usage: consul keyring [options]

  Manages encryption keys used for gossip messages. Gossip encryption is
  optional. When enabled, this command may be used to examine active encryption
  keys in the cluster, add new keys, and remove old ones. When combined, this
  functionality provides the ability to perform key rotation cluster-wide,
  without disrupting the cluster.

  All operations performed by this command can only be run against server nodes,
  and affect both the LAN and WAN keyrings in lock-step.

  All variations of the keyring command return 0 if all nodes reply and there
  are no errors. If any node fails to reply or reports failure, the exit code
  will be 1.
"""


def _keyring_pool(response: dict[str, Any], keys: dict[str, int]) -> str:
    """Consul's formatResponse: blank line, ``POOL:``, ``  ===> node: message`` lines, then
    ``  KEY [n/N]`` lines. Go ranges over maps (random order); consim keeps the server's order."""
    pool = "WAN" if response.get("WAN") else f"{response.get('Datacenter', '')} (LAN)"
    if response.get("Segment"):
        pool += f" [{response['Segment']}]"
    lines = ["", pool + ":"]
    for node, message in (response.get("Messages") or {}).items():
        lines.append(f"  ===> {node}: {message}")
    total = int(response.get("NumNodes", 0))
    for key, count in keys.items():
        lines.append(f"  {key} [{count}/{total}]")
    return "\n".join(lines)


@consul_command(
    CommandSpec(
        strings=frozenset({"install", "use", "remove", "relay-factor"}),
        bools=frozenset({"list", "list-primary", "local-only"}),
        server_flags=False,
        parse_error="",
        usage=KEYRING_USAGE,
    )
)
async def keyring(cmd: Invocation) -> None:
    listing = cmd.on("list")
    primary = cmd.on("list-primary")
    install, use, remove = cmd.flag("install"), cmd.flag("use"), cmd.flag("remove")
    actions = sum(1 for a in (listing, primary, install, use, remove) if a)
    if actions == 0:
        raise Failed(KEYRING_USAGE.rstrip("\n"))
    if actions > 1:
        raise Failed("Only a single action is allowed")
    relay_text = cmd.flag("relay-factor") or "0"
    try:
        relay = int(relay_text, 0)
    except ValueError:
        cmd.out.error(f'invalid value "{relay_text}" for flag -relay-factor: parse error')
        raise Failed(KEYRING_USAGE.rstrip("\n")) from None
    if not 0 <= relay <= 5:
        raise Failed("Error parsing relay factor: Relay factor must be in range: [0, 5]")
    local = cmd.on("local-only")
    if local and not listing:
        raise Failed("Error validating local-only: local-only can only be set for list requests")
    params = {"relay-factor": str(relay)} if relay else {}
    if listing or primary:
        what = "primary encryption keys" if primary else "encryption keys"
        cmd.out.out(f"==> Gathering installed {what}...")
        if local:
            params["local-only"] = "true"
        _, body = await cmd.request("GET", "/v1/operator/keyring", params=params, error="error: ")
        for response in json.loads(body) or []:
            keys = response.get("PrimaryKeys" if primary else "Keys") or {}
            cmd.out.out(_keyring_pool(response, keys))
        return
    method, key, doing = (
        ("POST", install, "Installing new gossip encryption key...")
        if install
        else ("PUT", use, "Changing primary gossip encryption key...")
        if use
        else ("DELETE", remove, "Removing gossip encryption key...")
    )
    cmd.out.out(f"==> {doing}")
    await cmd.request(
        method,
        "/v1/operator/keyring",
        params=params,
        body=json.dumps({"Key": key}).encode(),
        error="error: ",
    )


# ---- members -----------------------------------------------------------------------------------
MEMBERS_USAGE = """\
Usage: consul members [options]

  Outputs the members of a running Consul agent.
"""


def _member_status(member: dict[str, Any]) -> str:
    status = member.get("Status", 0)
    # serf.MemberStatus(n).String()
    return STATUS_NAMES.get(status, f"unknown({status})")


@consul_command(
    CommandSpec(
        strings=frozenset({"status", "segment"}),
        bools=frozenset({"wan", "detailed"}),
        server_flags=False,
        parse_error="",
        usage=MEMBERS_USAGE,
    )
)
async def members(cmd: Invocation) -> None:
    """``consul members``: the standard table (Node, Address, Status, Type, Build, Protocol, DC,
    Partition, Segment) or ``-detailed`` (Node, Address, Status, Tags); exit 2 when the
    ``-status`` regexp matches nobody."""
    import re

    pattern = cmd.flags.extra.get("status", ".*")
    try:
        status_re = re.compile(pattern)
    except re.error as exc:
        raise Failed(f"Failed to compile status regexp: {exc}") from None
    segment = cmd.flags.extra.get("segment", "_all")
    params = {"segment": segment} if segment else {}
    if cmd.on("wan"):
        params = {"wan": "1", **params}
    _, body = await cmd.request(
        "GET", "/v1/agent/members", params=params, error="Error retrieving members: "
    )
    shown = []
    for m in json.loads(body) or []:
        tags = dict(m.get("Tags") or {})
        tags.setdefault("partition", "")
        if not tags["partition"]:
            tags["partition"] = "default"
        if segment == "_all" and tags.get("role") == "consul":
            tags["segment"] = "<all>"
        elif not tags.get("segment"):
            tags["segment"] = "<default>"
        if status_re.search(_member_status(m)):
            shown.append((m, tags))
    if not shown:
        cmd.out.exit_code = 2
        return
    # servers first, then by name (Consul's ByMemberNamePartitionAndSegment for one partition)
    shown.sort(key=lambda mt: (mt[1].get("role") != "consul", mt[1]["segment"], mt[0]["Name"]))
    rows: list[list[str]]
    if cmd.on("detailed"):
        rows = [["Node", "Address", "Status", "Tags"]]
        for m, _ in shown:
            raw = m.get("Tags") or {}
            tag_text = ",".join(f"{k}={raw[k]}" for k in sorted(raw))
            rows.append([m["Name"], _addr(m), _member_status(m), tag_text])
    else:
        rows = [
            ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Partition", "Segment"]
        ]
        for m, tags in shown:
            build = tags.get("build", "") or "< 0.3"
            build = build.split(":", 1)[0]
            role = {"consul": "server", "node": "client"}.get(tags.get("role", ""))
            if role is None:
                rows.append([m["Name"], _addr(m), _member_status(m), "unknown", "", "", "", "", ""])
                continue
            rows.append(
                [
                    m["Name"],
                    _addr(m),
                    _member_status(m),
                    role,
                    build,
                    tags.get("vsn", ""),
                    tags.get("dc", ""),
                    tags["partition"],
                    tags["segment"],
                ]
            )
    cmd.out.out(_columnize(rows))


def _addr(member: dict[str, Any]) -> str:
    # Go's net.TCPAddr.String(): IPv6 in brackets.
    host = str(member.get("Addr", ""))
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{member.get('Port', 0)}"


# ---- force-leave -------------------------------------------------------------------------------
FORCE_LEAVE_USAGE = """\
Usage: consul force-leave [options] name

  Forces a member of a Consul cluster to enter the "left" state. Note
  that if the member is still actually alive, it will eventually rejoin
  the cluster. This command is most useful for cleaning out "failed" nodes
  that are never coming back. If you do not force leave a failed node,
  Consul will attempt to reconnect to those failed nodes for some period of
  time before eventually reaping them.

  -prune    Remove agent completely from list of members
"""
_FORCE_LEAVE_ARGS = (
    "A single node name must be specified to force leave.\n\n" + FORCE_LEAVE_USAGE.rstrip("\n")
)


@consul_command(
    CommandSpec(
        bools=frozenset({"prune"}),
        server_flags=False,
        parse_error="",
        usage=FORCE_LEAVE_USAGE,
        min_args=1,
        max_args=1,
        missing=_FORCE_LEAVE_ARGS,
        too_many=_FORCE_LEAVE_ARGS,
    )
)
async def force_leave(cmd: Invocation) -> None:
    """Prints nothing on success, as Consul."""
    params = {"prune": "1"} if cmd.on("prune") else {}
    await cmd.request(
        "PUT",
        "/v1/agent/force-leave/" + quote(cmd.args[0], safe=""),
        params=params,
        error="Error force leaving: ",
    )


@consul_command(
    _optional_key_spec(bools=frozenset({"recurse", "cas"}), strings=frozenset({"modify-index"}))
)
async def kv_delete(cmd: Invocation) -> None:
    key = cmd.args[0] if cmd.args else ""
    recurse = cmd.on("recurse")
    if not key and not recurse:
        raise Failed("Error! Missing KEY argument")
    if recurse and cmd.on("cas"):
        raise Failed("Cannot specify both -cas and -recurse!")
    params: dict[str, str] = {}
    if recurse:
        params["recurse"] = ""
    if cmd.on("cas"):
        index = cmd.flag("modify-index")
        if not index or index == "0":
            raise Failed("Must specify -modify-index with -cas!")
        params["cas"] = index
    _, body = await cmd.request(
        "DELETE",
        "/v1/kv/" + quote(key, safe="/"),
        params=params,
        error=f"Error! Did not delete key {key}: ",
    )
    if cmd.on("cas") and body.strip() != b"true":
        raise Failed(f"Error! Did not delete key {key}: CAS failed")
    if recurse:
        cmd.out.out(f"Success! Deleted keys with prefix: {key}")
    else:
        cmd.out.out(f"Success! Deleted key: {key}")


# ---- agent: join, leave, info --------------------------------------------------------------
@consul_command(CommandSpec(bools=frozenset({"wan"}), server_flags=False))
async def join(cmd: Invocation) -> None:
    if not cmd.args:
        raise Failed("At least one address to join must be specified.")
    joined = 0
    for address in cmd.args:
        params = {"wan": "1"} if cmd.on("wan") else {}
        try:
            await cmd.request(
                "PUT",
                "/v1/agent/join/" + quote(address, safe=":"),
                params=params,
                error="",
            )
        except Failed as exc:
            cmd.out.stderr += f"Error joining address '{address}': {exc}\n"
            continue
        joined += 1
    if joined == 0:
        raise Failed("Failed to join any nodes.")
    cmd.out.out(f"Successfully joined cluster by contacting {joined} nodes.")


@consul_command(CommandSpec(server_flags=False, max_args=0, too_many="Error! Too many arguments"))
async def leave(cmd: Invocation) -> None:
    await cmd.request("PUT", "/v1/agent/leave", error="Error leaving: ")
    cmd.out.out("Graceful leave complete")


@consul_command(CommandSpec(server_flags=False))
async def info(cmd: Invocation) -> None:
    """``consul info``: the agent's Stats, sections and keys sorted, ``\tkey = value``."""
    _, body = await cmd.request("GET", "/v1/agent/self", error="Error querying agent: ")
    stats = json.loads(body).get("Stats") or {}
    for section in sorted(stats):
        cmd.out.out(f"{section}:")
        values = stats[section] or {}
        for key in sorted(values):
            cmd.out.out(f"\t{key} = {values[key]}")


# ---- operator autopilot ----------------------------------------------------------------------
def _go_duration_text(value: Any) -> str:
    from consim.golike import format_duration, parse_duration

    if isinstance(value, str):
        try:
            return format_duration(parse_duration(value))
        except ValueError:
            return value
    return format_duration(float(value or 0))


async def _autopilot_config(cmd: Invocation) -> dict[str, Any]:
    _, body = await cmd.request(
        "GET",
        "/v1/operator/autopilot/configuration",
        error="Error querying Autopilot configuration: ",
    )
    conf: dict[str, Any] = json.loads(body)
    return conf


@consul_command(_operator_spec())
async def autopilot_get_config(cmd: Invocation) -> None:
    c = await _autopilot_config(cmd)
    out = cmd.out.out
    out(f"CleanupDeadServers = {'true' if c.get('CleanupDeadServers') else 'false'}")
    out(f"LastContactThreshold = {_go_duration_text(c.get('LastContactThreshold'))}")
    out(f"MaxTrailingLogs = {c.get('MaxTrailingLogs', 0)}")
    out(f"MinQuorum = {c.get('MinQuorum', 0)}")
    out(f"ServerStabilizationTime = {_go_duration_text(c.get('ServerStabilizationTime'))}")
    out(f"RedundancyZoneTag = {json.dumps(c.get('RedundancyZoneTag', ''))}")
    out(f"DisableUpgradeMigration = {'true' if c.get('DisableUpgradeMigration') else 'false'}")
    out(f"UpgradeVersionTag = {json.dumps(c.get('UpgradeVersionTag', ''))}")


_AUTOPILOT_BOOLS = {
    "cleanup-dead-servers": "CleanupDeadServers",
    "disable-upgrade-migration": "DisableUpgradeMigration",
}
_AUTOPILOT_STRINGS = {
    "last-contact-threshold": "LastContactThreshold",
    "server-stabilization-time": "ServerStabilizationTime",
    "max-trailing-logs": "MaxTrailingLogs",
    "min-quorum": "MinQuorum",
    "redundancy-zone-tag": "RedundancyZoneTag",
    "upgrade-version-tag": "UpgradeVersionTag",
}


@consul_command(_operator_spec(strings=frozenset(_AUTOPILOT_STRINGS) | frozenset(_AUTOPILOT_BOOLS)))
async def autopilot_set_config(cmd: Invocation) -> None:
    """Reads the configuration, changes the flags given, writes it back with ``?cas``."""
    from consim.golike import parse_duration

    conf = await _autopilot_config(cmd)
    for flag, field_name in _AUTOPILOT_BOOLS.items():
        value = cmd.flag(flag)
        if value:
            try:
                conf[field_name] = _parse_bool(flag, value)
            except FlagError as exc:
                raise Failed(f"Failed to parse args: {exc}") from None
    for flag, field_name in _AUTOPILOT_STRINGS.items():
        value = cmd.flag(flag)
        if not value:
            continue
        if field_name in ("LastContactThreshold", "ServerStabilizationTime"):
            try:
                parse_duration(value)
            except ValueError:
                raise Failed(
                    f'Failed to parse args: invalid value "{value}" for flag -{flag}: parse error'
                ) from None
            conf[field_name] = value
        elif field_name in ("MaxTrailingLogs", "MinQuorum"):
            if not value.isdigit():
                raise Failed(
                    f'Failed to parse args: invalid value "{value}" for flag -{flag}: parse error'
                )
            conf[field_name] = int(value)
        else:
            conf[field_name] = value
    index = str(conf.pop("ModifyIndex", 0))
    conf.pop("CreateIndex", None)
    _, answer = await cmd.request(
        "PUT",
        "/v1/operator/autopilot/configuration",
        params={"cas": index},
        body=json.dumps(conf).encode(),
        error="Error setting Autopilot configuration: ",
    )
    if answer.strip() != b"true":
        cmd.out.out("Configuration could not be atomically updated, please try again")
        return
    cmd.out.out("Configuration updated!")


@consul_command(_operator_spec(strings=frozenset({"format"})))
async def autopilot_state(cmd: Invocation) -> None:
    """``consul operator autopilot state``: the pretty format (``-format=json`` as indented JSON)."""
    fmt = cmd.flag("format") or "pretty"
    if fmt not in ("pretty", "json"):
        raise Failed(f"Error: Unknown format: {fmt}")
    _, body = await cmd.request(
        "GET", "/v1/operator/autopilot/state", error="Error querying Autopilot state: "
    )
    state = json.loads(body)
    if fmt == "json":
        cmd.out.out(json.dumps(state, indent=4))
        return
    lines = [
        f"Healthy:                      {'true' if state.get('Healthy') else 'false'}",
        f"Failure Tolerance:            {state.get('FailureTolerance', 0)}",
        "Optimistic Failure Tolerance: "
        f"{state.get('OptimisticFailureTolerance', state.get('FailureTolerance', 0))}",
        f"Leader:                       {state.get('Leader', '')}",
        "Voters:",
    ]
    lines += [f"   {v}" for v in state.get("Voters") or []]
    lines.append("Servers:")
    for sid in sorted(state.get("Servers") or {}):
        srv = state["Servers"][sid]
        leader, voter = srv.get("Leader"), srv.get("Voter")
        status = srv.get("Status") or ("leader" if leader else "voter" if voter else "non-voter")
        lines += [
            f"   {sid}",
            f"      Name:            {srv.get('Name', '')}",
            f"      Address:         {srv.get('Address', '')}",
            f"      Version:         {srv.get('Version', '')}",
            f"      Status:          {status}",
            f"      Node Type:       {srv.get('NodeType', 'voter')}",
            f"      Node Status:     {srv.get('NodeStatus', srv.get('SerfStatus', ''))}",
            f"      Healthy:         {'true' if srv.get('Healthy') else 'false'}",
            f"      Last Contact:    {_go_duration_text(srv.get('LastContact'))}",
            f"      Last Term:       {srv.get('LastTerm', 0)}",
            f"      Last Index:      {srv.get('LastIndex', 0)}",
        ]
    cmd.out.stdout += "\n".join(lines) + "\n"


_ONE_FILE = CommandSpec(
    min_args=1,
    max_args=1,
    missing="Missing FILE argument",
    too_many="Too many arguments (expected 1, got {n})",
)


def _snapshot_index(data: bytes) -> int:
    """Consul's snapshot.Verify: the archive reads and its sums match; the index it was taken at."""
    import io
    import tarfile

    from consim.net.network import RpcError
    from consim.server.endpoints.snapshot import read_archive

    try:
        read_archive(data)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            member = tar.extractfile("meta.json")
            meta = json.loads(member.read()) if member is not None else {}
    except (RpcError, tarfile.TarError, OSError, ValueError, KeyError) as exc:
        raise Failed(f"Error verifying snapshot file: {getattr(exc, 'message', exc)}") from None
    return int(meta.get("Index", 0))


@consul_command(_ONE_FILE)
async def snapshot_save(cmd: Invocation) -> None:
    """``consul snapshot save FILE``: GET /v1/snapshot, verify it, write it (via a .tmp file)."""
    path = cmd.args[0]
    _, data = await cmd.request("GET", "/v1/snapshot", error="Error saving snapshot: ")
    index = _snapshot_index(data)
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise Failed(f"Error writing snapshot file: {exc}") from None
    cmd.out.out(f"Saved and verified snapshot to index {index}")


@consul_command(_ONE_FILE)
async def snapshot_restore(cmd: Invocation) -> None:
    """``consul snapshot restore FILE``: PUT the archive to /v1/snapshot."""
    try:
        with open(cmd.args[0], "rb") as f:
            data = f.read()
    except OSError as exc:
        raise Failed(f"Error opening snapshot file: {exc}") from None
    await cmd.request("PUT", "/v1/snapshot", body=data, error="Error restoring snapshot: ")
    cmd.out.out("Restored snapshot")


COMMANDS: dict[tuple[str, ...], Callable[..., Awaitable[Output]]] = {
    ("operator", "raft", "list-peers"): list_peers,
    ("operator", "raft", "remove-peer"): remove_peer,
    ("operator", "raft", "transfer-leader"): transfer_leader,
    ("kv", "get"): kv_get,
    ("kv", "put"): kv_put,
    ("kv", "delete"): kv_delete,
    ("join",): join,
    ("leave",): leave,
    ("info",): info,
    ("operator", "autopilot", "get-config"): autopilot_get_config,
    ("operator", "autopilot", "set-config"): autopilot_set_config,
    ("operator", "autopilot", "state"): autopilot_state,
    ("keyring",): keyring,
    ("members",): members,
    ("force-leave",): force_leave,
    ("snapshot", "save"): snapshot_save,
    ("snapshot", "restore"): snapshot_restore,
}


async def run_command(
    argv: list[str], transport: HttpTransport, env: Mapping[str, str] | None = None
) -> Output:
    """Run ``argv`` (e.g. ``["operator", "raft", "list-peers", "-stale"]``)."""
    for words, command in COMMANDS.items():
        if tuple(argv[: len(words)]) == words:
            return await command(argv[len(words) :], transport, env)
    return Output().error(f"Unknown command: consul {' '.join(argv)}")


def httpx_transport(address: str, timeout: float = DEFAULT_TIMEOUT) -> HttpTransport:
    """A transport to a live agent at ``host:port``; connection errors read as Go's do."""

    async def transport(
        method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        import httpx

        from consim.http.client import request

        url = f"http://{address}{path}"
        try:
            return await request(address, method, path, headers=headers, body=body, timeout=timeout)
        except httpx.ConnectError:
            verb = method[0] + method[1:].lower()
            raise TransportError(
                f'{verb} "{url}": dial tcp {address}: connect: connection refused'
            ) from None
        except httpx.HTTPError as exc:
            raise TransportError(f'{method} "{url}": {exc}') from None

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
    """Add Consul's commands (``operator raft ...``, ``kv ...``, ``keyring``, ``members``,
    ``force-leave``) to the ``consim`` parser; each takes Consul's single-dash flags verbatim."""

    def command(parser: Any, name: str, words: tuple[str, ...]) -> None:
        p = parser.add_parser(name, help="consul " + " ".join(words), prefix_chars="+")
        p.add_argument("consul_args", nargs=argparse.REMAINDER)
        p.set_defaults(func=main_for(words))

    operator = sub.add_parser("operator", help="Consul's operator commands (same output)")
    op_sub = operator.add_subparsers(dest="operator_command", required=True)
    raft = op_sub.add_parser("raft", help="consul operator raft ...")
    raft_sub = raft.add_subparsers(dest="raft_command", required=True)
    for name in ("list-peers", "remove-peer", "transfer-leader"):
        command(raft_sub, name, ("operator", "raft", name))
    autopilot = op_sub.add_parser("autopilot", help="consul operator autopilot ...")
    autopilot_sub = autopilot.add_subparsers(dest="autopilot_command", required=True)
    for name in ("get-config", "set-config", "state"):
        command(autopilot_sub, name, ("operator", "autopilot", name))
    kv = sub.add_parser("kv", help="consul kv get|put|delete")
    kv_sub = kv.add_subparsers(dest="kv_command", required=True)
    for name in ("get", "put", "delete"):
        command(kv_sub, name, ("kv", name))
    snapshot = sub.add_parser("snapshot", help="consul snapshot save|restore")
    snapshot_sub = snapshot.add_subparsers(dest="snapshot_command", required=True)
    for name in ("save", "restore"):
        command(snapshot_sub, name, ("snapshot", name))
    for name in ("keyring", "members", "force-leave", "join", "leave", "info"):
        command(sub, name, (name,))
