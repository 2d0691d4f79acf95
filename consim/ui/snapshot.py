"""What the page shows of each server, read from a running :class:`~consim.cluster.Cluster`.

One call, one consistent view: the page redraws from it (``data-role`` and the rest come from
``role`` and ``state`` here). Nothing here changes the cluster.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

from consim.cluster import Cluster
from consim.events import Event

# What the page calls a server's life: up, or why it is not.
STATES = ("up", "killed", "stopped", "failed", "paused", "cut off")


def _keyring(pool: Any) -> dict[str, Any] | None:
    core = getattr(pool, "core", None)
    ring = getattr(core, "keyring", None)
    if ring is None:
        return None
    primary = ring.primary_key
    return {
        "primary": base64.b64encode(primary).decode() if primary else None,
        "keys": ring.keys_b64(),
    }


def _members(pool: Any) -> list[dict[str, str]]:
    if pool is None:
        return []
    return [{"name": m.name, "status": m.status_name} for m in pool.members()]


def down_server(name: str, datacenter: str, address: str, http: str, state: str) -> dict[str, Any]:
    """A server as the page draws one that does not run (or does not answer): ``state`` says why."""
    return {
        "name": name,
        "datacenter": datacenter,
        "address": address,
        "http": http,
        "role": "down",
        "state": state,
        "term": None,
        "commit_index": None,
        "applied_index": None,
        "last_index": None,
        "last_contact": None,
        "leader": None,
        "voter": None,
        "timer": None,
        "lan": [],
        "wan": [],
        "keyring": {"lan": None, "wan": None},
        "internal_errors": 0,
    }


def node_snapshot(
    node: Any,
    now: float,
    *,
    name_of: Callable[[str], str],
    down_state: str,
    cut_off: bool,
) -> dict[str, Any]:
    """One server (a ``ServerNode``) as the page draws it, in a cluster or in ``consim agent``:
    ``name_of`` names a Raft address (its leader), ``down_state`` is what a server that does not
    run is (killed, stopped), ``cut_off`` whether the network cuts it from its majority."""
    core = node.core
    out = down_server(node.name, node.datacenter, node.address, node.spec.http_address, "up")
    out["keyring"] = {"lan": _keyring(node.lan_pool), "wan": _keyring(node.wan_pool)}
    out["internal_errors"] = node.counters["internal_errors"]
    if not node.running or core is None:
        out["state"] = "failed" if node.failure else down_state
        return out
    out["lan"], out["wan"] = _members(node.lan_pool), _members(node.wan_pool)
    role = core.role.value.lower()
    out.update(
        role=role,
        term=core.term,
        commit_index=core.commit_index,
        applied_index=node.fsm.last_applied,
        last_index=core.last_index,
        voter=core.latest_configuration.has_vote(node.server_id),
    )
    contact = node.last_contact_seconds()
    out["last_contact"] = None if math.isinf(contact) else round(contact, 3)
    if core.leader_address:
        out["leader"] = name_of(core.leader_address)
    if role != "leader":
        # The election timer as RaftScope draws it: how long until this server starts an
        # election, out of the longest it could have been armed for.
        cfg = node.raft_config
        span = cfg.election_timeout if role == "candidate" else cfg.heartbeat_timeout
        out["timer"] = {
            "remaining": round(max(0.0, core.next_deadline() - now), 3),
            "max": round(2 * span, 3),
        }
    if node.paused:
        out["state"] = "paused"
    elif cut_off:
        out["state"] = "cut off"
    return out


def server_snapshot(
    cluster: Cluster, name: str, now: float, down_reason: dict[str, str]
) -> dict[str, Any]:
    """One server of ``cluster``; ``down_reason`` maps a name to killed/stopped."""
    node = cluster.node(name)
    by_address = {n.address: n.name for n in cluster.servers.values()}
    host = node.spec.host
    return node_snapshot(
        node,
        now,
        name_of=lambda address: by_address.get(address, address),
        down_state=down_reason.get(name, "killed"),
        cut_off=cut_off(
            cluster.net.faults,
            host,
            [o.spec.host for o in cluster.datacenter_servers(node.datacenter)],
        ),
    )


def cut_off(faults: Any, host: str, peers: list[str]) -> bool:
    """Is ``host`` cut off from a majority of its datacenter's servers (``peers``, itself
    included): a partition's minority side, an isolated server? Reachable means both ways,
    whether the other server runs or not: this is the network's view (a ``FaultModel``). A server
    on the majority side of a cut is not cut off."""
    if faults.clear():
        return False
    reach = sum(1 for other in peers if faults.allowed(host, other) and faults.allowed(other, host))
    return reach <= len(peers) // 2


def faults_view(faults: Any, name_of_host: Callable[[str], str]) -> dict[str, Any]:
    """The network's fault rules with servers' names for their hosts."""
    d = faults.describe()
    n = name_of_host
    return {
        "partition": [[n(h) for h in g] for g in d["partition"]],
        "isolated": [n(h) for h in d["isolated"]],
        "blocked": [[n(s), n(t)] for s, t in d["blocked"]],
        "loss": [[n(s), n(t), p] for (s, t), p in d["loss"]],
        "delay": [[n(s), n(t), x] for (s, t), x in d["delay"]],
    }


def cluster_snapshot(cluster: Cluster, now: float, down_reason: dict[str, str]) -> dict[str, Any]:
    """Every server, the leader of each datacenter and the network's fault rules."""
    servers = [server_snapshot(cluster, name, now, down_reason) for name in cluster.servers]
    leaders = {}
    for dc in cluster.spec.datacenter_names():
        leader = cluster.leader(dc)
        leaders[dc] = leader.name if leader is not None else None
    by_host = {n.spec.host: n.name for n in cluster.servers.values()}
    return {
        "time": round(now, 3),
        "datacenters": cluster.spec.datacenter_names(),
        "servers": servers,
        "leaders": leaders,
        "faults": faults_view(cluster.net.faults, lambda h: by_host.get(h, h)),
    }


def note_down_reason(down_reason: dict[str, str], event: Event) -> None:
    """Remember why a server went down (``killed`` or ``stopped``), from the cluster's event."""
    if event.kind in ("kill", "stop") and "server" in event.fields:
        down_reason[event.fields["server"]] = "killed" if event.kind == "kill" else "stopped"
