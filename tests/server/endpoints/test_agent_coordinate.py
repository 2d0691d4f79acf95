"""The agent endpoints py-consul's agent tests reach (self's keys, reload, token, monitor) and
/v1/coordinate/* on a real cluster in virtual time."""

from __future__ import annotations

import json

import pytest
import trio

from consim.acl import ACLConfig

from .helpers import eventually, get_json, http, ready, run

ORIGIN = {"Vec": [0, 0, 0, 0, 0, 0, 0, 0], "Error": 1.5, "Adjustment": 0, "Height": 1e-05}


def test_agent_self_has_consuls_sections_and_reload_succeeds():
    async def body(c):
        await ready(c)
        _, _, me = await get_json(c, "dc1-s1", "/v1/agent/self")
        reload = await http(c, "dc1-s1", "PUT", "/v1/agent/reload")
        return me, reload

    me, reload = run(body)
    # Consul's Self struct order; xDS only comes with an xDS server, which consim has not
    assert list(me) == ["Config", "DebugConfig", "Coord", "Member", "Stats", "Meta"]
    assert list(me["Config"]) == [
        "Datacenter", "PrimaryDatacenter", "NodeName", "NodeID", "Revision", "Server", "Version"
    ]  # fmt: skip
    assert me["Coord"] == ORIGIN
    assert me["DebugConfig"]["NodeName"] == me["Config"]["NodeName"] == "dc1-s1"
    assert me["Meta"]["consul-version"] == me["Config"]["Version"]
    assert (reload[0], reload[2]) == (200, b"")


def test_agent_token_needs_acls_and_the_default_token_serves_tokenless_requests():
    acl = ACLConfig.from_dict(
        {"enabled": True, "default_policy": "deny", "initial_management": "root"}
    )

    async def body(c):
        await ready(c)
        r = {}
        r["denied"] = await http(c, "dc1-s1", "GET", "/v1/kv/x")
        r["anon-set"] = await http(
            c, "dc1-s1", "PUT", "/v1/agent/token/default", body=b'{"Token": "root"}'
        )
        root = {"X-Consul-Token": "root"}
        r["unknown"] = await http(
            c, "dc1-s1", "PUT", "/v1/agent/token/nope", headers=root, body=b'{"Token": "x"}'
        )
        r["bad-body"] = await http(
            c, "dc1-s1", "PUT", "/v1/agent/token/default", headers=root, body=b'{"Token": 1}'
        )
        r["set"] = await http(
            c, "dc1-s1", "PUT", "/v1/agent/token/acl_token", headers=root, body=b'{"token": "root"}'
        )
        r["allowed"] = await http(c, "dc1-s1", "PUT", "/v1/kv/x", body=b"1")
        r["other-agent"] = await http(c, "dc1-s2", "PUT", "/v1/kv/x", body=b"1")
        return r

    r = run(body, acl=acl)
    assert r["denied"][0] == 403
    assert r["anon-set"][0] == 403 and r["anon-set"][2].startswith(b"Permission denied")
    assert (r["unknown"][0], r["unknown"][2]) == (404, b'Token "nope" is unknown')
    assert r["bad-body"][0] == 400 and r["bad-body"][2] == (
        b"Request decode failed: json: cannot unmarshal number into Go struct field "
        b"AgentToken.Token of type string"
    )
    assert (r["set"][0], r["set"][2]) == (200, b"")
    assert (r["allowed"][0], r["allowed"][2]) == (200, b"true")
    assert r["other-agent"][0] == 403  # each agent has its own tokens


def test_agent_token_without_acls_is_401():
    async def body(c):
        await ready(c)
        return await http(c, "dc1-s1", "PUT", "/v1/agent/token/default", body=b'{"Token": "x"}')

    status, _, raw = run(body)
    assert (status, raw) == (401, b"ACL support disabled")


