"""The network model: how long a message takes between two hosts, and how often links lose one.

A :class:`NetworkModel` (defined in ``consim.spec``, a leaf) is plain data (scenario files' ``[cluster.network]`` table, ``consim up
--lan-latency/--wan-latency/--loss``, ``consim bench``): one-way latency and jitter inside a
datacenter (LAN) and between datacenters (WAN, with per-pair overrides), and a loss probability
every link has before any fault rule. Latencies are one-way: a round trip costs twice.

Without a model (``ClusterSpec.network is None``) the simulator keeps its historical default (each
host pair's latency drawn once, uniform in 0.5-2 ms), so existing traces do not move.

Loss follows the transport, as on a real network (see :func:`retransmission_delay`): a lost
datagram (gossip over UDP) is gone; a lost segment on a stream (RPC and Raft over TCP, gossip
push-pull) is sent again after TCP's retransmission timeout, doubling each time it is lost again,
so the message arrives late instead of never. A cut (partition, isolate, block) still drops.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

from consim.spec import NetworkModel

__all__ = ["NetworkModel", "LinkDelays", "retransmission_delay"]

# Linux's TCP retransmission timer: at least 200 ms (TCP_RTO_MIN), doubling per loss up to
# 120 s (TCP_RTO_MAX); after tcp_retries2 = 15 retransmissions the connection is given up.
RTO_MIN = 0.2
RTO_MAX = 120.0
MAX_RETRANSMISSIONS = 15


class LinkDelays:
    """What a network asks of a model per message: base latency per host pair, jitter draws."""

    def __init__(
        self, model: NetworkModel, datacenter_of: Mapping[str, str], rng: random.Random
    ) -> None:
        self.model = model
        self.datacenter_of = dict(datacenter_of)
        self.rng = rng
        self._pairs: dict[tuple[str, str], tuple[float, float]] = {}

    def pair(self, src_host: str, dst_host: str) -> tuple[float, float]:
        """(base one-way latency, jitter bound) for a host pair; a host reaches itself at once."""
        key = (src_host, dst_host)
        found = self._pairs.get(key)
        if found is None:
            if src_host == dst_host:
                found = (0.0, 0.0)
            else:
                a, b = self.datacenter_of.get(src_host), self.datacenter_of.get(dst_host)
                found = (self.model.one_way(a, b), self.model.jitter(a, b))
            self._pairs[key] = found
        return found

    def draw(self, src_host: str, dst_host: str) -> float:
        """One message's one-way delay: the pair's base plus jitter uniform in [0, bound]."""
        base, jitter = self.pair(src_host, dst_host)
        return base + self.rng.uniform(0.0, jitter) if jitter else base


def retransmission_delay(lost: Iterable[bool]) -> float | None:
    """How late a stream segment arrives, given whether each successive transmission is lost:
    the sum of the retransmission timeouts waited (200 ms, 400 ms, ... capped at 120 s), or
    None when all of ``1 + MAX_RETRANSMISSIONS`` transmissions are lost (TCP gives up: the
    connection is dead, the message never arrives)."""
    waited, rto = 0.0, RTO_MIN
    for attempt, was_lost in enumerate(lost):
        if not was_lost:
            return waited
        if attempt >= MAX_RETRANSMISSIONS:
            return None
        waited += rto
        rto = min(rto * 2, RTO_MAX)
    return waited
