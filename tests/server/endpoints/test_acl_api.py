"""/v1/acl/*, /v1/txn, /v1/snapshot, /v1/event/*, /v1/operator/usage, /v1/agent/metrics on a
real three-server cluster in virtual time: replicated state, forwarding, ACL enforcement."""

from __future__ import annotations

import base64
import json

from consim.acl import ACLConfig
from consim.server.state.acl import ACLTable

from .helpers import eventually, http, ready, run

ROOT = "root-secret"


def _acl(default: str = "deny") -> ACLConfig:
    return ACLConfig.from_dict(
        {"enabled": True, "default_policy": default, "initial_management": ROOT}
    )


async def _json(c, name, method, path, body=None, token=ROOT, status=200):
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    got, headers, out = await http(
        c, name, method, path, headers={"X-Consul-Token": token} if token else None, body=raw
    )
    assert got == status, (got, out)
    return json.loads(out) if out and got == 200 else out.decode()


async def _acl_ready(c):
    leader, followers = await ready(c)
    await eventually(lambda: all(n.fsm.table(ACLTable).initialized for n in [leader, *followers]))
    return leader, followers


def test_tokens_policies_enforced_and_replicated():
    async def body(c):
        leader, (f1, f2) = await _acl_ready(c)
        tokens = await _json(c, f1.name, "GET", "/v1/acl/tokens")
        assert {t["Description"] for t in tokens} == {"Initial Management Token", "Anonymous Token"}
        # A policy in HCL, a token holding it, created through a follower (forwarded).
        policy = await _json(
            c, f1.name, "PUT", "/v1/acl/policy",
            {"Name": "app-rw", "Rules": 'key_prefix "app/" { policy = "write" }\nkey "app/secret" { policy = "deny" }'},
        )  # fmt: skip
        token = await _json(c, f2.name, "PUT", "/v1/acl/token", {"Policies": [{"Name": "app-rw"}]})
        assert token["Policies"] == [{"ID": policy["ID"], "Name": "app-rw"}]
        secret = token["SecretID"]
        await eventually(lambda: f2.fsm.table(ACLTable).by_secret(secret) is not None)
        assert await _json(c, f2.name, "PUT", "/v1/kv/app/x", b"1", token=secret) is True
        denied = await _json(c, f2.name, "PUT", "/v1/kv/other", b"1", token=secret, status=403)
        assert denied == (
            f"Permission denied: token with AccessorID '{token['AccessorID']}' lacks "
            "permission 'key:write' on \"other\""
        )
        await _json(c, f2.name, "GET", "/v1/kv/app/secret", token=secret, status=403)
        # The token may not manage ACLs; the anonymous token may not either (default allow
        # never grants acl:*).
        await _json(c, f1.name, "GET", "/v1/acl/tokens", token=secret, status=403)
        # Policy update changes what the token may do at once; delete removes the grant.
        await _json(
            c, leader.name, "PUT", f"/v1/acl/policy/{policy['ID']}",
            {"Name": "app-rw", "Rules": 'key_prefix "" { policy = "write" }'},
        )  # fmt: skip
        assert await _json(c, leader.name, "PUT", "/v1/kv/other", b"1", token=secret) is True
        assert await _json(c, leader.name, "DELETE", f"/v1/acl/policy/{policy['ID']}") is True
        await _json(c, leader.name, "GET", f"/v1/acl/policy/{policy['ID']}", status=404)
        await _json(c, leader.name, "PUT", "/v1/kv/other", b"1", token=secret, status=403)
        # Replicated state: every server holds the same table, and it survives in a snapshot.
        await eventually(
            lambda: (
                len({n.fsm.table(ACLTable).snapshot().__repr__() for n in (leader, f1, f2)}) == 1
            )
        )
        restored = type(leader.fsm).restore(leader.fsm.snapshot())
        assert restored.table(ACLTable).by_secret(secret)["AccessorID"] == token["AccessorID"]
        # Bootstrap is refused: the initial management token already bootstrapped the cluster.
        refused = await _json(c, f1.name, "PUT", "/v1/acl/bootstrap", token=None, status=403)
        assert refused.startswith("Permission denied: ACL bootstrap no longer allowed")

    run(body, acl=_acl())


def test_acl_disabled_and_bad_bodies():
    async def body(c):
        leader, _ = await ready(c)
        assert await _json(c, leader.name, "GET", "/v1/acl/tokens", status=401) == (
            "ACL support disabled"
        )

    run(body)

    async def bad(c):
        leader, _ = await _acl_ready(c)
        out = await _json(c, leader.name, "PUT", "/v1/acl/policy", b"[1]", status=400)
        assert out == (
            "Policy decoding failed: json: cannot unmarshal array into Go value of type "
            "structs.ACLPolicy"
        )
        out = await _json(
            c, leader.name, "PUT", "/v1/acl/policy", {"Name": "x", "Rules": "key_prefix {"},
            status=500,
        )  # fmt: skip
        assert out.startswith("Invalid Policy: Failed to parse policy")
        out = await _json(
            c, leader.name, "PUT", "/v1/acl/token", {"Policies": [{"Name": "nope"}]}, status=500
        )
        assert out == 'No such ACL policy with name "nope"'
        # A name is checked, and may not be another record's, the same way for policies and roles.
        for path, kind in (("/v1/acl/policy", "Policy"), ("/v1/acl/role", "Role")):
            await _json(c, leader.name, "PUT", path, {"Name": "taken"})
            out = await _json(c, leader.name, "PUT", path, {"Name": "taken"}, status=500)
            assert out == f'Invalid {kind}: A {kind} with Name "taken" already exists'
            out = await _json(c, leader.name, "PUT", path, {"Name": ""}, status=500)
            assert out == f"Invalid {kind}: no Name is set"

    run(bad, acl=_acl())


