"""The catalog and health endpoints through the HTTP API, in virtual time: registration and
deregistration through Raft (seen by every server), Consul's shapes and error texts, blocking
queries, and the servers' own registration with serfHealth (issue 19 items 1 and 2)."""

from __future__ import annotations

import json

import trio

from .helpers import eventually, get_json, http, ready, run

WEB = {
    "Node": "ext1",
    "Address": "10.1.0.7",
    "NodeMeta": {"rack": "r1"},
    "Service": {"Service": "web", "Tags": ["v1", "blue"], "Port": 8080},
    "Check": {"Name": "web alive", "ServiceID": "web", "Status": "passing"},
}


def _put(c, name, path, obj):
    return http(c, name, "PUT", path, body=json.dumps(obj).encode())


async def _servers_registered(c, leader):
    await eventually(lambda: len(leader.fsm.catalog.nodes) == 3, 30)
    index = leader.fsm.last_applied
    await eventually(lambda: all(n.fsm.last_applied >= index for n in c.datacenter_servers("dc1")))


def test_register_is_replicated_and_read_back_in_consuls_shapes():
    async def body(c):
        leader, (f1, f2) = await ready(c)
        await _servers_registered(c, leader)
        status, _, raw = await _put(c, f1.name, "/v1/catalog/register", WEB)
        assert (status, raw) == (200, b"true")
        index = leader.fsm.last_applied
        await eventually(lambda: f2.fsm.last_applied >= index)
        out = {}
        for path in (
            "/v1/catalog/services",
            "/v1/catalog/service/web?stale",
            "/v1/catalog/service/web?tag=blue",
            "/v1/catalog/service/web?tag=green",
            "/v1/catalog/node/ext1",
            "/v1/catalog/nodes?node-meta=rack:r1",
            "/v1/health/service/web",
            "/v1/health/checks/web",
            "/v1/health/node/ext1",
            "/v1/health/state/passing",
        ):
            out[path] = await get_json(c, f2.name, path)
        out["missing"] = await http(c, f2.name, "GET", "/v1/catalog/node/nope")
        return out

    out = run(body)
    _, headers, services = out["/v1/catalog/services"]
    assert services == {"consul": [], "web": ["blue", "v1"]}
    _, headers, [sn] = out["/v1/catalog/service/web?stale"]
    assert headers["x-consul-effective-consistency"] == "stale"
    assert list(sn)[:12] == [
        "ID",
        "Node",
        "Address",
        "Datacenter",
        "TaggedAddresses",
        "NodeMeta",
        "ServiceKind",
        "ServiceID",
        "ServiceName",
        "ServiceTags",
        "ServiceAddress",
        "ServiceWeights",
    ]
    assert (sn["Node"], sn["ServiceID"], sn["ServicePort"]) == ("ext1", "web", 8080)
    assert sn["NodeMeta"] == {"rack": "r1"} and sn["ServiceTags"] == ["v1", "blue"]
    assert sn["ServiceWeights"] == {"Passing": 1, "Warning": 1}  # ToServiceNode's default
    assert int(headers["x-consul-index"]) == sn["ModifyIndex"]
    assert len(out["/v1/catalog/service/web?tag=blue"][2]) == 1
    assert out["/v1/catalog/service/web?tag=green"][2] == []
    node = out["/v1/catalog/node/ext1"][2]
    assert node["Node"]["Address"] == "10.1.0.7" and list(node["Services"]) == ["web"]
    assert [n["Node"] for n in out["/v1/catalog/nodes?node-meta=rack:r1"][2]] == ["ext1"]
    [entry] = out["/v1/health/service/web"][2]
    assert list(entry) == ["Node", "Service", "Checks"]
    assert entry["Service"]["Tags"] == ["v1", "blue"]
    [check] = entry["Checks"]
    # Consul's checkPreApply: no CheckID -> the Name; the service's name and tags are filled in
    assert (check["CheckID"], check["ServiceName"], check["ServiceTags"]) == (
        "web alive",
        "web",
        ["v1", "blue"],
    )
    assert out["/v1/health/checks/web"][2] == [check]
    assert out["/v1/health/node/ext1"][2] == [check]
    passing = out["/v1/health/state/passing"][2]
    assert sorted(c["CheckID"] for c in passing) == ["serfHealth"] * 3 + ["web alive"]
    assert out["missing"][0] == 200 and out["missing"][2] == b"null"


