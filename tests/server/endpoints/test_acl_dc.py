"""ACLs and ?dc forwarding on a real cluster in virtual time (reference §1, §2, §5)."""

from __future__ import annotations

import json

import trio

from consim.acl import ACLConfig

from .helpers import get_json, http, ready, run

OPS = "8f4b2a6e-0000-4000-8000-000000000001"
KV = "8f4b2a6e-0000-4000-8000-000000000002"
EMPTY = "8f4b2a6e-0000-4000-8000-000000000003"
ANON_SUFFIX = ". The anonymous token is used implicitly when a request does not specify a token."
CONF = "/v1/operator/raft/configuration"


def acl(default_policy="deny", anonymous=None):
    tokens = [
        {"accessor_id": OPS, "secret_id": "ops-secret", "operator": "write"},
        {
            "accessor_id": KV,
            "secret_id": "kv-secret",
            "operator": "read",
            "key_prefix": {"": "read", "app/": "write", "app/secret/": "deny"},
        },
        {"accessor_id": EMPTY, "secret_id": "empty-secret"},
    ]
    if anonymous is not None:
        tokens.append(
            {
                "accessor_id": "00000000-0000-0000-0000-000000000002",
                "secret_id": "anonymous",
                **anonymous,
            }
        )
    return ACLConfig.from_dict(
        {
            "enabled": True,
            "default_policy": default_policy,
            "initial_management": "root-secret",
            "tokens": tokens,
        }
    )


def denied(accessor, perm, segment=None):
    text = f"Permission denied: token with AccessorID '{accessor}' lacks permission '{perm}'"
    return (text + (f' on "{segment}"' if segment else "")).encode()


def anon_denied(perm, segment=None):
    on = f' on "{segment}"' if segment else ""
    return f"Permission denied: anonymous token lacks permission '{perm}'{on}{ANON_SUFFIX}".encode()


def test_token_sources_and_precedence():
    async def body(c):
        leader, (f1, _) = await ready(c)
        out = {}
        cases = {
            "query": ("?token=ops-secret", {}),
            "header": ("", {"X-Consul-Token": "ops-secret"}),
            "bearer": ("", {"Authorization": "Bearer ops-secret"}),
            "bearer-case": ("", {"Authorization": "bEaReR ops-secret"}),
            "query-wins": ("?token=nope", {"X-Consul-Token": "ops-secret"}),
            "query-wins-2": ("?token=ops-secret", {"X-Consul-Token": "nope"}),
            "header-wins": ("", {"X-Consul-Token": "nope", "Authorization": "Bearer ops-secret"}),
            "header-wins-2": ("", {"X-Consul-Token": "ops-secret", "Authorization": "Bearer x"}),
            "none": ("", {}),
        }
        for name, (q, headers) in cases.items():
            status, _, raw = await http(c, f1.name, "GET", CONF + q, headers=headers)
            out[name] = (status, raw)
        return out

    out = run(body, acl=acl())
    for ok in ("query", "header", "bearer", "bearer-case", "query-wins-2", "header-wins-2"):
        assert out[ok][0] == 200, (ok, out[ok])
        assert len(json.loads(out[ok][1])["Servers"]) == 3
    for nf in ("query-wins", "header-wins"):
        assert out[nf] == (403, b"ACL not found"), nf
    assert out["none"] == (403, anon_denied("operator:read"))


def test_permission_texts_and_default_deny():
    async def body(c):
        leader, (f1, _) = await ready(c)
        n = f1.name
        r = {}
        r["kv-remove"] = await http(c, n, "DELETE", "/v1/operator/raft/peer?id=x&token=kv-secret")
        r["kv-read-conf"] = await http(c, n, "GET", CONF + "?token=kv-secret")
        r["empty-read"] = await http(c, n, "GET", CONF + "?token=empty-secret")
        r["anon-transfer"] = await http(c, n, "POST", "/v1/operator/raft/transfer-leader")
        r["unknown"] = await http(c, n, "GET", CONF + "?token=who")
        r["mgmt-remove"] = await http(
            c, n, "DELETE", "/v1/operator/raft/peer?id=x&token=root-secret"
        )
        r["ops-remove"] = await http(c, n, "DELETE", "/v1/operator/raft/peer?id=x&token=ops-secret")
        r["kv-status"] = await http(c, n, "GET", "/v1/status/leader?token=who")
        return r

    r = run(body, acl=acl())
    assert (r["kv-remove"][0], r["kv-remove"][2]) == (403, denied(KV, "operator:write"))
    assert r["kv-remove"][1]["content-type"].startswith("text/plain")
    assert r["kv-read-conf"][0] == 200
    assert (r["empty-read"][0], r["empty-read"][2]) == (403, denied(EMPTY, "operator:read"))
    assert (r["anon-transfer"][0], r["anon-transfer"][2]) == (403, anon_denied("operator:write"))
    assert (r["unknown"][0], r["unknown"][2]) == (403, b"ACL not found")
    # Allowed: the request reaches the endpoint and fails there.
    not_found = (500, b'id "x" was not found in the Raft configuration')
    assert (r["mgmt-remove"][0], r["mgmt-remove"][2]) == not_found
    assert (r["ops-remove"][0], r["ops-remove"][2]) == not_found
    # status endpoints need no ACL
    assert r["kv-status"][0] == 200


