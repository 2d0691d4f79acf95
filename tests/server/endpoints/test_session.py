"""Sessions and KV locks through the HTTP API, in virtual time (issue 19 item 1): create with
Consul's defaults, info/list/node/renew/destroy, TTL expiry on the leader, ?acquire/?release,
behaviours release and delete, lock-delay, and invalidation when the session's node fails in
gossip."""

from __future__ import annotations

import json

import trio

from .helpers import eventually, get_json, http, ready, run


async def _registered(c, leader):
    await eventually(lambda: len(leader.fsm.catalog.nodes) == 3, 30)


async def _create(c, name, body=b""):
    status, _, raw = await http(c, name, "PUT", "/v1/session/create", body=body)
    assert status == 200, raw
    return json.loads(raw)["ID"]


async def _kv(c, name, method, path, body=b""):
    status, _, raw = await http(c, name, method, path, body=body)
    return status, raw


def test_session_lifecycle_in_consuls_shapes():
    async def body(c):
        leader, (f1, f2) = await ready(c)
        await _registered(c, leader)
        r = {"sid": await _create(c, f1.name)}
        sid = r["sid"]
        r["info"] = (await get_json(c, f2.name, f"/v1/session/info/{sid}"))[2]
        r["node"] = (await get_json(c, f2.name, f"/v1/session/node/{f1.name}"))[2]
        r["other-node"] = (await get_json(c, f2.name, f"/v1/session/node/{f2.name}"))[2]
        r["list"] = (await get_json(c, f2.name, "/v1/session/list"))[2]
        r["renew"] = await http(c, f2.name, "PUT", f"/v1/session/renew/{sid}")
        r["destroy"] = await http(c, f2.name, "PUT", f"/v1/session/destroy/{sid}")
        r["gone"] = (await get_json(c, f2.name, f"/v1/session/info/{sid}"))[2]
        r["renew-gone"] = await http(c, f2.name, "PUT", f"/v1/session/renew/{sid}")
        r["f1"] = f1.name
        return r

    r = run(body)
    [s] = r["info"]
    assert list(s) == [
        "ID",
        "Name",
        "Node",
        "LockDelay",
        "Behavior",
        "TTL",
        "NodeChecks",
        "ServiceChecks",
        "CreateIndex",
        "ModifyIndex",
    ]
    assert (s["ID"], s["Node"], s["LockDelay"], s["Behavior"], s["TTL"]) == (
        r["sid"],
        r["f1"],
        15_000_000_000,
        "release",
        "",
    )
    assert s["NodeChecks"] == ["serfHealth"]
    assert r["node"] == [s] and r["other-node"] == [] and r["list"] == [s]
    assert r["renew"][0] == 200 and json.loads(r["renew"][2]) == [s]
    assert r["destroy"][0] == 200 and r["destroy"][2] == b"true"
    assert r["gone"] == []
    assert r["renew-gone"][0] == 404
    assert r["renew-gone"][2] == f"Session id '{r['sid']}' not found".encode()


def test_session_create_errors():
    async def body(c):
        leader, (f1, _) = await ready(c)
        await _registered(c, leader)
        out = {}
        for name, raw in {
            "behavior": b'{"Behavior": "keep"}',
            "ttl-bad": b'{"TTL": "soon"}',
            "ttl-short": b'{"TTL": "5s"}',
            "node": b'{"Node": "nowhere"}',
            "check": b'{"NodeChecks": ["serfHealth", "disk"]}',
            "json": b'{"TTL": ',
        }.items():
            status, _, text = await http(c, f1.name, "PUT", "/v1/session/create", body=raw)
            out[name] = (status, text.decode())
        out["destroy-empty"] = (await http(c, f1.name, "PUT", "/v1/session/destroy/"))[::2]
        return out

    r = run(body)
    assert r["behavior"] == (500, "Invalid Behavior setting 'keep'")
    assert r["ttl-bad"] == (500, "Session TTL 'soon' invalid: time: invalid duration \"soon\"")
    assert r["ttl-short"] == (
        500,
        "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]",
    )
    assert r["node"] == (500, "Missing node registration")
    assert r["check"] == (500, "Missing check 'disk' registration")
    assert r["json"][0] == 400 and r["json"][1].startswith("Request decode failed: ")
    assert r["destroy-empty"] == (400, b"Missing session")


