"""Consul's ACL rules for KV trees and the agent endpoints, table-driven, through the HTTP API of a
real cluster in virtual time (issue 10 item 3).

Each row is one request and what Consul answers: delete-tree needs KeyWritePrefix, listings are
filtered per key (the readable subset, 404 when nothing is readable), /v1/agent/self needs
agent:read, /v1/agent/members is filtered by node:read, and an unknown token gets ``ACL not found``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from consim.acl import ACLConfig

from .helpers import http, ready, run

KV = "8f4b2a6e-0000-4000-8000-0000000000a1"
OPS = "8f4b2a6e-0000-4000-8000-0000000000a2"
AGENT_READ = "8f4b2a6e-0000-4000-8000-0000000000a3"
ONE_NODE = "8f4b2a6e-0000-4000-8000-0000000000a4"
AGENT_WRITE = "8f4b2a6e-0000-4000-8000-0000000000a5"
ANON_SUFFIX = ". The anonymous token is used implicitly when a request does not specify a token."
FILTERED = "x-consul-results-filtered-by-acls"
NODES = ["dc1-s1", "dc1-s2", "dc1-s3"]

ACL = ACLConfig.from_dict(
    {
        "enabled": True,
        "default_policy": "deny",
        "initial_management": "root",
        "tokens": [
            {
                "accessor_id": KV,
                "secret_id": "kv",
                "key_prefix": {"": "read", "app/": "write", "app/secret/": "deny"},
            },
            {"accessor_id": OPS, "secret_id": "ops", "operator": "write"},
            {
                "accessor_id": AGENT_READ,
                "secret_id": "agent-read",
                "agent_prefix": {"": "read"},
                "node_prefix": {"": "read"},
            },
            {"accessor_id": ONE_NODE, "secret_id": "one-node", "node_prefix": {"dc1-s2": "read"}},
            {"accessor_id": AGENT_WRITE, "secret_id": "agent-write", "agent_prefix": {"": "write"}},
        ],
    }
)


def denied(accessor: str, perm: str, segment: str | None = None) -> str:
    text = f"Permission denied: token with AccessorID '{accessor}' lacks permission '{perm}'"
    return text + (f' on "{segment}"' if segment else "")


def anon_denied(perm: str, segment: str) -> str:
    return f"Permission denied: anonymous token lacks permission '{perm}' on \"{segment}\"{ANON_SUFFIX}"


def keys_of(body: str) -> list[str]:
    return [e["Key"] for e in json.loads(body)]


def names_of(body: str) -> list[str]:
    return [m["Name"] for m in json.loads(body)]


# (case id, method, path, token, status, what the body must be (a string, or a function of the
# body that returns the value compared with `want`), want, the filtered header: True/False)
ROWS: list[tuple[Any, ...]] = [
    # -- delete-tree: KeyWritePrefix
    ("deltree-denied-beneath", "DELETE", "/v1/kv/app/?recurse", "kv", 403,
     None, denied(KV, "key:write", "app/"), None),
    ("deltree-root-denied", "DELETE", "/v1/kv/?recurse", "kv", 403,
     None, denied(KV, "key:write"), None),
    ("deltree-sub-allowed", "DELETE", "/v1/kv/app/tmp/?recurse", "kv", 200, None, "true", None),
    ("deltree-management", "DELETE", "/v1/kv/scratch/?recurse", "root", 200, None, "true", None),
    # -- listings: filtered per key
    ("recurse-subset", "GET", "/v1/kv/app/?recurse", "kv", 200, keys_of, ["app/a"], True),
    ("recurse-all-readable", "GET", "/v1/kv/other/?recurse", "kv", 200,
     keys_of, ["other/x"], False),
    ("recurse-none-readable", "GET", "/v1/kv/app/secret/?recurse", "kv", 404, None, "", True),
    ("keys-subset", "GET", "/v1/kv/app/?keys", "kv", 200, json.loads, ["app/a"], True),
    ("keys-separator", "GET", "/v1/kv/?keys&separator=/", "kv", 200,
     json.loads, ["app/", "other/"], True),
    ("keys-none-readable", "GET", "/v1/kv/app/secret/?keys", "kv", 404, None, "", True),
    ("recurse-management", "GET", "/v1/kv/app/?recurse", "root", 200,
     keys_of, ["app/a", "app/secret/pw"], False),
    # anonymous (default deny, no anonymous rules): nothing readable, and never told so
    ("recurse-anonymous", "GET", "/v1/kv/?recurse", "", 404, None, "", False),
    # ?keys at the root is never a 404 in Consul: the empty list
    ("keys-root-anonymous", "GET", "/v1/kv/?keys", "", 200, json.loads, [], False),
    ("recurse-unknown-token", "GET", "/v1/kv/?recurse", "nope", 403, None, "ACL not found", None),
    ("keys-unknown-token", "GET", "/v1/kv/?keys", "nope", 403, None, "ACL not found", None),
    ("get-denied-key", "GET", "/v1/kv/app/secret/pw", "kv", 403,
     None, denied(KV, "key:read", "app/secret/pw"), None),
    # -- /v1/agent/self: agent:read on the agent's node name
    ("self-unknown-token", "GET", "/v1/agent/self", "nope", 403, None, "ACL not found", None),
    ("self-anonymous", "GET", "/v1/agent/self", "", 403,
     None, anon_denied("agent:read", "dc1-s1"), None),
    ("self-no-agent-rule", "GET", "/v1/agent/self", "kv", 403,
     None, denied(KV, "agent:read", "dc1-s1"), None),
    ("self-agent-read", "GET", "/v1/agent/self", "agent-read", 200,
     lambda b: json.loads(b)["Config"]["NodeName"], "dc1-s1", None),
    # -- /v1/agent/members: node:read per member
    ("members-unknown-token", "GET", "/v1/agent/members", "nope", 403,
     None, "ACL not found", None),
    ("members-anonymous", "GET", "/v1/agent/members", "", 200, names_of, [], True),
    ("members-one-node", "GET", "/v1/agent/members", "one-node", 200, names_of, ["dc1-s2"], True),
    ("members-node-read", "GET", "/v1/agent/members", "agent-read", 200, names_of, NODES, False),
    ("members-wan-node-read", "GET", "/v1/agent/members?wan=1", "agent-read", 200,
     names_of, [f"{n}.dc1" for n in NODES], False),
    # -- join / leave need agent:write, force-leave operator:write
    ("join-operator-only", "PUT", "/v1/agent/join/127.0.0.2", "ops", 403,
     None, denied(OPS, "agent:write", "dc1-s1"), None),
    ("leave-read-only", "PUT", "/v1/agent/leave", "agent-read", 403,
     None, denied(AGENT_READ, "agent:write", "dc1-s1"), None),
    ("force-leave-agent-writer", "PUT", "/v1/agent/force-leave/nobody", "agent-write", 403,
     None, denied(AGENT_WRITE, "operator:write"), None),
    ("force-leave-unknown-token", "PUT", "/v1/agent/force-leave/nobody", "nope", 403,
     None, "ACL not found", None),
]  # fmt: skip

SEED = {"app/a": b"1", "app/secret/pw": b"s", "app/tmp/t": b"t", "other/x": b"x", "scratch/y": b"y"}


def _run_table() -> dict[str, tuple[int, dict[str, str], str]]:
    async def body(c):
        await ready(c)
        for key, value in SEED.items():
            status, _, raw = await http(c, "dc1-s1", "PUT", f"/v1/kv/{key}?token=root", body=value)
            assert (status, raw) == (200, b"true")
        # every member alive in both gossip pools, so the members rows see all three
        lan = c.node("dc1-s1").lan_pool
        with trio.fail_after(30):
            while sorted(m.name for m in lan.members() if m.status == 1) != NODES:
                await trio.sleep(0.1)
        out = {}
        for case, method, path, token, *_ in ROWS:
            headers = {"X-Consul-Token": token} if token else {}
            status, out_headers, raw = await http(c, "dc1-s1", method, path, headers=headers)
            out[case] = (status, out_headers, raw.decode())
        # what the refused delete-tree would have wiped is still there
        status, _, raw = await http(c, "dc1-s1", "GET", "/v1/kv/app/secret/pw?token=root")
        out["secret-survives"] = (status, {}, raw.decode())
        status, _, raw = await http(c, "dc1-s1", "GET", "/v1/kv/app/tmp/t?token=root")
        out["tmp-deleted"] = (status, {}, raw.decode())
        return out

    return run(body, acl=ACL)


@pytest.fixture(scope="module")
def results() -> dict[str, tuple[int, dict[str, str], str]]:
    return _run_table()


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_acl_rule(results, row):
    case, _method, _path, _token, status, view, want, filtered = row
    got_status, headers, body = results[case]
    assert got_status == status, (case, got_status, body)
    assert (view(body) if view else body) == want
    if filtered is not None:
        assert (headers.get(FILTERED) == "true") is filtered, headers


def test_refused_delete_tree_deleted_nothing(results):
    assert results["secret-survives"][0] == 200
    assert results["tmp-deleted"][0] == 404  # the allowed sub-tree delete did delete