def test_passing_filter_deregistration_and_blocking_query():
    async def body(c):
        leader, (f1, _) = await ready(c)
        await _servers_registered(c, leader)
        await _put(c, f1.name, "/v1/catalog/register", WEB)
        warn = {**WEB, "Check": {**WEB["Check"], "Status": "warning"}}
        other = {
            "Node": "ext2",
            "Address": "10.1.0.8",
            "Service": {"Service": "web", "Port": 80},
        }
        await _put(c, f1.name, "/v1/catalog/register", other)
        await _put(c, f1.name, "/v1/catalog/register", warn)
        r = {}
        r["all"] = (await get_json(c, f1.name, "/v1/health/service/web"))[2]
        r["passing"] = (await get_json(c, f1.name, "/v1/health/service/web?passing"))[2]
        _, headers, _ = await get_json(c, f1.name, "/v1/catalog/service/web")
        index = int(headers["x-consul-index"])
        woke = {}

        async def watch():
            status, h, raw = await http(c, f1.name, "GET", f"/v1/catalog/service/web?index={index}")
            woke["at"] = trio.current_time()
            woke["body"] = json.loads(raw)
            woke["index"] = int(h["x-consul-index"])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await trio.sleep(2)
            assert "at" not in woke
            start = trio.current_time()
            dereg = {"Node": "ext1", "ServiceID": "web"}
            r["dereg"] = await _put(c, f1.name, "/v1/catalog/deregister", dereg)
        r["woke_after"] = woke["at"] - start
        r["after"] = woke["body"]
        r["grew"] = woke["index"] > index
        r["checks_left"] = (await get_json(c, f1.name, "/v1/health/node/ext1"))[2]
        await _put(c, f1.name, "/v1/catalog/deregister", {"Node": "ext2"})
        r["nodes"] = [n["Node"] for n in (await get_json(c, f1.name, "/v1/catalog/nodes"))[2]]
        return r

    r = run(body)
    assert sorted(e["Node"]["Node"] for e in r["all"]) == ["ext1", "ext2"]
    # ext1's check warns; ext2 has no checks at all and so passes
    assert [e["Node"]["Node"] for e in r["passing"]] == ["ext2"]
    assert r["dereg"][:1] == (200,) and r["dereg"][2] == b"true"
    assert r["woke_after"] < 1 and r["grew"]
    assert [s["Node"] for s in r["after"]] == ["ext2"]
    assert r["checks_left"] == []  # the service's checks went with it
    assert "ext1" in r["nodes"] and "ext2" not in r["nodes"]


def test_registration_errors_are_consuls():
    async def body(c):
        _, (f1, _) = await ready(c)
        r = {}
        r["no-node"] = await _put(c, f1.name, "/v1/catalog/register", {"Address": "1.2.3.4"})
        r["no-address"] = await _put(c, f1.name, "/v1/catalog/register", {"Node": "x"})
        r["bad-json"] = await http(c, f1.name, "PUT", "/v1/catalog/register", body=b"{nope")
        r["array"] = await http(c, f1.name, "PUT", "/v1/catalog/register", body=b"[1]")
        svc = {"Node": "x", "Address": "1.2.3.4", "Service": {"ID": "only-id"}}
        r["no-service-name"] = await _put(c, f1.name, "/v1/catalog/register", svc)
        chk = {"Node": "x", "Address": "1.2.3.4", "Check": {"Name": "c", "ServiceID": "nope"}}
        r["unknown-service"] = await _put(c, f1.name, "/v1/catalog/register", chk)
        r["dereg-no-node"] = await _put(c, f1.name, "/v1/catalog/deregister", {})
        r["no-service"] = await http(c, f1.name, "GET", "/v1/catalog/service/")
        r["no-node-name"] = await http(c, f1.name, "GET", "/v1/health/node/")
        r["bad-state"] = await http(c, f1.name, "GET", "/v1/health/state/sideways")
        r["bad-passing"] = await http(c, f1.name, "GET", "/v1/health/service/web?passing=maybe")
        r["method"] = await http(c, f1.name, "POST", "/v1/catalog/register")
        return {k: (v[0], v[2].decode()) for k, v in r.items()} | {"allow": r["method"][1]}

    r = run(body)
    assert r["no-node"] == (500, "Must provide node")
    assert r["no-address"] == (500, "Must provide address if SkipNodeUpdate is not set")
    assert r["bad-json"][0] == 400 and r["bad-json"][1].startswith("Request decode failed: ")
    assert r["array"] == (
        400,
        "Request decode failed: json: cannot unmarshal array into Go value of type "
        "structs.RegisterRequest",
    )
    assert r["no-service-name"] == (
        500,
        "Must provide service name (Service.Service) when service ID is provided",
    )
    assert r["unknown-service"] == (500, "Missing service registration for nope")
    assert r["dereg-no-node"] == (500, "Must provide node")
    assert r["no-service"] == (400, "Missing service name")
    assert r["no-node-name"] == (400, "Missing node name")
    assert r["bad-state"] == (500, "Bad state 'sideways'")
    assert r["bad-passing"] == (400, "Invalid value for ?passing")
    assert r["method"][0] == 405 and r["allow"]["allow"] == "OPTIONS,PUT"