def test_acquire_release_and_lock_delay():
    async def body(c):
        leader, (f1, f2) = await ready(c)
        await _registered(c, leader)
        a = await _create(c, f1.name, b'{"LockDelay": "5s"}')
        b = await _create(c, f2.name, b'{"LockDelay": 0}')
        r = {}
        r["a-acquires"] = await _kv(c, f1.name, "PUT", f"/v1/kv/job?acquire={a}", b"a")
        r["b-refused"] = await _kv(c, f2.name, "PUT", f"/v1/kv/job?acquire={b}", b"b")
        r["a-again"] = await _kv(c, f1.name, "PUT", f"/v1/kv/job?acquire={a}", b"a2")
        r["held"] = json.loads((await _kv(c, f2.name, "GET", "/v1/kv/job"))[1])[0]
        r["b-release"] = await _kv(c, f2.name, "PUT", f"/v1/kv/job?release={b}")
        r["a-release"] = await _kv(c, f1.name, "PUT", f"/v1/kv/job?release={a}")
        r["free"] = json.loads((await _kv(c, f2.name, "GET", "/v1/kv/job"))[1])[0]
        r["b-takes"] = await _kv(c, f2.name, "PUT", f"/v1/kv/job?acquire={b}", b"b")
        r["b-index"] = json.loads((await _kv(c, f2.name, "GET", "/v1/kv/job"))[1])[0]["LockIndex"]
        await _kv(c, f2.name, "PUT", f"/v1/kv/job?release={b}")
        # A destroyed session's keys are released and held back for its lock-delay.
        await _kv(c, f1.name, "PUT", f"/v1/kv/job?acquire={a}", b"a3")
        await http(c, f1.name, "PUT", f"/v1/session/destroy/{a}")
        start = trio.current_time()
        r["in-delay"] = await _kv(c, f2.name, "PUT", f"/v1/kv/job?acquire={b}", b"b")
        while (await _kv(c, f2.name, "PUT", f"/v1/kv/job?acquire={b}", b"b"))[1] != b"true":
            await trio.sleep(0.25)
        r["waited"] = trio.current_time() - start
        return r

    r = run(body)
    assert r["a-acquires"] == (200, b"true")
    assert r["b-refused"] == (200, b"false")
    assert r["a-again"] == (200, b"true")
    assert r["held"]["LockIndex"] == 1 and r["held"]["Session"]
    assert r["b-release"] == (200, b"false")  # not the holder
    assert r["a-release"] == (200, b"true")
    assert "Session" not in r["free"] and r["free"]["LockIndex"] == 1
    assert r["b-takes"] == (200, b"true") and r["b-index"] == 2
    assert r["in-delay"] == (200, b"false")
    assert 4.5 <= r["waited"] <= 6.0, r["waited"]


def test_behavior_delete_and_ttl_expiry():
    async def body(c):
        leader, (f1, _) = await ready(c)
        await _registered(c, leader)
        sid = await _create(c, f1.name, b'{"TTL": "10s", "Behavior": "delete", "LockDelay": 0}')
        await _kv(c, f1.name, "PUT", f"/v1/kv/eph?acquire={sid}", b"x")
        start = trio.current_time()
        # Renewed for 30 s, it lives; then left alone it expires after TTL x 2.
        while True:
            assert (await http(c, f1.name, "PUT", f"/v1/session/renew/{sid}"))[0] == 200
            renewed = trio.current_time()
            if renewed - start >= 30:
                break
            await trio.sleep(15)  # under TTL x 2 (20 s) each time
        await eventually(lambda: sid not in leader.fsm.sessions.sessions, 40, poll=0.1)
        return {
            "lived": trio.current_time() - renewed,
            "key": await _kv(c, f1.name, "GET", "/v1/kv/eph"),
        }

    r = run(body)
    assert 19 <= r["lived"] <= 21, r["lived"]
    assert r["key"][0] == 404  # behaviour delete: the held key went with the session


def test_a_failed_node_invalidates_its_sessions_and_releases_their_locks():
    async def body(c):
        leader, (f1, f2) = await ready(c)
        await _registered(c, leader)
        sid = await _create(c, f1.name, b'{"LockDelay": "1s"}')
        await _kv(c, f1.name, "PUT", f"/v1/kv/leader-lock?acquire={sid}", b"f1")
        c.kill(f1.name)
        await eventually(lambda: sid not in leader.fsm.sessions.sessions, 60, poll=0.1)
        r = {"held": json.loads((await _kv(c, f2.name, "GET", "/v1/kv/leader-lock"))[1])[0]}
        r["recreate"] = await http(
            c, f2.name, "PUT", "/v1/session/create", body=json.dumps({"Node": f1.name}).encode()
        )
        return r

    r = run(body)
    assert "Session" not in r["held"] and r["held"]["Value"] is not None
    assert r["recreate"][0] == 500
    assert r["recreate"][2] == b"Check 'serfHealth' is in critical state"


def test_sessions_and_the_catalog_reach_a_follower_through_a_snapshot():
    """A follower that was down while the log was compacted gets the catalog, the sessions and
    the locks from the leader's snapshot."""

    async def body(c):
        leader, (f1, f2) = await ready(c)
        await _registered(c, leader)
        c.kill(f2.name)
        behind = f2.fsm.last_applied
        sid = await _create(c, f1.name, b'{"Name": "snap"}')
        await _kv(c, f1.name, "PUT", f"/v1/kv/held?acquire={sid}", b"x")
        ext = {"Node": "ext", "Address": "10.9.9.9", "Service": {"Service": "api", "Port": 1}}
        await http(c, f1.name, "PUT", "/v1/catalog/register", body=json.dumps(ext).encode())
        for i in range(20):  # past snapshot_threshold, so the log is compacted
            await _kv(c, f1.name, "PUT", f"/v1/kv/filler/{i}", b"y")
        # The entries the follower lacks are gone from the leader's log: only a snapshot helps.
        await eventually(lambda: leader.core.first_index > behind + 1, 10)
        await c.restart(f2.name)
        await eventually(lambda: f2.running and f2.fsm.last_applied >= leader.fsm.last_applied, 30)
        return {
            "info": (await get_json(c, f2.name, f"/v1/session/info/{sid}?stale"))[2],
            "held": json.loads((await _kv(c, f2.name, "GET", "/v1/kv/held?stale"))[1])[0],
            "api": (await get_json(c, f2.name, "/v1/catalog/service/api?stale"))[2],
            "sid": sid,
            "restored": f2.fsm.last_applied,
        }

    r = run(body, snapshot_threshold=8, trailing_logs=4, snapshot_interval=0)
    assert [s["ID"] for s in r["info"]] == [r["sid"]]
    assert r["held"]["Session"] == r["sid"]
    assert [s["Node"] for s in r["api"]] == ["ext"]
