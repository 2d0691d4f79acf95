"""What a sans-IO protocol core (Raft in ``consim.raft``, gossip in ``consim.gossip``) hands its
driver to log. One type for both: the driver turns it into an event of the cluster's log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CoreEvent:
    """``kind`` and its ``fields``, with Consul's log ``message`` at hclog ``level``."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    level: str = "INFO"
    message: str = ""
