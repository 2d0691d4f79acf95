"""The event log's ring (``consim up`` keeps the last N events; every event is still seen)."""

from __future__ import annotations

import pytest

from consim.events import EventLog
from consim.live import UP_MAX_EVENTS
from consim.runtime import start_live_cluster_parts
from consim.spec import ClusterSpec


def make(max_events: int | None) -> tuple[EventLog, list[int]]:
    clock = iter(range(10**6))
    log = EventLog(lambda: float(next(clock)), max_events=max_events)
    seen: list[int] = []
    log.subscribe(lambda e: seen.append(e.fields["i"]))
    for i in range(25):
        log.emit("dc1-s1", "tick", {"i": i})
    return log, seen


def test_ring_keeps_the_latest_and_subscribers_see_everything():
    log, seen = make(10)
    assert [e.fields["i"] for e in log.events] == list(range(15, 25))
    assert (log.emitted, log.dropped, len(log.events)) == (25, 15, 10)
    assert seen == list(range(25))
    assert [e.fields["i"] for e in log.of_kind("tick")][-1] == 24
    assert log.events[0].fields["i"] == 15 and log.events[-1].fields["i"] == 24
    # A trace hash over a log that dropped events would be a different run's hash: refused.
    with pytest.raises(ValueError, match="keeps the last 10 events and 15 were dropped"):
        log.trace_hash()
    assert log.trace_hash(list(log.events))  # over what is kept, when asked explicitly


def test_unbounded_log_keeps_everything_and_hashes_as_before():
    log, _ = make(None)
    bounded_but_big, _ = make(1000)
    assert len(log.events) == 25 and log.dropped == 0
    assert log.trace_hash() == bounded_but_big.trace_hash()  # nothing dropped: the same hash


def test_max_events_must_be_positive():
    with pytest.raises(ValueError):
        EventLog(lambda: 0.0, max_events=0)


async def test_live_cluster_parts_pass_the_bound():
    spec = ClusterSpec(datacenters=(("dc1", 1),), host_block=250)
    _, up_log = start_live_cluster_parts(spec, max_events=UP_MAX_EVENTS)
    _, run_log = start_live_cluster_parts(spec)
    assert up_log.max_events == UP_MAX_EVENTS == 10_000
    assert run_log.max_events is None