def test_servers_register_themselves_and_a_failed_one_turns_critical():
    async def body(c):
        leader, (f1, f2) = await ready(c)
        await _servers_registered(c, leader)
        r = {"before": (await get_json(c, f1.name, "/v1/health/service/consul"))[2]}
        c.kill(f2.name)

        def critical() -> bool:
            check = leader.fsm.catalog.checks.get(f2.name, {}).get("serfHealth")
            return check is not None and check["Status"] == "critical"

        await eventually(critical, 60)
        r["after"] = (await get_json(c, f1.name, "/v1/health/service/consul"))[2]
        r["passing"] = (await get_json(c, f1.name, "/v1/health/service/consul?passing"))[2]
        r["dead"] = f2.name
        await c.restart(f2.name)

        def passing_again() -> bool:
            check = leader.fsm.catalog.checks.get(f2.name, {}).get("serfHealth")
            return check is not None and check["Status"] == "passing"

        await eventually(passing_again, 60)
        r["back"] = (await get_json(c, f1.name, "/v1/health/service/consul?passing"))[2]
        return r

    r = run(body)
    assert len(r["before"]) == 3
    for entry in r["before"]:
        assert entry["Service"]["ID"] == "consul" and entry["Service"]["Port"] == 8300
        [check] = entry["Checks"]
        assert (check["CheckID"], check["Name"], check["Status"], check["Output"]) == (
            "serfHealth",
            "Serf Health Status",
            "passing",
            "Agent alive and reachable",
        )
    [dead] = [e for e in r["after"] if e["Node"]["Node"] == r["dead"]]
    assert dead["Checks"][0]["Status"] == "critical"
    assert dead["Checks"][0]["Output"] == "Agent not live or unreachable"
    assert sorted(e["Node"]["Node"] for e in r["passing"]) == sorted(
        e["Node"]["Node"] for e in r["before"] if e["Node"]["Node"] != r["dead"]
    )
    assert len(r["back"]) == 3


def test_a_server_that_leaves_is_deregistered():
    async def body(c):
        leader, (f1, f2) = await ready(c)
        await _servers_registered(c, leader)
        await c.agent_leave(f2.name)
        await eventually(lambda: f2.name not in leader.fsm.catalog.nodes, 60)
        nodes = (await get_json(c, f1.name, "/v1/catalog/nodes"))[2]
        consul = (await get_json(c, f1.name, "/v1/health/service/consul"))[2]
        return f2.name, [n["Node"] for n in nodes], [e["Node"]["Node"] for e in consul]

    gone, nodes, consul = run(body)
    assert gone not in nodes and len(nodes) == 2
    assert sorted(consul) == sorted(nodes)