@pytest.mark.parametrize("logjson", [False, True])
def test_agent_monitor_checks_the_level_then_streams_this_agents_lines(logjson):
    query = b"loglevel=debug&logjson" if logjson else b"loglevel=debug"

    async def body(c):
        leader, _ = await ready(c)
        bad = await http(c, leader.name, "GET", "/v1/agent/monitor?loglevel=loud")
        app = c.app(leader.name)
        chunks: list[bytes] = []
        start = {}

        async def send(message):
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        async def receive():
            await trio.sleep_forever()

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": "/v1/agent/monitor",
            "raw_path": b"/v1/agent/monitor", "query_string": query,
            "root_path": "", "headers": [(b"host", b"a")], "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8500), "extensions": {},
        }  # fmt: skip
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app, scope, receive, send)
            await trio.sleep(0.5)
            leader.events.emit(leader.name, "probe", {"n": 1}, level="DEBUG", message="probe one")
            leader.events.emit("dc1-s9", "probe", {}, message="someone else")
            await eventually(lambda: any(b"probe one" in ch for ch in chunks), 5)
            nursery.cancel_scope.cancel()
        return bad, start, b"".join(chunks)

    bad, start, streamed = run(body)
    assert (bad[0], bad[2]) == (400, b"Unknown log level: loud")
    assert start["status"] == 200
    lines = streamed.decode().splitlines()
    assert not any("someone else" in line for line in lines)
    if not logjson:
        assert any(line.endswith("agent: probe one: n=1") and "[DEBUG]" in line for line in lines)
        return
    records = [json.loads(line) for line in lines]
    [probe] = [r for r in records if r["@message"] == "probe one"]
    # hclog's JSON: a Go map, keys sorted; the virtual epoch's clock to the microsecond
    assert list(probe) == ["@level", "@message", "@module", "@timestamp", "n"]
    assert (probe["@level"], probe["@module"], probe["n"]) == ("debug", "agent", 1)
    assert probe["@timestamp"].endswith("Z") and len(probe["@timestamp"]) == 27


def test_coordinates_datacenters_update_node_and_nodes():
    async def body(c):
        await ready(c)
        r = {}
        _, _, r["dcs"] = await get_json(c, "dc1-s2", "/v1/coordinate/datacenters")
        await eventually(lambda: "dc1-s1" in c.leader().fsm.catalog.nodes, 30)
        r["missing"] = await http(c, "dc1-s2", "GET", "/v1/coordinate/node/dc1-s1")
        coord = {"Vec": [1, 2, 3, 4, 5, 6, 7, 8], "Error": 0.5, "Adjustment": 0.1, "Height": 2}
        update = {"Node": "dc1-s1", "Coord": coord}
        r["update"] = await http(
            c, "dc1-s3", "PUT", "/v1/coordinate/update", body=json.dumps(update).encode()
        )
        r["unknown-node"] = await http(
            c, "dc1-s3", "PUT", "/v1/coordinate/update",
            body=json.dumps({"Node": "ghost", "Coord": coord}).encode(),
        )  # fmt: skip
        short = {"Node": "dc1-s1", "Coord": {"Vec": [1, 2], "Error": 1.5, "Height": 1e-05}}
        r["short"] = await http(
            c, "dc1-s1", "PUT", "/v1/coordinate/update", body=json.dumps(short).encode()
        )
        _, headers, r["node"] = await get_json(c, "dc1-s2", "/v1/coordinate/node/dc1-s1")
        _, _, r["nodes"] = await get_json(c, "dc1-s3", "/v1/coordinate/nodes")
        _, _, r["other-segment"] = await get_json(c, "dc1-s3", "/v1/coordinate/nodes?segment=x")
        r["index"] = int(headers["x-consul-index"])
        return r

    r = run(body)
    [dc] = r["dcs"]
    assert list(dc) == ["Datacenter", "AreaID", "Coordinates"]
    assert (dc["Datacenter"], dc["AreaID"]) == ("dc1", "wan")
    assert [x["Node"] for x in dc["Coordinates"]] == ["dc1-s1", "dc1-s2", "dc1-s3"]
    assert all(x["Coord"] == ORIGIN for x in dc["Coordinates"])
    assert (r["missing"][0], r["missing"][2]) == (404, b"")
    assert (r["update"][0], r["update"][2]) == (200, b"")
    assert r["unknown-node"][0] == 200  # accepted, then dropped: the catalog has no such node
    assert r["short"][0] == 500
    assert r["short"][2] == b"rejected bad coordinate: &{[1 2] 1.5 0 1e-05}"
    expect = {"Vec": [1, 2, 3, 4, 5, 6, 7, 8], "Error": 0.5, "Adjustment": 0.1, "Height": 2}
    assert r["node"] == [{"Node": "dc1-s1", "Segment": "", "Coord": expect}]
    assert r["nodes"] == r["node"]  # ghost was never stored
    assert r["other-segment"] == []
    assert r["index"] > 1
