"""KV over HTTP on a real cluster in virtual time: shapes, index headers, blocking, consistency."""

from __future__ import annotations

import base64
import json

import pytest
import trio

from .helpers import get_json, http, kv_index, ready, run


async def put(c, name, key, value, query=""):
    status, _, body = await http(c, name, "PUT", f"/v1/kv/{key}{query}", body=value)
    assert status == 200, (status, body)
    return json.loads(body)


def test_put_get_base64_and_missing_key():
    async def body(c):
        leader, (f1, _) = await ready(c)
        assert await put(c, f1.name, "app/config", b"hello") is True  # forwarded write
        _, headers, entries = await get_json(c, leader.name, "/v1/kv/app/config")
        assert len(entries) == 1
        e = entries[0]
        assert list(e) == ["LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"]
        assert e["Key"] == "app/config"
        assert base64.b64decode(e["Value"]) == b"hello"
        assert e["CreateIndex"] == e["ModifyIndex"] == kv_index(headers) == leader.fsm.kv_index
        assert (e["LockIndex"], e["Flags"]) == (0, 0)
        # Empty value is null.
        assert await put(c, leader.name, "empty", b"") is True
        _, _, entries = await get_json(c, leader.name, "/v1/kv/empty")
        assert entries[0]["Value"] is None
        # Missing key: 404, empty body, but the index headers are there (the table's index).
        status, headers, raw = await http(c, f1.name, "GET", "/v1/kv/nope")
        assert (status, raw) == (404, b"")
        assert kv_index(headers) == leader.fsm.kv_index
        assert headers["x-consul-knownleader"] == "true"
        assert headers["x-consul-effective-consistency"] == "leader"
        assert headers["x-consul-lastcontact"] == "0"

    run(body)


def test_index_zero_is_sent_as_one():
    async def body(c):
        leader, _ = await ready(c)
        return await http(c, leader.name, "GET", "/v1/kv/nothing")

    status, headers, _ = run(body)
    assert status == 404 and headers["x-consul-index"] == "1"


def test_recurse_keys_separator_raw():
    async def body(c):
        leader, (f1, _) = await ready(c)
        for key, value in [("a/1", b"x"), ("a/2", b"y"), ("a/sub/3", b"z"), ("b", b"w")]:
            await put(c, leader.name, key, value)
        _, h, entries = await get_json(c, f1.name, "/v1/kv/a/?recurse")
        assert [e["Key"] for e in entries] == ["a/1", "a/2", "a/sub/3"]
        assert [base64.b64decode(e["Value"]) for e in entries] == [b"x", b"y", b"z"]
        assert kv_index(h) == leader.fsm.kv_index
        _, _, everything = await get_json(c, f1.name, "/v1/kv/?recurse")
        assert [e["Key"] for e in everything] == ["a/1", "a/2", "a/sub/3", "b"]
        _, _, keys = await get_json(c, f1.name, "/v1/kv/a/?keys")
        assert keys == ["a/1", "a/2", "a/sub/3"]
        _, _, keys = await get_json(c, f1.name, "/v1/kv/a/?keys&separator=/")
        assert keys == ["a/1", "a/2", "a/sub/"]
        _, _, keys = await get_json(c, f1.name, "/v1/kv/?keys&separator=/")
        assert keys == ["a/", "b"]
        status, _, _ = await http(c, f1.name, "GET", "/v1/kv/zzz/?keys")
        assert status == 404
        status, headers, raw = await http(c, f1.name, "GET", "/v1/kv/a/sub/3?raw")
        assert (status, raw) == (200, b"z")
        assert headers["content-type"].startswith("text/plain")
        status, _, _ = await http(c, f1.name, "GET", "/v1/kv/a/?recurse&raw")
        assert status == 200

    run(body)


