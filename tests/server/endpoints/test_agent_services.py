"""The agent's own services and checks through the HTTP API, in virtual time (issue 19 item 1):
/v1/agent/service/register and deregister, /v1/agent/services, /v1/agent/check/* with TTL
pass/warn/fail/update and expiry, maintenance mode; each change reaches the catalog."""

from __future__ import annotations

import json

import trio

from .helpers import eventually, get_json, http, ready, run

WEB = {
    "Name": "web",
    "ID": "web-1",
    "Port": 8080,
    "Tags": ["v1"],
    "Check": {"ttl": "10s", "notes": "push me"},  # py-consul sends Check.ttl() in lower case
}


async def _put(c, name, path, obj=None):
    body = b"" if obj is None else json.dumps(obj).encode()
    status, _, raw = await http(c, name, "PUT", path, body=body)
    return status, raw.decode()


def test_service_with_a_ttl_check_reaches_the_catalog_and_expires():
    async def body(c):
        leader, (f1, f2) = await ready(c)
        await eventually(lambda: len(leader.fsm.catalog.nodes) == 3, 30)
        r = {"register": await _put(c, f1.name, "/v1/agent/service/register", WEB)}
        r["services"] = (await get_json(c, f1.name, "/v1/agent/services"))[2]
        r["one"] = (await get_json(c, f1.name, "/v1/agent/service/web-1"))[2]
        r["checks"] = (await get_json(c, f1.name, "/v1/agent/checks"))[2]
        r["catalog"] = (await get_json(c, f2.name, "/v1/health/service/web"))[2]
        r["pass"] = await _put(c, f1.name, "/v1/agent/check/pass/service:web-1?note=ok")
        r["passing"] = (await get_json(c, f2.name, "/v1/health/service/web?passing"))[2]
        start = trio.current_time()

        def critical() -> bool:
            check = leader.fsm.catalog.checks.get(f1.name, {}).get("service:web-1")
            return check is not None and check["Status"] == "critical"

        await eventually(critical, 30, poll=0.1)
        r["expired_after"] = trio.current_time() - start
        r["expired"] = (await get_json(c, f1.name, "/v1/agent/checks"))[2]["service:web-1"]
        r["update"] = await _put(
            c,
            f1.name,
            "/v1/agent/check/update/service:web-1",
            {"Status": "warning", "Output": "slow"},
        )
        r["warned"] = (await get_json(c, f2.name, "/v1/health/checks/web"))[2]
        r["dereg"] = await _put(c, f1.name, "/v1/agent/service/deregister/web-1")
        r["after"] = (await get_json(c, f2.name, "/v1/catalog/service/web"))[2]
        r["node"] = f1.name
        return r

    r = run(body)
    assert r["register"] == (200, "")
    assert r["services"] == {
        "web-1": {
            "ID": "web-1",
            "Service": "web",
            "Tags": ["v1"],
            "Meta": {},
            "Port": 8080,
            "Address": "",
            "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": False,
            "Datacenter": "dc1",
        }
    }
    assert r["one"] == r["services"]["web-1"]
    check = r["checks"]["service:web-1"]
    assert (check["Name"], check["Status"], check["Type"], check["Notes"]) == (
        "Service 'web' check",
        "critical",
        "ttl",
        "push me",
    )
    assert check["ServiceName"] == "web" and check["Node"] == r["node"]
    assert (check["CreateIndex"], check["ModifyIndex"]) == (0, 0)
    [entry] = r["catalog"]
    assert entry["Node"]["Node"] == r["node"] and entry["Service"]["ID"] == "web-1"
    assert {c["CheckID"] for c in entry["Checks"]} == {"serfHealth", "service:web-1"}
    assert r["pass"] == (200, "")
    assert len(r["passing"]) == 1
    assert 9.5 <= r["expired_after"] <= 11, r["expired_after"]
    assert r["expired"]["Status"] == "critical"
    assert r["expired"]["Output"] == "TTL expired\n\nLast output before TTL expired:\nok"
    assert r["update"] == (200, "")
    [warned] = r["warned"]
    assert (warned["Status"], warned["Output"]) == ("warning", "slow")
    assert r["dereg"] == (200, "") and r["after"] == []


