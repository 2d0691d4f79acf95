"""Startup and recovery (Consul's ``server.go`` setupRaft): what a starting server reads from its
data dir, the peers.json outage recovery, and the configuration a new cluster bootstraps with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from consim.raft.recovery import RecoveryError, parse_peers_json, recover_state
from consim.raft.types import Configuration, EntryType, PersistentState, Server
from consim.server.fsm import StateMachine
from consim.spec import ServerSpec
from consim.storage.base import RaftStorage

__all__ = [
    "PEERS_INFO",
    "RecoveryError",
    "bootstrap_configuration",
    "load_raft_peers",
    "server_id_for",
    "start_state",
]

PEERS_INFO = json.dumps(
    "As of Consul 0.7.0, the peers.json file is only used for recovery after an outage. "
    "See the outage recovery guide: place a peers.json next to this file and start the server."
)[1:-1]

# emit(kind, fields, message, subsystem=...): the server's Raft event log.
Emit = Callable[..., None]


def start_state(
    storage: RaftStorage, node_dir: Path | None, raft_protocol: int, emit: Emit
) -> PersistentState:
    """What the server starts from: its stored Raft state, or the recovered one when the data dir
    holds a peers.json (raises ``RecoveryError`` for a bad one, keeping the file)."""
    state = storage.load()
    if node_dir is None:
        return state
    raft_dir = node_dir / "raft"
    raft_dir.mkdir(parents=True, exist_ok=True)
    peers_info = raft_dir / "peers.info"
    peers_json = raft_dir / "peers.json"
    if not peers_info.exists():
        # Written on first start so an old peers.json is never ingested by accident.
        peers_info.write_text(PEERS_INFO)
        if peers_json.exists():
            return state
    if peers_json.exists():
        state = _recover_from_peers_json(storage, peers_json, state, raft_protocol, emit)
    return state


def _recover_from_peers_json(
    storage: RaftStorage, path: Path, state: PersistentState, raft_protocol: int, emit: Emit
) -> PersistentState:
    emit(
        "peers_json_found",
        {},
        "found peers.json file, recovering Raft configuration...",
        subsystem="agent.server",
    )
    configuration = parse_peers_json(path.read_bytes(), raft_protocol)

    def fsm_snapshot(s: PersistentState) -> bytes:
        fsm = StateMachine.restore(s.snapshot.data) if s.snapshot is not None else StateMachine()
        for entry in s.entries:
            if entry.type is EntryType.COMMAND:
                fsm.apply(entry.index, entry.data)
        return fsm.snapshot()

    new_state = recover_state(state, configuration, fsm_snapshot)
    if new_state.snapshot is not None:
        storage.save_snapshot(new_state.snapshot)
    if state.entries:
        storage.compact_prefix(state.entries[-1].index)
    storage.save_hard_state(new_state.hard_state)
    path.unlink()
    emit(
        "peers_json_deleted",
        {},
        "deleted peers.json file after successful recovery",
        subsystem="agent.server",
    )
    return storage.load()


def server_id_for(spec: ServerSpec, raft_protocol: int) -> str:
    """A server's Raft id: its node id with raft protocol 3, its RPC address before."""
    return spec.node_id if raft_protocol >= 3 and spec.node_id else spec.rpc_address


def bootstrap_configuration(
    servers: list[ServerSpec],
    raft_protocol: int,
    raft_peers: Configuration | None = None,
    address: str = "",
) -> Configuration:
    """What a new server bootstraps with: the static configuration (``--raft-peers``) when it
    names this server (an empty one when it does not: it waits to be added), else every server
    of its datacenter."""
    if raft_peers is not None:
        return raft_peers if raft_peers.by_address(address) is not None else Configuration(())
    return Configuration(
        tuple(Server(server_id_for(s, raft_protocol), s.rpc_address) for s in servers)
    )


def load_raft_peers(path: Path) -> Configuration:
    """A static configuration in Consul's peers.json format (protocol 3: id, address,
    non_voter); raises :class:`RecoveryError` with Consul's texts, or OSError."""
    configuration = parse_peers_json(path.read_text(encoding="utf-8"), 3)
    if not configuration.servers:
        raise RecoveryError(f"{path}: no servers in the configuration")
    return configuration
