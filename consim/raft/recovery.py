"""Outage recovery with ``peers.json`` (Consul's outage guide; hashicorp/raft ``RecoverCluster``).

Error texts are Consul's: Consul wraps every error of ``raft.ReadPeersJSON``/``ReadConfigJSON`` as
``recovery failed to parse peers.json: <err>``, and ``<err>`` for a bad configuration is
hashicorp/raft ``checkConfiguration``'s text, Go ``%v`` formatting included, e.g.
``recovery failed to parse peers.json: found duplicate address in configuration: 10.1.0.1:8300``.
For malformed JSON ``<err>`` is Python's decoder message (Go's differs in wording). Errors of
:func:`recover_state` read ``recovery failed: <err>`` as Consul prints ``RecoverCluster`` errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from consim.golike import go_json_kind
from consim.raft.configuration import check_configuration
from consim.raft.types import (
    Configuration,
    PersistentState,
    Server,
    Snapshot,
    SnapshotMeta,
    Suffrage,
)

__all__ = ["RecoveryError", "parse_peers_json", "recover_state"]

_PREFIX = "recovery failed to parse peers.json: "


class RecoveryError(Exception):
    """peers.json could not be used; the message is Consul's text."""


def parse_peers_json(text: str | bytes, protocol_version: int) -> Configuration:
    """Protocol 2: ``["10.1.0.1:8300", ...]`` (id = address). Protocol 3:
    ``[{"id": ..., "address": ..., "non_voter": false}, ...]``. Raises :class:`RecoveryError`."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecoveryError(f"{_PREFIX}{exc}") from None
    servers: list[Server] = []
    if protocol_version < 3:
        if raw is not None and not isinstance(raw, list):
            raise RecoveryError(
                f"{_PREFIX}json: cannot unmarshal {go_json_kind(raw)} into Go value of type []string"
            )
        for peer in raw or []:
            if not isinstance(peer, str):
                raise RecoveryError(
                    f"{_PREFIX}json: cannot unmarshal {go_json_kind(peer)} into Go value of type string"
                )
            servers.append(Server(peer, peer, Suffrage.VOTER))
    else:
        if raw is not None and not isinstance(raw, list):
            raise RecoveryError(
                f"{_PREFIX}json: cannot unmarshal {go_json_kind(raw)} into Go value of type "
                "[]raft.configEntry"
            )
        for peer in raw or []:
            if not isinstance(peer, dict):
                raise RecoveryError(
                    f"{_PREFIX}json: cannot unmarshal {go_json_kind(peer)} into Go value of type "
                    "raft.configEntry"
                )
            # Go's decoder leaves missing fields at their zero value (so a missing id is "").
            sid = peer.get("id", "")
            address = peer.get("address", "")
            non_voter = peer.get("non_voter", False)
            for key, value, want in (
                ("id", sid, str),
                ("address", address, str),
                ("non_voter", non_voter, bool),
            ):
                if not isinstance(value, want) or (want is str and isinstance(value, bool)):
                    gotype = "bool" if want is bool else "raft.ServerID"
                    if key == "address":
                        gotype = "raft.ServerAddress"
                    raise RecoveryError(
                        f"{_PREFIX}json: cannot unmarshal {go_json_kind(value)} into Go struct field "
                        f"configEntry.{key} of type {gotype}"
                    )
            suffrage = Suffrage.NONVOTER if non_voter else Suffrage.VOTER
            servers.append(Server(sid, address, suffrage))
    configuration = Configuration(tuple(servers))
    err = check_configuration(configuration)
    if err:
        raise RecoveryError(f"{_PREFIX}{err}")
    return configuration


def recover_state(
    state: PersistentState,
    configuration: Configuration,
    fsm_snapshot: Callable[[PersistentState], bytes],
) -> PersistentState:
    """hashicorp ``RecoverCluster``: every entry held (committed or not) goes into a fresh FSM,
    a snapshot is taken at the last index/term carrying ``configuration`` (configuration index 1),
    and the log is emptied. The term and vote are kept.

    ``fsm_snapshot(state)`` must build a fresh FSM, restore ``state.snapshot`` and apply all
    ``state.entries``, and return the FSM's snapshot bytes. Pure: the input is not touched, so a
    failure anywhere leaves nothing half applied.
    """
    err = check_configuration(configuration)
    if err:
        raise RecoveryError(f"recovery failed: {err}")
    hs = state.hard_state
    if hs.current_term == 0 and not state.entries and state.snapshot is None:
        raise RecoveryError(
            "recovery failed: refused to recover cluster with no initial state, "
            "this is probably an operator error"
        )
    if state.entries:
        last_index, last_term = state.entries[-1].index, state.entries[-1].term
    elif state.snapshot is not None:
        last_index, last_term = state.snapshot.meta.index, state.snapshot.meta.term
    else:
        last_index, last_term = 0, 0
    data = fsm_snapshot(state)
    if not isinstance(data, bytes):
        raise RecoveryError("recovery failed: FSM snapshot is not bytes")
    meta = SnapshotMeta(last_index, last_term, configuration, 1)
    return PersistentState(hs, Snapshot(meta, data), ())
