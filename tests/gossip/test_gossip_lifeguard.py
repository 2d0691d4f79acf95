"""Lifeguard (memberlist 0.2.2): nacks from indirect helpers, local health awareness, and
suspicion timeouts that start long and shrink with independent confirmations."""

from __future__ import annotations

import math
import random

from consim.gossip import GossipCore, wire
from consim.gossip.config import GossipConfig

from .helpers import K1, fail, pool

LAN = GossipConfig.lan()
ME = "127.0.0.1:8301"


def _core_with(n: int) -> GossipCore:
    core = GossipCore("s1", ME, rng=random.Random(3), now=0.0)
    core.seed_members([(f"s{i}", f"127.0.0.{i}:8301", {}, 1) for i in range(2, n + 1)], 0.0)
    core.ready()
    return core


def test_suspicion_starts_at_the_maximum_and_shrinks_with_confirmations() -> None:
    core = _core_with(5)
    k, low, high = LAN.suspicion_bounds(5)
    assert (k, low, high) == (2, 4.0, 24.0)
    core.receive("127.0.0.2:8301", wire.enc_suspect("s5", 1, "s2"), 1.0)
    assert core._suspicions["s5"] == 1.0 + high
    core.receive("127.0.0.3:8301", wire.enc_suspect("s5", 1, "s3"), 2.0)
    # memberlist remainingSuspicionTime: max - log(n+1)/log(k+1) * (max - min), n = 1
    one = math.floor(1000 * (high - math.log(2) / math.log(3) * (high - low))) / 1000
    assert core._suspicions["s5"] == 1.0 + one
    core.receive("127.0.0.3:8301", wire.enc_suspect("s5", 1, "s3"), 2.5)  # same accuser again
    assert core._suspicions["s5"] == 1.0 + one
    core.receive("127.0.0.4:8301", wire.enc_suspect("s5", 1, "s4"), 3.0)
    assert core._suspicions["s5"] == 1.0 + low
    core.tick(1.0 + low)
    events = [e for e in core.ready().events if e.kind == "suspect_timeout"]
    assert events and events[0].message.endswith("(2 peer confirmations)")


def test_small_pools_expect_no_confirmations() -> None:
    core = _core_with(3)
    assert LAN.suspicion_bounds(3)[0] == 0
    core.receive("127.0.0.2:8301", wire.enc_suspect("s3", 1, "s2"), 1.0)
    assert core._suspicions["s3"] == 1.0 + LAN.suspicion_timeout(3)


def test_indirect_helper_nacks_when_the_target_stays_silent() -> None:
    core = _core_with(3)
    req = wire.enc_indirect_ping(7, "s3", "127.0.0.3:8301", True, "127.0.0.2:8301", "s2")
    core.receive("127.0.0.2:8301", req, 1.0)
    [(dst, ping)] = core.ready().datagrams
    assert dst == "127.0.0.3:8301" and wire.decode_packet(ping)[0]["t"] == "ping"
    core.tick(1.0 + LAN.probe_timeout)
    sent = [(d, m) for d, p in core.ready().datagrams for m in wire.decode_packet(p)]
    assert ("127.0.0.2:8301", {"t": "nack", "seq": 7}) in sent


def test_failed_probes_without_nacks_raise_awareness_and_slow_probing() -> None:
    core = _core_with(2)  # one peer, no helpers to ask: every failed probe counts +1
    timeouts = []
    for _ in range(40):
        now = core.next_deadline()
        core.tick(now)
        core.ready()  # the peer never answers
        if core._probe is not None:
            timeouts.append(core._probe["timeout"])
        # keep the peer probe-able: it refutes nothing, so re-announce it alive each time
        core.receive(
            "127.0.0.2:8301",
            wire.enc_alive("s2", 2 + len(timeouts), "127.0.0.2:8301", wire.encode_tags({})),
            now,
        )
    assert core.awareness >= 2, core.awareness
    assert timeouts[0] == LAN.probe_timeout
    assert max(timeouts) >= 3 * LAN.probe_timeout  # ScaleTimeout: timeout * (awareness + 1)


def test_a_crash_in_a_pool_of_seven_is_confirmed_and_detected_early() -> None:
    h, names = pool(71, 7, keys=[K1])
    h.crash("dc1-s4")
    t0 = h.now
    _, low, high = LAN.suspicion_bounds(7)
    ok = h.run_until_true(
        lambda: all(h.members(n)["dc1-s4"] == 4 for n in names if n != "dc1-s4"), high
    )
    assert ok, fail(h, "crash not detected")
    # Confirmations from other probers cut the 24 s maximum well short.
    assert h.now - t0 < high / 2, h.now - t0
    msgs = [m for *_, m in h.trace if "suspect timeout reached" in m]
    assert msgs and any("(0 peer confirmations)" not in m for m in msgs), msgs
