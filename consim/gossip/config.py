"""Gossip timing knobs, with memberlist's LAN/WAN defaults (DefaultLANConfig / DefaultWANConfig).

All durations are seconds. ``scale`` multiplies every interval and timeout, so a scenario can run
the same protocol faster (``scale=0.1``) without changing the shape of anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class GossipConfig:
    gossip_interval: float = 0.2
    gossip_nodes: int = 3
    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    indirect_checks: int = 3
    suspicion_mult: int = 4
    # Lifeguard: a suspicion starts at this multiple of the minimum timeout and shrinks to the
    # minimum as independent confirmations arrive; awareness scales probes up to this multiple.
    suspicion_max_timeout_mult: int = 6
    awareness_max_multiplier: int = 8
    retransmit_mult: int = 4
    push_pull_interval: float = 30.0
    # memberlist's TCPTimeout: how long a join's push-pull exchange may take before it fails.
    tcp_timeout: float = 10.0
    # Nodes marked dead still receive gossip for this long, so they can refute quickly.
    gossip_to_the_dead_time: float = 30.0
    # serf: how often to try reconnecting to a failed member (heals partitions).
    reconnect_interval: float = 30.0
    # serf: QueryTimeoutMult; the query timeout is GossipInterval * this * ceil(log10(N+1)).
    query_timeout_mult: int = 16
    # How long a leaving member keeps gossiping its leave before it stops (serf waits for the
    # leave broadcast; memberlist's BroadcastTimeout).
    leave_propagate_delay: float = 1.0
    # memberlist's EnableCompression (LZW). Off by default here, unlike memberlist: consim's
    # LZW is pure Python (about 70 us a packet) and receivers accept both forms.
    compression: bool = False
    # memberlist's TCP fallback ping during a failed probe (DisableTcpPings=false by default).
    tcp_pings: bool = True
    # UDP packet budget for piggybacked broadcasts (memberlist UDPBufferSize-ish).
    packet_budget: int = 1400
    scale: float = 1.0

    @classmethod
    def lan(cls, scale: float = 1.0) -> GossipConfig:
        return cls(scale=scale)

    @classmethod
    def wan(cls, scale: float = 1.0) -> GossipConfig:
        return cls(
            gossip_interval=0.5,
            gossip_nodes=4,
            probe_interval=5.0,
            probe_timeout=3.0,
            suspicion_mult=6,
            push_pull_interval=60.0,
            tcp_timeout=30.0,
            gossip_to_the_dead_time=60.0,
            scale=scale,
        )

    def scaled(self, scale: float) -> GossipConfig:
        return replace(self, scale=scale)

    # Effective (scaled) durations -------------------------------------------------------------

    def t(self, seconds: float) -> float:
        return seconds * self.scale

    def suspicion_timeout(self, n: int) -> float:
        """memberlist: SuspicionMult * max(1, log10(max(1, n))) * ProbeInterval."""
        node_scale = max(1.0, math.log10(max(1.0, float(n))))
        return self.suspicion_mult * node_scale * self.t(self.probe_interval)

    def suspicion_bounds(self, n: int) -> tuple[int, float, float]:
        """memberlist suspectNode: (k expected confirmations, min timeout, max timeout)."""
        k = self.suspicion_mult - 2
        if n - 2 < k:
            k = 0  # not enough other members to confirm
        low = self.suspicion_timeout(n)
        return k, low, self.suspicion_max_timeout_mult * low

    def retransmit_limit(self, n: int) -> int:
        """memberlist: RetransmitMult * ceil(log10(n + 1))."""
        return self.retransmit_mult * math.ceil(math.log10(n + 1))

    def query_timeout(self, n: int) -> float:
        """serf DefaultQueryTimeout: GossipInterval * QueryTimeoutMult * ceil(log10(n + 1))."""
        return self.t(self.gossip_interval) * self.query_timeout_mult * math.ceil(math.log10(n + 1))

    def push_pull_period(self, n: int) -> float:
        """memberlist pushPullScale: back off above 32 members so full syncs stay cheap."""
        base = self.t(self.push_pull_interval)
        if n <= 32:
            return base
        multiplier = math.ceil(math.log2(n) - math.log2(32)) + 1
        return base * multiplier