def test_cas_flags_delete():
    async def body(c):
        leader, (f1, _) = await ready(c)
        n = f1.name
        # cas=0: create only if absent.
        assert await put(c, n, "k", b"v1", "?cas=0") is True
        assert await put(c, n, "k", b"v2", "?cas=0") is False
        _, _, [e] = await get_json(c, n, "/v1/kv/k")
        assert base64.b64decode(e["Value"]) == b"v1"
        idx = e["ModifyIndex"]
        assert await put(c, n, "k", b"v3", f"?cas={idx + 100}") is False
        assert await put(c, n, "k", b"v3", f"?cas={idx}&flags=42") is True
        _, _, [e] = await get_json(c, n, "/v1/kv/k")
        assert (base64.b64decode(e["Value"]), e["Flags"]) == (b"v3", 42)
        assert e["CreateIndex"] == idx < e["ModifyIndex"]
        # delete with a stale cas fails, with the right one succeeds
        status, _, raw = await http(c, n, "DELETE", f"/v1/kv/k?cas={idx}")
        assert (status, raw) == (200, b"false")
        status, _, raw = await http(c, n, "DELETE", f"/v1/kv/k?cas={e['ModifyIndex']}")
        assert (status, raw) == (200, b"true")
        assert (await http(c, n, "GET", "/v1/kv/k"))[0] == 404
        # plain delete and delete-tree
        for key in ("t/1", "t/2", "tx", "u"):
            await put(c, n, key, b".")
        status, _, raw = await http(c, n, "DELETE", "/v1/kv/u")
        assert (status, raw) == (200, b"true")
        status, _, raw = await http(c, n, "DELETE", "/v1/kv/t/?recurse")
        assert (status, raw) == (200, b"true")
        _, _, keys = await get_json(c, n, "/v1/kv/?keys")
        assert keys == ["tx"]
        # bad flags: Consul's strconv error text (a 500)
        status, _, raw = await http(c, n, "PUT", "/v1/kv/k?flags=x", body=b"v")
        assert (status, raw) == (500, b'strconv.ParseUint: parsing "x": invalid syntax')

    run(body)


def test_blocking_query_returns_when_a_write_lands():
    async def body(c):
        leader, (f1, _) = await ready(c)
        await put(c, leader.name, "watch", b"old")
        _, headers, _ = await get_json(c, f1.name, "/v1/kv/watch")
        index = kv_index(headers)
        result = {}

        async def watcher():
            t0 = trio.current_time()
            result["resp"] = await get_json(c, f1.name, f"/v1/kv/watch?index={index}&wait=30s")
            result["elapsed"] = trio.current_time() - t0

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watcher)
            await trio.sleep(4)
            assert "resp" not in result  # still blocked
            await put(c, leader.name, "watch", b"new")
        _, headers, [e] = result["resp"]
        assert base64.b64decode(e["Value"]) == b"new"
        assert kv_index(headers) > index
        assert 4 <= result["elapsed"] < 4.5

    run(body)


@pytest.mark.parametrize("mode", ["", "&stale", "&consistent"])
def test_blocking_query_times_out_with_same_index(mode):
    async def body(c):
        leader, (f1, _) = await ready(c)
        await put(c, leader.name, "quiet", b"v")
        await trio.sleep(0.5)
        _, headers, _ = await get_json(c, f1.name, "/v1/kv/quiet")
        index = kv_index(headers)
        # A write elsewhere in the KV table does not wake a single-key watch on another key?
        # Consul watches the kvs table index for missing keys only; an existing key's index is
        # its ModifyIndex, so nothing changes here.
        t0 = trio.current_time()
        status, headers, raw = await http(
            c, f1.name, "GET", f"/v1/kv/quiet?index={index}&wait=8s{mode}"
        )
        return status, kv_index(headers), index, trio.current_time() - t0, raw

    status, got, index, elapsed, raw = run(body)
    assert status == 200 and json.loads(raw)[0]["Key"] == "quiet"
    assert got == index
    # wait plus up to wait/16 of jitter
    assert 8.0 <= elapsed <= 8.0 * 17 / 16 + 0.1


def test_consistency_modes_headers():
    async def body(c):
        leader, (f1, _) = await ready(c)
        await put(c, leader.name, "m", b"v")
        await trio.sleep(0.5)  # followers apply the write
        out = {}
        for name in (leader.name, f1.name):
            for q in ("", "?stale", "?consistent", "?leader", "?max_stale=1m"):
                status, headers, raw = await http(c, name, "GET", f"/v1/kv/m{q}")
                assert status == 200, raw
                out[(name, q)] = headers
        return leader, f1, out

    leader, f1, out = run(body)
    for (name, q), h in out.items():
        assert h["x-consul-knownleader"] == "true"
        assert int(h["x-consul-index"]) > 1
        expected = {"": "leader", "?leader": "leader", "?consistent": "consistent"}.get(q, "stale")
        assert h["x-consul-effective-consistency"] == expected, (name, q)
        local_follower = name == f1.name and expected == "stale"
        contact = int(h["x-consul-lastcontact"])
        if local_follower:
            assert 0 <= contact <= 150  # heard from the leader within a heartbeat interval
        else:
            assert contact == 0  # answered by the leader
    # the same index everywhere once applied
    assert len({h["x-consul-index"] for h in out.values()}) == 1


