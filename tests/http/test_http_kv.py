"""KV endpoint: base64 values, 404 with index headers, raw, keys, cas (docs/consul-behaviour.md, section 6)."""

from __future__ import annotations

import base64

import pytest

META = {"Index": 7, "LastContact": 0.0123, "KnownLeader": True, "ConsistencyLevel": "leader"}


def entry(key: str, value: bytes | None, index: int = 7, flags: int = 0) -> dict:
    return {
        "LockIndex": 0,
        "Key": key,
        "Flags": flags,
        "Value": value,
        "CreateIndex": index,
        "ModifyIndex": index,
    }


async def test_get_base64_value_and_meta_headers(client, agent):
    agent.replies["KVS.Get"] = {"Entries": [entry("foo", b"bar")], "QueryMeta": META}
    status, headers, body = await client("GET", "/v1/kv/foo")
    assert status == 200
    assert body == (
        b'[{"LockIndex":0,"Key":"foo","Flags":0,"Value":"YmFy","CreateIndex":7,"ModifyIndex":7}]'
    )
    assert headers["x-consul-index"] == "7"
    assert headers["x-consul-knownleader"] == "true"
    assert headers["x-consul-lastcontact"] == "12"
    assert headers["x-consul-effective-consistency"] == "leader"
    assert agent.calls[-1][0] == "KVS.Get" and agent.last_args["Key"] == "foo"


async def test_empty_value_is_null(client, agent):
    agent.replies["KVS.Get"] = {"Entries": [entry("foo", None)], "QueryMeta": META}
    assert b'"Value":null' in (await client("GET", "/v1/kv/foo"))[2]
    agent.replies["KVS.Get"] = {"Entries": [entry("foo", b"")], "QueryMeta": META}
    assert b'"Value":null' in (await client("GET", "/v1/kv/foo"))[2]


async def test_missing_key_404_with_index_headers(client, agent):
    meta = {"Index": 0, "LastContact": 0, "KnownLeader": False, "ConsistencyLevel": "stale"}
    agent.replies["KVS.Get"] = {"Entries": [], "QueryMeta": meta}
    status, headers, body = await client("GET", "/v1/kv/missing?stale")
    assert (status, body) == (404, b"")
    assert headers["x-consul-index"] == "1"  # 0 is sent as 1
    assert headers["x-consul-knownleader"] == "false"
    assert headers["x-consul-lastcontact"] == "0"
    assert headers["x-consul-effective-consistency"] == "stale"
    assert agent.last_args["AllowStale"] is True


async def test_raw(client, agent):
    agent.replies["KVS.Get"] = {"Entries": [entry("foo", b"\x00bin<ary>")], "QueryMeta": META}
    status, headers, body = await client("GET", "/v1/kv/foo?raw")
    assert (status, body) == (200, b"\x00bin<ary>")
    assert headers["content-type"] == "text/plain"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-consul-index"] == "7"


async def test_recurse_uses_list(client, agent):
    agent.replies["KVS.List"] = {
        "Entries": [entry("a/1", b"x"), entry("a/2", b"y", index=9)],
        "QueryMeta": META,
    }
    status, _, body = await client("GET", "/v1/kv/a/?recurse")
    assert status == 200
    assert agent.calls[-1][0] == "KVS.List" and agent.last_args["Key"] == "a/"
    assert body.count(b'"Key"') == 2


async def test_keys_with_separator(client, agent):
    agent.replies["KVS.ListKeys"] = {"Keys": ["a/1", "a/b/"], "QueryMeta": META}
    status, headers, body = await client("GET", "/v1/kv/a/?keys&separator=/")
    assert (status, body) == (200, b'["a/1","a/b/"]')
    assert agent.calls[-1][0] == "KVS.ListKeys"
    assert agent.last_args["Key"] == "a/" and agent.last_args["Separator"] == "/"
    assert headers["x-consul-index"] == "7"


async def test_keys_empty(client, agent):
    agent.replies["KVS.ListKeys"] = {"Keys": [], "QueryMeta": META}
    assert (await client("GET", "/v1/kv/?keys"))[:3:2] == (200, b"[]")
    assert (await client("GET", "/v1/kv/x?keys"))[:3:2] == (404, b"")


