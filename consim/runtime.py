"""Run a cluster in virtual time or live: the only place where the two clocks differ.

Virtual time: ``consim.net.sim.VirtualClock`` (trio's ``MockClock(autojump_threshold=0)`` with the
simulator's deliveries folded into its jumps), an in-memory ``SimNetwork``, and
trio's scheduler made deterministic the way pytest-trio does it for Hypothesis (sorted run batches
shuffled by one seeded ``random.Random``). Same scenario + same seed = same event trace.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from consim.cluster import Cluster
from consim.events import EventLog
from consim.spec import ClusterSpec

T = TypeVar("T")


def make_trio_deterministic(seed: int) -> None:
    """Seed trio's scheduler and make it order each run batch by task creation, then shuffle.

    trio exposes this switch for Hypothesis (``_ALLOW_DETERMINISTIC_SCHEDULING``); without it the
    order in which simultaneously-ready tasks run is random per process.
    """
    import trio._core._run as trio_run

    trio_run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    trio_run._r.seed(seed)


def run_virtual(
    spec: ClusterSpec,
    body: Callable[[Cluster], Awaitable[T]],
    *,
    events: EventLog | None = None,
    latency: tuple[float, float] = (0.0005, 0.002),
) -> tuple[T, EventLog]:
    """Build the cluster in virtual time, run ``body(cluster)``, tear everything down."""
    from consim.net.sim import SimNetwork, VirtualClock

    make_trio_deterministic(spec.seed)
    result: list[T] = []
    holder: list[EventLog] = []

    async def main() -> None:
        log = events if events is not None else EventLog(trio.current_time)
        if events is not None:
            log._clock = trio.current_time  # the run's clock, even if the log was made earlier
        holder.append(log)
        network = SimNetwork(random.Random(spec.seed * 7919 + 1), latency=latency)
        async with trio.open_nursery() as nursery:
            await nursery.start(network.run)
            cluster = Cluster(spec, network=network, events=log, live=False)
            await nursery.start(cluster.run)
            result.append(await body(cluster))
            nursery.cancel_scope.cancel()

    trio.run(main, clock=VirtualClock(), strict_exception_groups=True)
    return result[0], holder[0]
