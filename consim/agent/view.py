"""What a scenario run reads of one ``consim agent`` child (``consim run --processes``), served
on the child's fault channel next to ``GET /status``:

``GET /view?after=N``: the server's status plus the Raft and gossip facts scenario waits and
assertions check (last term, leader id, the committed and latest configurations' voters, each
gossip pool's members and keyring), so the parent's ``RemoteServer`` answers as an in-process
ServerNode does; and under ``events`` the events logged since the N-th (the parent adds them to
its own log, so ``wait = "log"`` and the timeline see the children's lines). One request per child
per look: the parent looks often, on a machine the children share.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from consim.events import EventLog


def server_view(node: Any) -> dict[str, Any]:
    """``node.status()`` and what scenarios read of its Raft core and gossip pools."""
    out = dict(node.status())
    out["id"] = node.server_id
    out["node_id"] = node.node_id
    core = node.core
    if core is not None and node.running:
        out["last_term"] = core.last_term
        out["leader_id"] = core.leader_id
        out["voters"] = [s.id for s in core.configuration.voters()]
        out["latest_voters"] = [s.id for s in core.latest_configuration.voters()]
    pools: dict[str, Any] = {}
    for label, pool in (("lan", node.lan_pool), ("wan", node.wan_pool)):
        if pool is None:
            continue
        keyring = getattr(getattr(pool, "core", None), "keyring", None)
        primary = keyring.primary_key if keyring else None
        pools[label] = {
            "members": [[m.name, m.status_name] for m in pool.members()],
            "keys": list(keyring.keys_b64()) if keyring else [],
            "primary": base64.b64encode(primary).decode() if primary else None,
        }
    out["pools"] = pools
    return out


def events_since(log: EventLog, after: int) -> dict[str, Any]:
    """The events after the ``after``-th one ever emitted (those still kept), and the count to
    ask from next time (``next`` minus ``after`` more than the events given: the ring dropped
    some). trio's clocks of two processes have different origins, so the parent logs them when
    they arrive (a poll later, a tenth of a second at most); ``monotonic`` is when each happened
    on the machine's monotonic clock, which every process shares (consim check orders the
    children's events by it)."""
    kept = list(log.events)
    first = log.emitted - len(kept)  # the number of the oldest event kept
    offset = time.monotonic() - log.now()
    out = [
        {
            "monotonic": round(e.time + offset, 6),
            "node": e.node,
            "kind": e.kind,
            "fields": e.fields,
            "level": e.level,
            "subsystem": e.subsystem,
            "message": e.message,
        }
        for e in kept[max(0, after - first) :]
    ]
    return {"next": log.emitted, "events": out}
