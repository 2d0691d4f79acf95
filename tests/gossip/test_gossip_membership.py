"""SWIM membership: join, failure detection, leave, refute, rejoin, force-leave, determinism."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from consim.gossip import GossipConfig, GossipError
from consim.gossip.harness import Harness

from .helpers import K1, LAN, converged, fail, pool, wire_packet

SEEDS = [1, 2, 3]


@pytest.mark.parametrize("seed", SEEDS)
def test_five_members_join_and_converge(seed: int) -> None:
    h, names = pool(seed, 5, keys=[K1])
    for n in names:
        members = h.cores[n].members()
        assert [m.name for m in members] == sorted(names)
        assert all(m.status == 1 and m.port == 8301 for m in members)
    joins = [e for e in h.trace if e[2] == "member_join"]
    # each member announces itself and learns the other four
    assert len(joins) == 25, fail(h, "expected 25 member_join events")
    assert any(msg == "EventMemberJoin: dc1-s1 10.0.0.1" for *_, msg in joins)


@pytest.mark.parametrize("seed", SEEDS)
def test_crash_is_suspected_then_failed_within_bound(seed: int) -> None:
    h, names = pool(seed, 5, keys=[K1])
    victim = "dc1-s3"
    others = [n for n in names if n != victim]
    h.crash(victim)
    t0 = h.now
    # Bound: someone probes the victim within a full probe round (n-1 members in random order),
    # the probe round ends, suspicion runs out, then the dead message gossips (a few rounds).
    bound = (len(names) - 1) * LAN.probe_interval + LAN.probe_interval
    bound += LAN.suspicion_timeout(len(names)) + 10 * LAN.gossip_interval
    ok = h.run_until_true(lambda: all(h.members(n)[victim] == 4 for n in others), bound)
    assert ok, fail(h, f"not failed everywhere within {bound:.1f}s")
    kinds = [
        (node, kind)
        for _, node, kind, _ in h.trace
        if kind.startswith(("member_suspect", "member_failed"))
    ]
    assert any(k == "member_suspect" for _, k in kinds)
    assert {node for node, k in kinds if k == "member_failed"} == set(others)
    msgs = [m for *_, m in h.trace]
    assert "EventMemberFailed: dc1-s3 10.0.0.3" in msgs
    assert any(m.startswith("Marking dc1-s3 as failed, suspect timeout reached") for m in msgs)
    assert h.now - t0 >= LAN.suspicion_timeout(5)


def test_suspicion_timeout_formula() -> None:
    assert LAN.suspicion_timeout(5) == 4.0  # log10(5) < 1 -> scale 1
    assert math.isclose(LAN.suspicion_timeout(100), 8.0)
    wan = GossipConfig.wan()
    assert math.isclose(wan.suspicion_timeout(1000), 6 * 3 * 5.0)
    assert LAN.retransmit_limit(5) == 4 and LAN.retransmit_limit(30) == 8
    assert math.isclose(GossipConfig.lan(scale=0.1).suspicion_timeout(5), 0.4)


def test_graceful_leave_is_left_everywhere() -> None:
    h, names = pool(4, 5, keys=[K1])
    h.leave("dc1-s2")
    assert h.cores["dc1-s2"].local_member.status == 2  # leaving
    others = [n for n in names if n != "dc1-s2"]
    ok = h.run_until_true(lambda: all(h.members(n)["dc1-s2"] == 3 for n in others), 5)
    assert ok, fail(h, "leave did not spread")
    h.run_for(2)
    assert h.cores["dc1-s2"].local_member.status == 3
    assert h.cores["dc1-s2"].next_deadline() == math.inf
    assert not [e for e in h.trace if e[2] == "member_failed"], fail(
        h, "a leave must not look like a failure"
    )
    h.run_for(15)
    assert all(h.members(n)["dc1-s2"] == 3 for n in others)


def _inject(h: Harness, dst: str, msgs: list[dict]) -> None:
    core = h.cores[dst]
    payload = wire_packet(*msgs)
    if core.keyring is not None:
        import random

        payload = core.keyring.seal(payload, random.Random(0))
    core.receive("10.9.9.9:8301", payload, h.now)
    h._after(dst)


@pytest.mark.parametrize("kind", ["suspect", "dead"])
def test_refute_with_higher_incarnation(kind: str) -> None:
    h, names = pool(5, 5, keys=[K1])
    target = h.cores["dc1-s4"]
    before = target.incarnation
    _inject(h, "dc1-s4", [{"t": kind, "node": "dc1-s4", "inc": before, "from": "dc1-s1"}])
    assert target.incarnation == before + 1
    assert any(e[2] == "refute" and e[1] == "dc1-s4" for e in h.trace)
    ok = h.run_until_true(
        lambda: all(h.member(n, "dc1-s4").incarnation == before + 1 for n in names), 5
    )
    assert ok, fail(h, "refutation did not spread")
    assert all(h.members(n)["dc1-s4"] == 1 for n in names)


def test_rejoin_after_crash_with_higher_incarnation() -> None:
    h, names = pool(6, 5, keys=[K1])
    h.crash("dc1-s5")
    assert h.run_until_true(lambda: all(h.members(n)["dc1-s5"] == 4 for n in names[:4]), 20)
    old_inc = h.member("dc1-s1", "dc1-s5").incarnation
    fresh = h.restart("dc1-s5", keyring=h.cores["dc1-s1"].keyring.__class__([K1]), join="dc1-s2")
    assert fresh.incarnation == 1
    ok = h.run_until_true(lambda: converged(h, names), 10)
    assert ok, fail(h, "restarted member never came back")
    assert all(h.member(n, "dc1-s5").incarnation > old_inc for n in names)
    rejoins = [
        e for e in h.trace if e[2] == "member_join" and e[3].startswith("EventMemberJoin: dc1-s5")
    ]
    assert {e[1] for e in rejoins if e[0] > 1} >= set(names[:4])


def test_partition_heals_by_reconnect() -> None:
    cfg = GossipConfig.lan(scale=0.2)
    h = Harness(8)
    cores = h.add_pool(4, keys=[K1], config=cfg)
    names = [c.name for c in cores]
    assert h.run_until_true(lambda: converged(h, names), 10)
    h.partition([names[:2], names[2:]])
    assert h.run_until_true(lambda: h.members("dc1-s1")["dc1-s3"] == 4, 10)
    h.heal()
    # serf's reconnect (every ReconnectInterval) and refutation bring both halves back
    ok = h.run_until_true(lambda: converged(h, names), 30 * cfg.scale * 3)
    assert ok, fail(h, "partition never healed")


def test_force_leave_and_prune() -> None:
    h, names = pool(9, 5, keys=[K1])
    with pytest.raises(GossipError) as info:
        h.cores["dc1-s1"].force_leave("nope", False, h.now)
    assert str(info.value) == "No node found with name 'nope'"
    h.force_leave("dc1-s1", "dc1-s2")  # alive: ignored
    assert h.members("dc1-s1")["dc1-s2"] == 1
    h.crash("dc1-s5")
    others = names[:4]
    assert h.run_until_true(lambda: all(h.members(n)["dc1-s5"] == 4 for n in others), 20)
    h.force_leave("dc1-s1", "dc1-s5")
    assert h.members("dc1-s1")["dc1-s5"] == 3
    assert any(e[3] == "EventMemberLeave (forced): dc1-s5 10.0.0.5" for e in h.trace)
    ok = h.run_until_true(lambda: all(h.members(n)["dc1-s5"] == 3 for n in others), 5)
    assert ok, fail(h, "forced leave did not spread")
    h.force_leave("dc1-s1", "dc1-s5", prune=True)
    ok = h.run_until_true(lambda: all("dc1-s5" not in h.members(n) for n in others), 5)
    assert ok, fail(h, "prune did not spread")
    h.run_for(35)  # a push-pull later it stays forgotten
    assert all("dc1-s5" not in h.members(n) for n in others)


def test_members_carry_tags_and_api_shape() -> None:
    from consim.gossip import consul_server_tags

    h = Harness(10)
    a = h.add_member("dc1-s1", "127.0.0.1:8301", tags=consul_server_tags(dc="dc1", node_id="id-1"))
    b = h.add_member("dc1-s2", "127.0.0.2:8301", tags=consul_server_tags(dc="dc1", node_id="id-2"))
    h.join("dc1-s2", "dc1-s1")
    assert h.run_until_true(lambda: len(a.members()) == 2 and len(b.members()) == 2, 5)
    api = a.members()[1].to_api()
    assert api["Name"] == "dc1-s2" and api["Addr"] == "127.0.0.2" and api["Port"] == 8301
    assert api["Status"] == 1
    assert api["Tags"]["role"] == "consul" and api["Tags"]["id"] == "id-2"
    assert (
        api["Tags"]["vsn"] == "2"
        and api["Tags"]["raft_vsn"] == "3"
        and api["Tags"]["port"] == "8300"
    )
    b.set_tags({**b.local_member.tags, "build": "2.0"}, h.now)
    h._after("dc1-s2")
    assert h.run_until_true(lambda: a.members()[1].tags["build"] == "2.0", 5)
    assert any(e[2] == "member_update" and e[1] == "dc1-s1" for e in h.trace)


def _scenario_hash(seed: int) -> str:
    h = Harness(seed, loss=0.05)
    cores = h.add_pool(6, keys=[K1])
    h.run_for(3)
    h.crash("dc1-s2")
    h.run_for(8)
    h.leave("dc1-s6")
    h.keyring_query("dc1-s1", "list", None)
    h.run_for(8)
    assert cores
    return h.trace_hash()


def test_same_seed_same_trace() -> None:
    a, b = _scenario_hash(11), _scenario_hash(11)
    assert a == b, "seed=11 is not deterministic"
    assert _scenario_hash(12) != a


def test_trace_independent_of_hash_seed() -> None:
    code = (
        "import sys; sys.path.insert(0, '.');"
        "from tests.gossip.test_gossip_membership import _scenario_hash;"
        "print(_scenario_hash(11))"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == _scenario_hash(11)


@pytest.mark.parametrize("seed", range(100, 120))
def test_randomized_crash_under_loss(seed: int) -> None:
    """5% loss on every datagram: the crashed member fails everywhere, the rest end up alive."""
    h = Harness(seed, loss=0.05)
    cores = h.add_pool(5, keys=[K1])
    names = [c.name for c in cores]
    assert h.run_until_true(lambda: converged(h, names), 30), fail(h, "never converged")
    victim = names[h.rng.randrange(5)]
    h.crash(victim)
    others = [n for n in names if n != victim]
    ok = h.run_until_true(lambda: all(h.members(n)[victim] == 4 for n in others), 20)
    assert ok, fail(h, f"{victim} not failed everywhere")
    h.run_for(10)
    want = {n: (4 if n == victim else 1) for n in names}
    assert all(h.members(n) == want for n in others), fail(h, "live members did not settle alive")


def test_join_to_nobody_reports_failure() -> None:
    h = Harness(13)
    h.add_member("dc1-s1", "10.0.0.1:8301", keyring=None)
    h.cores["dc1-s1"].join("10.0.0.99:8301", h.now)
    h._after("dc1-s1")
    h.run_for(10)
    failed = [e for e in h.trace if e[2] == "join_failed"]
    assert [e[3] for e in failed] == ["Failed to join 10.0.0.99:8301: no response"]