def test_txn_atomic_and_read_only():
    async def body(c):
        leader, (f1, _) = await ready(c)
        v = base64.b64encode(b"1").decode()
        ok = await _json(
            c, f1.name, "PUT", "/v1/txn",
            [{"KV": {"Verb": "set", "Key": "a", "Value": v}}, {"KV": {"Verb": "get", "Key": "a"}}],
            token=None,
        )  # fmt: skip
        assert ok["Errors"] is None
        assert ok["Results"][0]["KV"]["Value"] is None and ok["Results"][1]["KV"]["Value"] == v
        # A failing operation undoes the whole transaction: "b" is not written.
        status, _, raw = await http(
            c, leader.name, "PUT", "/v1/txn",
            body=json.dumps([
                {"KV": {"Verb": "set", "Key": "b", "Value": v}},
                {"KV": {"Verb": "cas", "Key": "a", "Value": v, "Index": 999}},
            ]).encode(),
        )  # fmt: skip
        assert status == 409
        assert json.loads(raw) == {
            "Results": None,
            "Errors": [{"OpIndex": 1, "What": 'failed to set key "a", index is stale'}],
        }
        assert "b" not in leader.fsm.kvs.entries
        applied = leader.fsm.last_applied
        read = await _json(
            c, f1.name, "PUT", "/v1/txn?stale", [{"KV": {"Verb": "get", "Key": "a"}}], token=None
        )
        assert read["Results"][0]["KV"]["Key"] == "a"
        assert leader.fsm.last_applied == applied  # a read-only txn writes nothing

    run(body)


def test_snapshot_save_restore_replicates():
    async def body(c):
        leader, (f1, f2) = await _acl_ready(c)
        assert await _json(c, f1.name, "PUT", "/v1/kv/k", b"before") is True
        status, headers, archive = await http(
            c, f1.name, "GET", "/v1/snapshot", headers={"X-Consul-Token": ROOT}
        )
        assert status == 200 and archive[:2] == b"\x1f\x8b"
        assert await _json(c, f1.name, "PUT", "/v1/kv/k", b"after") is True
        await _json(c, f1.name, "PUT", "/v1/snapshot", archive)
        await eventually(
            lambda: all(n.fsm.kvs.entries["k"].value == b"before" for n in (leader, f1, f2))
        )
        # A damaged archive is refused and changes nothing.
        out = await _json(c, f1.name, "PUT", "/v1/snapshot", archive[:-40], status=500)
        assert out.startswith("failed to read snapshot file")
        out = await _json(c, f1.name, "GET", "/v1/snapshot", token="anonymous", status=403)
        assert "lacks permission 'acl:write'" in out

    run(body, acl=_acl(default="allow"))


def test_user_events_reach_every_agent():
    async def body(c):
        leader, (f1, f2) = await ready(c)
        fired = await _json(c, f1.name, "PUT", "/v1/event/fire/deploy", b"v2", token=None)
        assert fired["Name"] == "deploy" and base64.b64decode(fired["Payload"]) == b"v2"
        await eventually(lambda: all(n.user_events.listing("deploy") for n in (leader, f1, f2)))
        status, headers, raw = await http(c, f2.name, "GET", "/v1/event/list?name=deploy")
        events = json.loads(raw)
        assert [e["ID"] for e in events] == [fired["ID"]]
        assert int(headers["x-consul-index"]) == f2.user_events.index() != 0
        # A node filter keeps the event off the other agents.
        await _json(c, f1.name, "PUT", f"/v1/event/fire/only?node=^{f2.name}$", b"", token=None)
        await eventually(lambda: f2.user_events.listing("only"))
        assert not leader.user_events.listing("only")

    run(body)


def test_usage_and_metrics():
    async def body(c):
        leader, (f1, _) = await ready(c)
        await eventually(lambda: len(leader.fsm.catalog.nodes) == 3)
        usage = await _json(c, f1.name, "GET", "/v1/operator/usage", token=None)
        assert usage["Usage"]["dc1"]["Nodes"] == 3 and usage["KnownLeader"] is True
        metrics = await _json(c, f1.name, "GET", "/v1/agent/metrics", token=None)
        names = {g["Name"]: g["Value"] for g in metrics["Gauges"]}
        assert names["consul.raft.applied_index"] == f1.fsm.last_applied
        status, headers, raw = await http(c, f1.name, "GET", "/v1/agent/metrics?format=prometheus")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        assert "# TYPE consul_raft_applied_index gauge" in raw.decode()

    run(body)
