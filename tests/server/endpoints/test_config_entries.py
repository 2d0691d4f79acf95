"""/v1/config and /v1/catalog/gateway-services on a real cluster in virtual time: Consul's
answers (bool for apply and CAS delete, {} for a plain delete, 404 texts), replicated to every
server."""

from __future__ import annotations

import json

from .helpers import http, ready, run

INGRESS = {
    "Kind": "ingress-gateway",
    "Name": "ig",
    "Listeners": [{"Port": 8080, "Protocol": "tcp", "Services": [{"Name": "web"}]}],
}


def test_config_entry_crud_cas_and_errors():
    async def body(c):
        await ready(c)
        r = {}
        entry = json.dumps({"Kind": "service-defaults", "Name": "web", "Protocol": "http"})
        r["put"] = await http(c, "dc1-s1", "PUT", "/v1/config", body=entry.encode())
        r["get"] = await http(c, "dc1-s2", "GET", "/v1/config/service-defaults/web")
        modify = json.loads(r["get"][2])["ModifyIndex"]
        r["stale-cas"] = await http(
            c, "dc1-s1", "PUT", f"/v1/config?cas={modify + 100}", body=entry.encode()
        )
        r["list"] = await http(c, "dc1-s3", "GET", "/v1/config/service-defaults")
        r["empty-list"] = await http(c, "dc1-s1", "GET", "/v1/config/proxy-defaults")
        r["del-stale"] = await http(
            c, "dc1-s1", "DELETE", f"/v1/config/service-defaults/web?cas={modify + 1}"
        )
        r["del-cas"] = await http(
            c, "dc1-s1", "DELETE", f"/v1/config/service-defaults/web?cas={modify}"
        )
        r["del"] = await http(c, "dc1-s1", "DELETE", "/v1/config/service-defaults/web")
        r["missing"] = await http(c, "dc1-s1", "GET", "/v1/config/service-defaults/web")
        r["bad-kind"] = await http(c, "dc1-s1", "PUT", "/v1/config", body=b'{"Kind": "nope"}')
        r["no-kind"] = await http(c, "dc1-s1", "PUT", "/v1/config", body=b'{"Name": "x"}')
        big = b'{"Kind": "service-defaults", "Name": "big", "N": 123456789012345678901234567890}'
        r["big"] = await http(c, "dc1-s1", "PUT", "/v1/config", body=big)
        r["huge"] = await http(
            c, "dc1-s1", "PUT", "/v1/config", body=big.replace(b"890}", b"e400}")
        )
        r["big-get"] = await http(c, "dc1-s1", "GET", "/v1/config/service-defaults/big")
        return r

    r = run(body)
    assert r["put"][0] == 200 and r["put"][2] == b"true"
    got = json.loads(r["get"][2])
    assert (got["Kind"], got["Name"], got["Protocol"]) == ("service-defaults", "web", "http")
    assert int(r["get"][1]["x-consul-index"]) == got["ModifyIndex"] == got["CreateIndex"]
    assert r["stale-cas"][2] == b"false"
    assert [e["Name"] for e in json.loads(r["list"][2])] == ["web"]
    assert r["empty-list"][2] == b"[]"
    assert (r["del-stale"][2], r["del-cas"][2], r["del"][2]) == (b"false", b"true", b"{}")
    assert r["missing"][0] == 404
    assert r["missing"][2] == b'Config entry not found for "service-defaults" / "web"'
    assert r["bad-kind"][0] == 400
    assert r["bad-kind"][2] == b"Request decoding failed: invalid config entry kind: nope"
    assert r["no-kind"][0] == 400 and b"does not contain a kind/Kind key" in r["no-kind"][2]
    # numbers as Go's interface{} keeps them: float64, or refused past its range
    assert r["big"][2] == b"true" and json.loads(r["big-get"][2])["N"] == 1.2345678901234568e29
    assert r["huge"][0] == 400 and b"cannot unmarshal number" in r["huge"][2]


def test_gateway_services_follow_the_gateways_config_entry():
    async def body(c):
        await ready(c)
        before = await http(c, "dc1-s1", "GET", "/v1/catalog/gateway-services/ig")
        await http(c, "dc1-s1", "PUT", "/v1/config", body=json.dumps(INGRESS).encode())
        after = await http(c, "dc1-s2", "GET", "/v1/catalog/gateway-services/ig")
        return before, after

    before, after = run(body)
    assert before[2] == b"[]"
    [gs] = json.loads(after[2])
    assert gs["Gateway"] == {"Name": "ig"} and gs["Service"] == {"Name": "web"}
    assert (gs["GatewayKind"], gs["Port"], gs["Protocol"]) == ("ingress-gateway", 8080, "tcp")


def test_intentions_live_in_service_intentions_entries_and_decide_checks():
    async def body(c):
        await ready(c)
        r = {}
        q = "source=web&destination=db"
        r["check-none"] = await http(c, "dc1-s1", "GET", f"/v1/connect/intentions/check?{q}")
        r["put"] = await http(
            c, "dc1-s1", "PUT", f"/v1/connect/intentions/exact?{q}", body=b'{"Action": "deny"}'
        )
        await http(
            c,
            "dc1-s2",
            "PUT",
            "/v1/connect/intentions/exact?source=*&destination=db",
            body=b'{"Action": "allow"}',
        )
        r["check-web"] = await http(c, "dc1-s3", "GET", f"/v1/connect/intentions/check?{q}")
        r["check-api"] = await http(
            c, "dc1-s3", "GET", "/v1/connect/intentions/check?source=api&destination=db"
        )
        r["match"] = await http(
            c, "dc1-s1", "GET", "/v1/connect/intentions/match?by=destination&name=db"
        )
        r["entry"] = await http(c, "dc1-s1", "GET", "/v1/config/service-intentions/db")
        r["delete"] = await http(c, "dc1-s1", "DELETE", f"/v1/connect/intentions/exact?{q}")
        r["read"] = await http(c, "dc1-s1", "GET", f"/v1/connect/intentions/exact?{q}")
        r["bad-action"] = await http(
            c, "dc1-s1", "PUT", f"/v1/connect/intentions/exact?{q}", body=b'{"Action": "maybe"}'
        )
        return r

    r = run(body)
    assert json.loads(r["check-none"][2]) == {"Allowed": True}  # no ACLs: default allow
    assert r["put"][2] == b"true"
    assert json.loads(r["check-web"][2]) == {"Allowed": False}  # exact beats the wildcard
    assert json.loads(r["check-api"][2]) == {"Allowed": True}
    matched = json.loads(r["match"][2])["db"]
    assert [(i["SourceName"], i["Precedence"]) for i in matched] == [("web", 9), ("*", 8)]
    sources = json.loads(r["entry"][2])["Sources"]
    assert {s["Name"]: s["Action"] for s in sources} == {"web": "deny", "*": "allow"}
    assert r["delete"][2] == b"true"
    assert (r["read"][0], r["read"][2]) == (404, b"Intention not found")
    assert r["bad-action"][0] == 500