def test_default_allow_and_anonymous_rules():
    async def body(c):
        leader, _ = await ready(c)
        n = leader.name
        r = {}
        r["empty-read"] = await http(c, n, "GET", CONF + "?token=empty-secret")
        r["anon-read"] = await http(c, n, "GET", CONF)
        r["anon-write"] = await http(c, n, "PUT", "/v1/kv/x", body=b"1")
        r["anon-get"] = await http(c, n, "GET", "/v1/kv/x")
        r["unknown"] = await http(c, n, "GET", CONF + "?token=who")
        return r

    # allow by default; the anonymous token gets operator=deny and key "" = read
    r = run(body, acl=acl("allow", anonymous={"operator": "deny", "key_prefix": {"": "read"}}))
    assert r["empty-read"][0] == 200
    assert (r["anon-read"][0], r["anon-read"][2]) == (403, anon_denied("operator:read"))
    assert (r["anon-write"][0], r["anon-write"][2]) == (403, anon_denied("key:write", "x"))
    assert r["anon-get"][0] == 404  # read allowed, key absent
    assert (r["unknown"][0], r["unknown"][2]) == (403, b"ACL not found")


def test_key_prefix_rules_and_management():
    async def body(c):
        leader, (f1, _) = await ready(c)
        n = f1.name
        r = {}
        r["put-app"] = await http(c, n, "PUT", "/v1/kv/app/x?token=kv-secret", body=b"1")
        r["put-other"] = await http(c, n, "PUT", "/v1/kv/other?token=kv-secret", body=b"1")
        r["mgmt-secret"] = await http(
            c,
            n,
            "PUT",
            "/v1/kv/app/secret/pw",
            headers={"X-Consul-Token": "root-secret"},
            body=b"s",
        )
        r["get-secret"] = await http(c, n, "GET", "/v1/kv/app/secret/pw?token=kv-secret")
        r["get-app"] = await http(c, n, "GET", "/v1/kv/app/x?token=kv-secret")
        r["mgmt-get"] = await http(c, n, "GET", "/v1/kv/app/secret/pw?token=root-secret")
        r["ops-get"] = await http(c, n, "GET", "/v1/kv/app/x?token=ops-secret")
        return r

    r = run(body, acl=acl())
    assert (r["put-app"][0], r["put-app"][2]) == (200, b"true")
    assert (r["put-other"][0], r["put-other"][2]) == (403, denied(KV, "key:write", "other"))
    assert (r["mgmt-secret"][0], r["mgmt-secret"][2]) == (200, b"true")
    assert (r["get-secret"][0], r["get-secret"][2]) == (
        403,
        denied(KV, "key:read", "app/secret/pw"),
    )
    assert r["get-app"][0] == 200
    assert r["mgmt-get"][0] == 200
    # no key rule + default deny
    assert (r["ops-get"][0], r["ops-get"][2]) == (403, denied(OPS, "key:read", "app/x"))


def test_no_leader_is_reported_before_permission_denied():
    async def body(c):
        leader, (f1, f2) = await ready(c)
        c.kill(leader.name)
        c.kill(f2.name)
        r = {}
        r["anon"] = await http(c, f1.name, "GET", CONF)
        r["unknown"] = await http(c, f1.name, "DELETE", "/v1/operator/raft/peer?id=x&token=who")
        # A stale read is served locally, so the ACL check runs there.
        r["stale-anon"] = await http(c, f1.name, "GET", CONF + "?stale")
        r["stale-ok"] = await http(c, f1.name, "GET", CONF + "?stale&token=kv-secret")
        return r

    r = run(body, acl=acl(), rpc_hold_timeout=0.3)
    assert (r["anon"][0], r["anon"][2]) == (500, b"No cluster leader")
    assert (r["unknown"][0], r["unknown"][2]) == (500, b"No cluster leader")
    assert (r["stale-anon"][0], r["stale-anon"][2]) == (403, anon_denied("operator:read"))
    assert r["stale-ok"][0] == 200


# ---- ?dc ------------------------------------------------------------------------------------
TWO_DCS = (("dc1", 3), ("dc2", 3))


def test_dc_forwarding_to_second_datacenter():
    async def body(c):
        await ready(c, "dc1")
        leader2, _ = await ready(c, "dc2")
        asker = "dc1-s1"
        _, _, conf = await get_json(c, asker, CONF + "?dc=dc2")
        assert sorted(s["Address"] for s in conf["Servers"]) == [
            "127.0.1.1:8300",
            "127.0.1.2:8300",
            "127.0.1.3:8300",
        ]
        assert [s["Node"] for s in conf["Servers"] if s["Leader"]] == [leader2.name]
        _, _, local = await get_json(c, asker, CONF)
        assert sorted(s["Address"] for s in local["Servers"])[0] == "127.0.0.1:8300"
        # A write to dc2 through dc1, then read on dc2 directly; dc1 does not have it.
        status, _, raw = await http(c, asker, "PUT", "/v1/kv/where?dc=dc2", body=b"dc2")
        assert (status, raw) == (200, b"true")
        _, _, [e] = await get_json(c, "dc2-s3", "/v1/kv/where")
        assert e["Key"] == "where"
        assert (await http(c, asker, "GET", "/v1/kv/where"))[0] == 404
        _, _, [e] = await get_json(c, asker, "/v1/kv/where?dc=dc2")
        _, _, me = await get_json(c, asker, "/v1/agent/self")
        assert me["Stats"]["consul"]["known_datacenters"] == "2"
        status, _, raw = await http(c, asker, "GET", CONF + "?dc=dc9")
        assert (status, raw) == (500, b"No path to datacenter")
        status, _, raw = await http(c, asker, "PUT", "/v1/kv/x?dc=dc9", body=b"1")
        assert (status, raw) == (500, b"No path to datacenter")
        # Every dc2 server down: a route, but nobody answers.
        for n in c.datacenter_servers("dc2"):
            c.kill(n.name)
        await trio.sleep(0.1)
        status, _, raw = await http(c, asker, "GET", CONF + "?dc=dc2")
        return status, raw

    status, raw = run(body, datacenters=TWO_DCS)
    assert (status, raw) == (500, b"Remote DC has no server currently reachable")
