"""serf keyring queries: rotation across pools, failure texts, members down, encryption off."""

from __future__ import annotations

import math

import pytest

from consim.gossip import GossipConfig, KeyringError, KeyringResponse
from consim.gossip.harness import Harness

from .helpers import K1, K1_B64, K2, K2_B64, converged, fail, pool


def run_op(h: Harness, origin: str, op: str, key: str | None) -> KeyringResponse:
    result = h.wait_result(origin, h.keyring_query(origin, op, key))
    assert isinstance(result, KeyringResponse)
    return result


def three_pools(seed: int) -> tuple[Harness, dict[str, list[str]]]:
    """dc1 LAN (3), dc2 LAN (3) and the WAN pool of all 6 servers, on the same hosts."""
    h = Harness(seed)
    dc1 = h.add_pool(3, prefix="dc1-s", keys=[K1])
    dc2 = h.add_pool(3, prefix="dc2-s", keys=[K1])
    hosts = [c.address.split(":")[0] for c in dc1 + dc2]
    wan = []
    for i, host in enumerate(hosts):
        dc = "dc1" if i < 3 else "dc2"
        node = f"{dc}-s{i % 3 + 1}.{dc}"
        wan.append(
            h.add_member(
                node, f"{host}:8302", config=GossipConfig.wan(), keyring=type(dc1[0].keyring)([K1])
            )
        )
    for core in wan[1:]:
        h.join(core.name, wan[0].name)
    pools = {
        "dc1": [c.name for c in dc1],
        "dc2": [c.name for c in dc2],
        "wan": [c.name for c in wan],
    }
    ok = h.run_until_true(lambda: all(converged(h, names) for names in pools.values()), 30)
    assert ok, fail(h, "pools never converged")
    return h, pools


def test_full_rotation_across_three_pools() -> None:
    """install, use, remove on dc1 LAN, dc2 LAN and WAN, each from a different member.

    Epidemic spread is probabilistic in serf too: in a 6-member pool with a retransmit limit of
    4, a query misses one member about 0.03% of the time per member. The seed is fixed, so the
    run is exact; see the harness to explore others.
    """
    h, pools = three_pools(31)
    for names in pools.values():
        n = len(names)
        origin = names[-1]
        r = run_op(h, origin, "install", K2_B64)
        assert r.ok and (r.num_nodes, r.num_resp, r.num_err) == (n, n, 0), r
        r = run_op(h, origin, "list", None)
        assert r.keys == {K1_B64: n, K2_B64: n} and r.primary_keys == {K1_B64: n}, r
        r = run_op(h, names[0], "use", K2_B64)
        assert r.ok, r
        r = run_op(h, origin, "list", None)
        assert r.primary_keys == {K2_B64: n}, r
        r = run_op(h, origin, "remove", K1_B64)
        assert r.ok, r
        r = run_op(h, origin, "list", None)
        assert r.keys == {K2_B64: n} and r.primary_keys == {K2_B64: n} and r.messages == {}, r
    h.run_for(20)
    for names in pools.values():
        assert converged(h, names), fail(h, "pool broke after rotation")
        for name in names:
            assert h.cores[name].keyring.keys == [K2]
            assert h.cores[name].counters["dropped_decrypt"] == 0
    events = {e[2] for e in h.trace}
    assert {"key_installed", "key_used", "key_removed"} <= events
    assert any(e[3] == "Received install-key query" for e in h.trace)


def test_failure_texts_per_node() -> None:
    h, names = pool(32, 3, keys=[K1])
    r = run_op(h, "dc1-s1", "remove", K1_B64)
    assert r.error == "3/3 nodes reported failure"
    assert r.messages == dict.fromkeys(names, "Removing the primary key is not allowed")
    r = run_op(h, "dc1-s2", "use", K2_B64)
    assert r.error == "3/3 nodes reported failure"
    assert set(r.messages.values()) == {"Requested key is not in the keyring"}
    r = run_op(h, "dc1-s2", "install", "AAAA")
    assert r.error == "3/3 nodes reported failure" and r.num_err == 3
    assert set(r.messages.values()) == {"key size must be 16, 24 or 32 bytes"}
    r = run_op(h, "dc1-s3", "install", K1_B64)  # already installed: success
    assert r.ok and r.num_resp == 3
    r = run_op(h, "dc1-s3", "remove", K2_B64)  # not installed: success
    assert r.ok