def test_query_flag_errors_on_real_cluster():
    async def body(c):
        leader, _ = await ready(c)
        out = []
        for q in ("?stale&consistent", "?max_stale=x", "?index=x", "?index=1&wait=x"):
            out.append(await http(c, leader.name, "GET", f"/v1/kv/k{q}"))
        return out

    conflict, max_stale, index, wait = run(body)
    assert (conflict[0], conflict[2]) == (
        400,
        b"Cannot specify ?stale with ?consistent, conflicting semantics.",
    )
    assert (max_stale[0], max_stale[2]) == (400, b'Invalid max_stale value "x"')
    assert (index[0], index[2]) == (400, b"Invalid index")
    assert (wait[0], wait[2]) == (400, b"Invalid wait time")


# ---- the stale-read lesson ------------------------------------------------------------------
async def _old_leader_isolated(c):
    leader, followers = await ready(c)
    await put(c, leader.name, "color", b"red")
    await trio.sleep(0.5)
    c.isolate(leader.name)
    new = await c.wait_for_leader(exclude={leader.name})
    assert new in followers
    assert await put(c, new.name, "color", b"blue") is True
    return leader, new


def _value(raw):
    return base64.b64decode(json.loads(raw)[0]["Value"])


def test_isolated_old_leader_refuses_consistent_while_new_leader_serves_new_value():
    async def body(c):
        old, new = await _old_leader_isolated(c)
        _, headers, raw = await http(c, new.name, "GET", "/v1/kv/color")
        assert _value(raw) == b"blue"
        assert headers["x-consul-effective-consistency"] == "leader"
        status, _, text = await http(c, old.name, "GET", "/v1/kv/color?consistent")
        assert (status, text) == (500, b"No cluster leader")
        status, _, text = await http(c, old.name, "GET", "/v1/kv/color")
        assert (status, text) == (500, b"No cluster leader")
        # The majority's other server agrees with the new leader, even with ?stale.
        other = next(n for n in c.servers.values() if n not in (old, new))
        await trio.sleep(0.5)
        _, headers, raw = await http(c, other.name, "GET", "/v1/kv/color?stale")
        assert _value(raw) == b"blue"

    run(body, rpc_hold_timeout=0.5)


def test_isolated_old_leader_serves_stale_old_value():
    async def body(c):
        old, new = await _old_leader_isolated(c)
        status, headers, raw = await http(c, old.name, "GET", "/v1/kv/color?stale")
        assert status == 200, raw
        assert _value(raw) == b"red"
        assert headers["x-consul-effective-consistency"] == "stale"
        assert headers["x-consul-knownleader"] == "false"
        _, _, raw = await http(c, new.name, "GET", "/v1/kv/color")
        assert _value(raw) == b"blue"

    run(body, rpc_hold_timeout=0.5)


def test_isolated_follower_serves_stale_old_value():
    """The same lesson from a follower cut off in a minority: ?stale shows the old value."""

    async def body(c):
        leader, (f1, f2) = await ready(c)
        await put(c, leader.name, "color", b"red")
        await trio.sleep(0.5)
        c.isolate(f1.name)
        assert await put(c, f2.name, "color", b"blue") is True
        await trio.sleep(3)
        status, headers, raw = await http(c, f1.name, "GET", "/v1/kv/color?stale")
        assert status == 200 and _value(raw) == b"red"
        assert headers["x-consul-effective-consistency"] == "stale"
        assert int(headers["x-consul-lastcontact"]) >= 3000
        # max_stale smaller than the lag: re-run on the leader, which it cannot reach.
        status, _, text = await http(c, f1.name, "GET", "/v1/kv/color?max_stale=1s")
        assert (status, text) == (500, b"No cluster leader")
        status, _, text = await http(c, f1.name, "GET", "/v1/kv/color?consistent")
        assert (status, text) == (500, b"No cluster leader")
        _, _, raw = await http(c, leader.name, "GET", "/v1/kv/color?consistent")
        assert _value(raw) == b"blue"
        # Healed, it catches up.
        c.heal()
        await trio.sleep(1)
        _, _, raw = await http(c, f1.name, "GET", "/v1/kv/color?stale")
        assert _value(raw) == b"blue"

    run(body, rpc_hold_timeout=0.5)