def test_filter_on_catalog_and_health_reads():
    async def body(c):
        leader, (f1, _) = await ready(c)
        await _servers_registered(c, leader)
        for node, tag in (("n-1", "prod"), ("n-2", "staging")):
            reg = {
                "Node": node,
                "Address": "10.0.0.1",
                "Service": {"Service": "web", "Tags": [tag]},
            }
            await _put(c, f1.name, "/v1/catalog/register", reg)
        q = {
            "nodes": "/v1/catalog/nodes?filter=Node%20%3D%3D%20%22n-1%22",
            "services": "/v1/catalog/services?filter=%22prod%22%20in%20ServiceTags",
            "service": "/v1/catalog/service/web?filter=%22prod%22%20in%20ServiceTags",
            "node": "/v1/catalog/node/n-1?filter=Service%20%3D%3D%20%22nope%22",
            "health": "/v1/health/service/web?filter=%22staging%22%20in%20Service.Tags",
            "state": "/v1/health/state/any?filter=CheckID%20%3D%3D%20serfHealth",
            "connect": "/v1/catalog/connect/web",
            "health-connect": "/v1/health/connect/web",
            "ingress": "/v1/health/ingress/web",
            "peer": "/v1/health/service/web?peer=elsewhere",
        }
        out = {k: (await get_json(c, f1.name, path))[2] for k, path in q.items()}
        out["bad"] = await http(c, f1.name, "GET", "/v1/catalog/nodes?filter=not%20valid((")
        return out

    r = run(body)
    assert [n["Node"] for n in r["nodes"]] == ["n-1"]
    assert r["services"] == {"web": ["prod"]}  # names and tags of the matching instances only
    assert [s["Node"] for s in r["service"]] == ["n-1"]
    assert r["node"]["Services"] == {}  # the filter applies to each service of the node
    assert [e["Node"]["Node"] for e in r["health"]] == ["n-2"]
    assert len(r["state"]) == 3
    assert r["connect"] == [] and r["health-connect"] == [] and r["ingress"] == []
    assert r["peer"] == []  # no peerings
    assert r["bad"][0] == 500
    assert r["bad"][2].startswith(b"Failed to create boolean expression evaluator: ")


def test_service_and_session_rules_of_acl_tokens():
    from consim.acl import ACLConfig
    from consim.server.state.acl import ACLTable

    root = "root-secret"
    acl = ACLConfig.from_dict(
        {"enabled": True, "default_policy": "deny", "initial_management": root}
    )

    async def body(c):
        leader, (f1, _) = await ready(c)
        await eventually(lambda: leader.fsm.table(ACLTable).initialized)
        admin = {"X-Consul-Token": root}
        rules = 'node_prefix "" { policy = "write" }\nservice "web" { policy = "write" }'
        await http(c, f1.name, "PUT", "/v1/acl/policy", headers=admin,
                   body=json.dumps({"Name": "web", "Rules": rules}).encode())  # fmt: skip
        _, _, raw = await http(c, f1.name, "PUT", "/v1/acl/token", headers=admin,
                               body=json.dumps({"Policies": [{"Name": "web"}]}).encode())  # fmt: skip
        token = json.loads(raw)
        await eventually(lambda: f1.fsm.table(ACLTable).by_secret(token["SecretID"]) is not None)
        mine = {"X-Consul-Token": token["SecretID"]}

        async def put(path, obj, headers):
            status, _, out = await http(c, f1.name, "PUT", path, headers=headers,
                                        body=json.dumps(obj).encode())  # fmt: skip
            return status, out.decode()

        node = {"Node": "ext", "Address": "10.0.0.9"}
        return token["AccessorID"], {
            "web": await put("/v1/catalog/register", {**node, "Service": {"Service": "web"}}, mine),
            "db": await put("/v1/catalog/register", {**node, "Service": {"Service": "db"}}, mine),
            "agent-db": await put("/v1/agent/service/register", {"Name": "db"}, mine),
            "agent-web": await put("/v1/agent/service/register", {"Name": "web"}, mine),
            "session": await put("/v1/session/create", {}, mine),
            "session-root": await put("/v1/session/create", {}, admin),
        }

    accessor, r = run(body, acl=acl)
    denied = f"Permission denied: token with AccessorID '{accessor}' lacks permission"
    assert r["web"] == (200, "true") and r["agent-web"] == (200, "")
    assert r["db"] == (403, f"{denied} 'service:write' on \"db\"")
    assert r["agent-db"] == (403, f"{denied} 'service:write' on \"db\"")
    assert r["session"][0] == 403 and r["session"][1].startswith(f"{denied} 'session:write' on ")
    assert r["session-root"][0] == 200
