"""Raft membership: the configuration entry's encoding, its validity check, and membership changes
as one pure function (hashicorp/raft's ``nextConfiguration``), so each rule is testable alone.

``next_configuration(current, current_index, change)`` applies one :class:`ConfigurationChange` to
the latest configuration and returns the new one, or raises :class:`ConfigurationError` with
hashicorp's text (lower-cased, as Go error strings are in consim). The leader
(``RaftCore._change_config``) decides *when* a change may be made; this module says *what* it
makes.

hashicorp's ``AddStaging``/``Promote`` pair is not offered: its AddVoter adds a voter at once (the
staging step was never finished there), and consim has no Staging suffrage.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgpack

from consim.raft import hashicorp_wire
from consim.raft.types import Configuration, MalformedMessage, Server, Suffrage

__all__ = [
    "ChangeCommand",
    "ConfigurationChange",
    "ConfigurationError",
    "check_configuration",
    "decode_configuration",
    "encode_configuration",
    "go_configuration",
    "go_server",
    "next_configuration",
]


class ChangeCommand(enum.Enum):
    """hashicorp/raft's ``ConfigurationChangeCommand`` (the names appear in consim's events)."""

    ADD_VOTER = "AddVoter"
    ADD_NONVOTER = "AddNonvoter"
    DEMOTE_VOTER = "DemoteVoter"
    REMOVE_SERVER = "RemoveServer"


@dataclass(frozen=True)
class ConfigurationChange:
    """One membership change request (``configurationChangeRequest``). ``prev_index`` > 0 makes
    the change conditional on the latest configuration still being the one at that index."""

    command: ChangeCommand
    server_id: str
    address: str = ""
    prev_index: int = 0


class ConfigurationError(ValueError):
    """The change cannot be made; ``str(exc)`` is hashicorp's error text."""


def encode_configuration(configuration: Configuration) -> bytes:
    """A configuration entry's data: hashicorp/raft's ``EncodeConfiguration``, so the entries
    travel to hashicorp nodes unchanged."""
    return hashicorp_wire.encode_configuration(configuration)


def decode_configuration(data: bytes) -> Configuration:
    """hashicorp's encoding, or the list form consim wrote before it (older data dirs)."""
    try:
        obj = msgpack.unpackb(data, raw=True)
    except Exception as exc:  # msgpack raises several types on garbage
        raise MalformedMessage(f"bad configuration entry: {exc!r}") from None
    if isinstance(obj, list):
        try:
            return Configuration.from_wire(msgpack.unpackb(data, raw=False))
        except MalformedMessage:
            raise
        except Exception as exc:
            raise MalformedMessage(f"bad configuration entry: {exc!r}") from None
    return hashicorp_wire.decode_configuration(data)


def go_server(s: Server) -> str:
    """Go's ``%v`` of a hashicorp ``Server`` struct (used in Consul's error texts)."""
    return f"{{{s.suffrage.value} {s.id} {s.address}}}"


def go_configuration(c: Configuration) -> str:
    return "{[" + " ".join(go_server(s) for s in c.servers) + "]}"


def check_configuration(configuration: Configuration) -> str | None:
    """hashicorp/raft ``checkConfiguration``: the error text, or None when valid."""
    ids: set[str] = set()
    addresses: set[str] = set()
    voters = 0
    for s in configuration.servers:
        if s.id == "":
            return f"empty ID in configuration: {go_configuration(configuration)}"
        if s.address == "":
            return f"empty address in configuration: {go_server(s)}"
        if s.id in ids:
            return f"found duplicate ID in configuration: {s.id}"
        ids.add(s.id)
        if s.address in addresses:
            return f"found duplicate address in configuration: {s.address}"
        addresses.add(s.address)
        if s.is_voter:
            voters += 1
    if voters == 0:
        return f"need at least one voter in configuration: {go_configuration(configuration)}"
    return None


def next_configuration(
    current: Configuration, current_index: int, change: ConfigurationChange
) -> Configuration:
    """The configuration after ``change``; :class:`ConfigurationError` if it is stale or would
    leave an invalid configuration (no voter, a duplicate id or address, an empty field)."""
    if change.prev_index > 0 and change.prev_index != current_index:
        raise ConfigurationError(
            f"configuration changed since {change.prev_index} (latest is {current_index})"
        )
    servers = list(current.servers)
    server_id, address = change.server_id, change.address
    pos = next((i for i, s in enumerate(servers) if s.id == server_id), None)
    command = change.command
    if command is ChangeCommand.ADD_VOTER or command is ChangeCommand.ADD_NONVOTER:
        suffrage = Suffrage.VOTER if command is ChangeCommand.ADD_VOTER else Suffrage.NONVOTER
        if pos is None:
            servers.append(Server(server_id, address, suffrage))
        elif servers[pos].is_voter:
            # An existing voter keeps its vote (an AddNonvoter does not demote): new address only.
            servers[pos] = Server(server_id, address, Suffrage.VOTER)
        else:
            servers[pos] = Server(server_id, address, suffrage)
    elif command is ChangeCommand.DEMOTE_VOTER:
        if pos is not None:
            s = servers[pos]
            servers[pos] = Server(s.id, s.address, Suffrage.NONVOTER)
    elif command is ChangeCommand.REMOVE_SERVER:
        if pos is not None:
            del servers[pos]
    else:  # pragma: no cover - the enum is closed
        raise ConfigurationError(f"unknown configuration change {command!r}")
    configuration = Configuration(tuple(servers))
    err = check_configuration(configuration)
    if err:
        raise ConfigurationError(err)
    return configuration