def test_checks_and_maintenance():
    async def body(c):
        leader, (f1, f2) = await ready(c)
        await eventually(lambda: len(leader.fsm.catalog.nodes) == 3, 30)
        r = {}
        await _put(c, f1.name, "/v1/agent/service/register", {"Name": "db", "Port": 5432})
        r["check"] = await _put(
            c,
            f1.name,
            "/v1/agent/check/register",
            {"Name": "disk", "TTL": "30s", "Status": "passing"},
        )
        r["svc-maint"] = await _put(
            c, f1.name, "/v1/agent/service/maintenance/db?enable=true&reason=upgrading"
        )
        r["node-maint"] = await _put(c, f1.name, "/v1/agent/maintenance?enable=true")
        r["checks"] = (await get_json(c, f1.name, "/v1/agent/checks"))[2]
        r["catalog"] = (await get_json(c, f2.name, f"/v1/health/node/{f1.name}"))[2]
        r["passing"] = (await get_json(c, f2.name, "/v1/health/service/db?passing"))[2]
        await _put(c, f1.name, "/v1/agent/service/maintenance/db?enable=false")
        await _put(c, f1.name, "/v1/agent/maintenance?enable=false")
        r["after"] = sorted(
            ch["CheckID"] for ch in (await get_json(c, f2.name, f"/v1/health/node/{f1.name}"))[2]
        )
        r["check-dereg"] = await _put(c, f1.name, "/v1/agent/check/deregister/disk")
        http_check = {"Name": "web", "HTTP": "http://127.0.0.1:1/", "Interval": "10s"}
        r["http-check"] = await _put(c, f1.name, "/v1/agent/check/register", http_check)
        tagged = {"Name": "t", "tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 81}}}
        await _put(c, f1.name, "/v1/agent/service/register", tagged)
        r["tagged"] = (await get_json(c, f1.name, "/v1/agent/service/t"))[2]
        r["errors"] = {
            "no-name": await _put(c, f1.name, "/v1/agent/service/register", {"Port": 1}),
            "bad-check": await _put(
                c,
                f1.name,
                "/v1/agent/service/register",
                {"Name": "x", "Check": {"HTTP": "http://x"}},
            ),
            "no-type": await _put(c, f1.name, "/v1/agent/check/register", {"Name": "y"}),
            "no-check-name": await _put(c, f1.name, "/v1/agent/check/register", {"TTL": "5s"}),
            "unknown-service": await _put(
                c,
                f1.name,
                "/v1/agent/check/register",
                {"Name": "z", "TTL": "5s", "ServiceID": "nope"},
            ),
            "pass-unknown": await _put(c, f1.name, "/v1/agent/check/pass/nope"),
            "pass-not-ttl": await _put(c, f1.name, "/v1/agent/check/pass/web"),
            "dereg-unknown": await _put(c, f1.name, "/v1/agent/service/deregister/nope"),
            "bad-status": await _put(c, f1.name, "/v1/agent/check/update/disk", {"Status": "fine"}),
            "maint-no-enable": await _put(c, f1.name, "/v1/agent/maintenance"),
            "maint-bad-enable": await _put(c, f1.name, "/v1/agent/maintenance?enable=maybe"),
            "maint-unknown": await _put(c, f1.name, "/v1/agent/service/maintenance/nope?enable=1"),
            "service-unknown": await http(c, f1.name, "GET", "/v1/agent/service/nope"),
        }
        r["node"] = f1.name
        return r

    r = run(body)
    assert r["check"] == (200, "") and r["svc-maint"] == (200, "") and r["node-maint"] == (200, "")
    maint = r["checks"]["_service_maintenance:db"]
    assert (maint["Name"], maint["Status"], maint["Notes"], maint["ServiceID"]) == (
        "Service Maintenance Mode",
        "critical",
        "upgrading",
        "db",
    )
    node_maint = r["checks"]["_node_maintenance"]
    assert node_maint["Name"] == "Node Maintenance Mode"
    assert node_maint["Notes"].startswith("Maintenance mode is enabled for this node")
    assert {ch["CheckID"] for ch in r["catalog"]} == {
        "serfHealth",
        "disk",
        "_service_maintenance:db",
        "_node_maintenance",
    }
    assert r["passing"] == []
    assert r["after"] == ["disk", "serfHealth"]
    assert r["check-dereg"] == (200, "")
    assert r["http-check"] == (200, "")
    assert r["tagged"]["TaggedAddresses"] == {"lan": {"Address": "10.0.0.1", "Port": 81}}
    e = r["errors"]
    assert e["no-name"] == (400, "Missing service name")
    assert e["bad-check"] == (
        400,
        "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
    )
    assert e["no-type"] == (400, "Invalid check: TTL must be > 0 for TTL checks")
    assert e["no-check-name"] == (400, "Missing check name")
    assert e["unknown-service"] == (404, 'ServiceID "nope" does not exist')
    assert e["pass-unknown"] == (
        404,
        'Unknown check ID "nope". Ensure that the check ID is passed, not the check name.',
    )
    assert e["pass-not-ttl"] == (500, 'CheckID "web" does not have associated TTL')
    assert e["dereg-unknown"] == (
        404,
        'Unknown service ID "nope". Ensure that the service ID is passed, not the service name.',
    )
    assert e["bad-status"] == (400, "Invalid check status: 'fine'")
    assert e["maint-no-enable"] == (400, "Missing value for enable")
    assert e["maint-bad-enable"] == (400, 'Invalid value for enable: "maybe"')
    assert e["maint-unknown"] == (
        404,
        'Unknown service ID "nope". Ensure that the service ID is passed, not the service name.',
    )
    assert e["service-unknown"][0] == 404
    assert e["service-unknown"][2] == b"unknown service ID: nope"


def test_http_and_tcp_checks_probe_the_clusters_servers():
    async def body(c):
        leader, (f1, f2) = await ready(c)
        await eventually(lambda: len(leader.fsm.catalog.nodes) == 3, 30)
        spec = f2.spec
        checks = {
            "up": {"HTTP": f"http://{spec.http_address}/v1/status/leader", "Interval": "1s"},
            "missing": {"HTTP": f"http://{spec.http_address}/v1/kv/nope", "Interval": "1s"},
            "elsewhere": {"HTTP": "http://10.9.9.9:80/", "Interval": "1s"},
            "rpc": {"TCP": spec.rpc_address, "Interval": "2s"},
            "script": {"Args": ["/bin/true"], "Interval": 10},  # a number is nanoseconds
        }
        for name, check in checks.items():
            status, _ = await _put(c, f1.name, "/v1/agent/check/register", {"Name": name, **check})
            assert status == 200, name
        await trio.sleep(1.5)
        first = (await get_json(c, f1.name, "/v1/agent/checks"))[2]
        c.kill(f2.name)
        await trio.sleep(2.5)
        after = (await get_json(c, f1.name, "/v1/agent/checks"))[2]
        catalog = leader.fsm.catalog.checks[f1.name]
        return spec, first, after, {k: catalog[k]["Status"] for k in checks}

    spec, first, after, catalog = run(body)
    assert first["up"]["Status"] == "passing"
    assert first["up"]["Output"].startswith(
        f"HTTP GET http://{spec.http_address}/v1/status/leader: 200 OK Output: "
    )
    assert first["up"]["Interval"] == "1s" and first["up"]["Type"] == "http"
    assert first["missing"]["Status"] == "critical"
    assert first["missing"]["Output"].startswith(
        f"HTTP GET http://{spec.http_address}/v1/kv/nope: 404 Not Found"
    )
    assert first["elsewhere"]["Status"] == "critical"
    assert first["elsewhere"]["Output"] == (
        'Get "http://10.9.9.9:80/": dial tcp 10.9.9.9:80: connect: connection refused'
    )
    assert (first["rpc"]["Status"], first["rpc"]["Output"]) == (
        "passing",
        f"TCP connect {spec.rpc_address}: Success",
    )
    assert (first["script"]["Status"], first["script"]["Interval"]) == ("critical", "10ns")
    # the probed server is gone: both checks of it fail, and the catalog says so
    assert after["up"]["Status"] == "critical" and after["rpc"]["Status"] == "critical"
    assert catalog["up"] == "critical" and catalog["rpc"] == "critical"


def test_proxy_locality_and_sidecar():
    async def body(c):
        _, (f1, _) = await ready(c)
        proxy = {
            "Name": "web-proxy",
            "Kind": "connect-proxy",
            "Port": 21000,
            "Proxy": {"destination_service_name": "web", "LocalServicePort": 8080},
            "Locality": {"region": "r1", "zone": "z1"},
        }
        r = {"proxy": await _put(c, f1.name, "/v1/agent/service/register", proxy)}
        side = {"Name": "api", "Port": 9090, "Connect": {"sidecar_service": {}}}
        r["side"] = await _put(c, f1.name, "/v1/agent/service/register", side)
        r["services"] = (await get_json(c, f1.name, "/v1/agent/services"))[2]
        r["checks"] = sorted((await get_json(c, f1.name, "/v1/agent/checks"))[2])
        r["dereg"] = await _put(c, f1.name, "/v1/agent/service/deregister/api")
        r["after"] = sorted((await get_json(c, f1.name, "/v1/agent/services"))[2])
        return r

    r = run(body)
    assert r["proxy"] == (200, "") and r["side"] == (200, "")
    web = r["services"]["web-proxy"]
    assert web["Kind"] == "connect-proxy"
    assert web["Proxy"] == {
        "DestinationServiceName": "web",
        "LocalServicePort": 8080,
        "MeshGateway": {},
        "Expose": {},
    }
    assert web["Locality"] == {"Region": "r1", "Zone": "z1"}
    assert "Proxy" not in r["services"]["api"]  # only a proxy shows one
    sidecar = r["services"]["api-sidecar-proxy"]
    assert (sidecar["Kind"], sidecar["Service"], sidecar["Port"]) == (
        "connect-proxy",
        "api-sidecar-proxy",
        21001,  # 21000 is taken by web-proxy
    )
    assert sidecar["Proxy"]["DestinationServiceID"] == "api"
    assert sidecar["Proxy"]["LocalServicePort"] == 9090
    assert r["checks"] == ["service:api-sidecar-proxy:1", "service:api-sidecar-proxy:2"]
    assert r["dereg"] == (200, "") and r["after"] == ["web-proxy"]  # the sidecar went too