async def test_blocking_args(client, agent):
    agent.replies["KVS.Get"] = {"Entries": [entry("foo", b"1")], "QueryMeta": META}
    await client("GET", "/v1/kv/foo?index=6&wait=30s&consistent")
    args = agent.last_args
    assert (args["MinQueryIndex"], args["MaxQueryTime"], args["RequireConsistent"]) == (
        6,
        30.0,
        True,
    )


async def test_missing_key_name(client):
    assert (await client("GET", "/v1/kv/"))[::2] == (400, b"Missing key name")
    assert (await client("PUT", "/v1/kv/", body=b"x"))[::2] == (400, b"Missing key name")
    assert (await client("DELETE", "/v1/kv/"))[::2] == (400, b"Missing key name")


async def test_put_set_always_true(client, agent):
    agent.replies["KVS.Apply"] = {"Result": False, "Index": 9}
    status, headers, body = await client(
        "PUT", "/v1/kv/foo?flags=42", {"X-Consul-Token": "t"}, b"bar"
    )
    assert (status, body) == (200, b"true")
    assert "x-consul-index" not in headers
    assert agent.calls[-1] == (
        "KVS.Apply",
        {
            "Datacenter": "dc1",
            "Token": "t",
            "Op": "set",
            "DirEnt": {"Key": "foo", "Value": b"bar", "Flags": 42, "ModifyIndex": 0},
        },
    )


@pytest.mark.parametrize("result", [True, False])
async def test_put_cas(client, agent, result):
    agent.replies["KVS.Apply"] = {"Result": result, "Index": 9}
    status, _, body = await client("PUT", "/v1/kv/foo?cas=0", body=b"")
    assert (status, body) == (200, b"true" if result else b"false")
    assert agent.last_args["Op"] == "cas"
    assert agent.last_args["DirEnt"]["ModifyIndex"] == 0
    assert agent.last_args["DirEnt"]["Value"] is None


async def test_bad_flags_and_cas_are_500_with_strconv_text(client, agent):
    # Consul returns the strconv error unwrapped (kvs_endpoint.go), hence 500.
    status, _, body = await client("PUT", "/v1/kv/foo?flags=x", body=b"v")
    assert (status, body) == (500, b'strconv.ParseUint: parsing "x": invalid syntax')
    status, _, body = await client("PUT", "/v1/kv/foo?cas=-1", body=b"v")
    assert (status, body) == (500, b'strconv.ParseUint: parsing "-1": invalid syntax')
    status, _, body = await client("DELETE", "/v1/kv/foo?cas=1e3")
    assert (status, body) == (500, b'strconv.ParseUint: parsing "1e3": invalid syntax')
    assert agent.calls == []


async def test_conflicting_flags(client):
    status, _, body = await client("DELETE", "/v1/kv/foo?recurse&cas=3")
    assert (status, body) == (400, b"Conflicting flags: cas=3&recurse=\n")


@pytest.mark.parametrize(
    ("query", "op", "result", "body"),
    [
        ("", "delete", False, b"true"),
        ("?recurse", "delete-tree", False, b"true"),
        ("?cas=5", "delete-cas", True, b"true"),
        ("?cas=5", "delete-cas", False, b"false"),
    ],
)
async def test_delete(client, agent, query, op, result, body):
    agent.replies["KVS.Apply"] = {"Result": result, "Index": 9}
    status, _, got = await client("DELETE", f"/v1/kv/foo{query}")
    assert (status, got) == (200, body)
    assert agent.last_args["Op"] == op and agent.last_args["DirEnt"]["Key"] == "foo"


async def test_kv_permission_denied(client, agent):
    from consim.http.agent import RpcError

    text = "Permission denied: token with AccessorID 'a1' lacks permission 'key:write' on \"foo\""
    agent.replies["KVS.Apply"] = RpcError(text)
    status, _, body = await client("PUT", "/v1/kv/foo", body=b"v")
    assert (status, body.decode()) == (403, text)


async def test_value_roundtrip_binary(client, agent):
    raw = bytes(range(256))
    agent.replies["KVS.Get"] = {"Entries": [entry("b", raw)], "QueryMeta": META}
    _, _, body = await client("GET", "/v1/kv/b")
    assert base64.b64encode(raw) in body