def test_bad_base64_fails_before_any_query() -> None:
    h, _ = pool(33, 3, keys=[K1])
    core = h.cores["dc1-s1"]
    core.ready()
    with pytest.raises(KeyringError) as info:
        core.start_keyring_query("install", "abcd!efg", h.now)
    assert str(info.value) == "illegal base64 data at input byte 4"
    ready = core.ready()
    assert not ready.datagrams and not ready.query_results


def test_encryption_off_texts() -> None:
    h, names = pool(34, 3, keys=None)
    for op in ("install", "use", "remove"):
        r = run_op(h, "dc1-s1", op, K1_B64)
        assert r.error == "3/3 nodes reported failure"
        assert r.messages == dict.fromkeys(names, "No keyring to modify (encryption not enabled)")
    r = run_op(h, "dc1-s1", "list", None)
    assert r.error == "3/3 nodes reported failure"
    assert r.messages == dict.fromkeys(names, "Keyring is empty (encryption not enabled)")
    assert r.keys == {}


def test_member_down_during_install_is_counted() -> None:
    h, names = pool(35, 5, keys=[K1])
    h.crash("dc1-s4")
    start = h.now
    r = run_op(h, "dc1-s1", "install", K2_B64)
    assert (r.num_nodes, r.num_resp, r.num_err) == (5, 4, 0), r
    assert r.error == "4/5 nodes reported success"
    # the originator waited the full serf query timeout for the missing member
    timeout = GossipConfig.lan().query_timeout(5)
    assert math.isclose(timeout, 0.2 * 16 * 1)
    assert h.now - start >= timeout
    assert h.cores["dc1-s4"].keyring.keys == [K1]
    assert all(h.cores[n].keyring.keys == [K1, K2] for n in names if n != "dc1-s4")


def test_query_timeout_formula() -> None:
    lan = GossipConfig.lan()
    assert math.isclose(lan.query_timeout(3), 3.2)
    assert math.isclose(lan.query_timeout(30), 6.4)
    assert math.isclose(GossipConfig.wan().query_timeout(6), 0.5 * 16 * 1)


def test_ping_query_collects_every_member() -> None:
    h, names = pool(36, 4, keys=[K1])
    result = h.wait_result("dc1-s2", h.cores["dc1-s2"].start_query("_serf_ping", None, h.now))
    h._after("dc1-s2")
    assert sorted(result.responses) == sorted(names)


def test_list_keys_is_cut_to_fit_serfs_query_response_limit() -> None:
    """serf keyListResponseWithCorrectSize: a node with more keys than fit in 1024 bytes answers
    with the first ones and says how many it left out."""
    import base64

    h, names = pool(12, 3, keys=[K1])
    many = [base64.b64encode(bytes([i]) * 32).decode() for i in range(1, 45)]  # AES-256 keys
    for key in many:
        assert run_op(h, names[0], "install", key).ok
    r = run_op(h, names[1], "list", None)
    assert r.ok, r
    total = len(many) + 1
    shown = set(r.messages.values())
    assert len(shown) == 1, r.messages
    (message,) = shown
    assert message.startswith("truncated key list response, showing first ")
    assert message.endswith(f" of {total} keys")
    first = int(message.split()[6])
    assert 0 < first < total
    # every node answered with the same first keys, in keyring order
    assert all(count == len(names) for count in r.keys.values())
    assert len(r.keys) == first
    assert any(e[2] == "key_list_truncated" for e in h.trace)


@pytest.mark.parametrize("relay_factor", [0, 2])
def test_keyring_query_relay_factor_makes_members_relay_their_answers(relay_factor: int) -> None:
    h, names = pool(13, 5, keys=[K1])
    qid = h.keyring_query(names[0], "list", None, relay_factor)
    result = h.wait_result(names[0], qid)
    assert isinstance(result, KeyringResponse) and result.ok and result.num_resp == 5, result
    h.run_for(2)
    relayed = sum(h.cores[n].counters["responses_relayed"] for n in names)
    # each of the 4 other members asks relay_factor members to relay its answer
    assert relayed == 4 * relay_factor, relayed
