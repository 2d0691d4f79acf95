"""HTTP conventions shared by every endpoint (docs/consul-behaviour.md, sections 1 and 2)."""

from __future__ import annotations

import pytest

from consim.http.agent import RpcError

LEADER = "127.0.0.1:8300"
ANON_DENIED = (
    "Permission denied: anonymous token lacks permission 'operator:read'. The anonymous token "
    "is used implicitly when a request does not specify a token."
)


async def test_json_content_type_and_compact_body(client, agent):
    agent.replies["Status.Leader"] = LEADER
    status, headers, body = await client("GET", "/v1/status/leader")
    assert (status, body) == (200, b'"127.0.0.1:8300"')
    assert headers["content-type"] == "application/json"
    # Query metadata headers are only for replicated-state reads such as KV.
    assert "x-consul-index" not in headers


async def test_pretty_indents_four_spaces_with_newline(client, agent):
    agent.replies["Status.Peers"] = ["127.0.0.1:8300", "127.0.0.2:8300"]
    status, _, body = await client("GET", "/v1/status/peers?pretty")
    assert status == 200
    assert body == b'[\n    "127.0.0.1:8300",\n    "127.0.0.2:8300"\n]\n'


async def test_empty_leader_is_a_json_empty_string(client, agent):
    agent.replies["Status.Leader"] = ""
    assert (await client("GET", "/v1/status/leader"))[2] == b'""'


async def test_405_with_allow_header_and_plain_body(client):
    status, headers, body = await client("PATCH", "/v1/kv/foo")
    assert status == 405
    assert headers["allow"] == "OPTIONS,GET,PUT,DELETE"
    assert body == b"method PATCH not allowed"
    assert headers["content-type"].startswith("text/plain")
    status, headers, body = await client("POST", "/v1/status/leader")
    assert (status, headers["allow"], body) == (405, "OPTIONS,GET", b"method POST not allowed")


async def test_405_for_methods_quart_does_not_know(client):
    status, headers, body = await client("PROPFIND", "/v1/operator/raft/peer")
    assert (status, headers["allow"], body) == (
        405,
        "OPTIONS,DELETE",
        b"method PROPFIND not allowed",
    )


async def test_options_lists_methods_without_body(client, agent):
    status, headers, body = await client("OPTIONS", "/v1/operator/keyring")
    assert (status, body) == (200, b"")
    assert headers["allow"] == "OPTIONS,GET,POST,PUT,DELETE"
    assert "content-type" not in headers
    assert agent.calls == []


async def test_unknown_path_is_consuls_404(client):
    status, _, body = await client("GET", "/v1/nope")
    assert (status, body) == (404, b"Invalid URL path: not a recognized HTTP API endpoint\n")


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        ("/v1/status/leader?token=q", {"X-Consul-Token": "h", "Authorization": "Bearer b"}, "q"),
        ("/v1/status/leader", {"X-Consul-Token": "h", "Authorization": "Bearer b"}, "h"),
        ("/v1/status/leader", {"Authorization": "Bearer b"}, "b"),
        ("/v1/status/leader", {"Authorization": "bEaReR   b2  extra"}, "b2"),
        ("/v1/status/leader", {"Authorization": "Basic abc"}, ""),
        ("/v1/status/leader", {}, ""),
    ],
)
async def test_token_precedence(client, agent, path, headers, expected):
    agent.replies["Status.Leader"] = LEADER
    await client("GET", path, headers)
    assert agent.last_args["Token"] == expected


async def test_query_args_defaults(client, agent):
    agent.replies["Operator.RaftGetConfiguration"] = {"Servers": [], "Index": 1}
    await client("GET", "/v1/operator/raft/configuration")
    assert agent.calls == [
        (
            "Operator.RaftGetConfiguration",
            {
                "Datacenter": "dc1",
                "Token": "",
                "AllowStale": False,
                "RequireConsistent": False,
                "MaxStaleDuration": 0.0,
                "MinQueryIndex": 0,
                "MaxQueryTime": 300.0,
            },
        )
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("stale", {"AllowStale": True}),
        ("stale=false", {"AllowStale": True}),  # presence-checked
        ("consistent", {"RequireConsistent": True}),
        ("leader", {"AllowStale": False, "RequireConsistent": False}),
        ("max_stale=1m30s", {"AllowStale": True, "MaxStaleDuration": 90.0}),
        ("max_stale=0s", {"AllowStale": False, "MaxStaleDuration": 0.0}),
        ("index=42&wait=2s", {"MinQueryIndex": 42, "MaxQueryTime": 2.0}),
        ("index=42&wait=1h", {"MaxQueryTime": 600.0}),
        ("dc=dc2", {"Datacenter": "dc2"}),
    ],
)
async def test_query_args(client, agent, query, expected):
    agent.replies["Operator.RaftGetConfiguration"] = {"Servers": [], "Index": 1}
    status, _, _ = await client("GET", f"/v1/operator/raft/configuration?{query}")
    assert status == 200
    for k, v in expected.items():
        assert agent.last_args[k] == v


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("max_stale=x", 'Invalid max_stale value "x"'),
        ("stale&consistent", "Cannot specify ?stale with ?consistent, conflicting semantics."),
        (
            "consistent&max_stale=5s",
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
        ),
        ("wait=soon", "Invalid wait time"),
        ("wait=5", "Invalid wait time"),
        ("index=-1", "Invalid index"),
        ("index=abc", "Invalid index"),
    ],
)
async def test_query_400s(client, agent, query, text):
    status, headers, body = await client("GET", f"/v1/operator/raft/configuration?{query}")
    assert (status, body.decode()) == (400, text)
    assert agent.calls == []


@pytest.mark.parametrize(
    ("message", "status"),
    [
        (ANON_DENIED, 403),
        (
            "Permission denied: token with AccessorID 'a1' lacks permission 'operator:read'",
            403,
        ),
        ("ACL not found", 403),
        ("No cluster leader", 500),
        ("Not ready to serve consistent reads", 500),
        ('address "10.0.0.9:8300" was not found in the Raft configuration', 500),
    ],
)
async def test_rpc_error_mapping(client, agent, message, status):
    agent.replies["Operator.RaftGetConfiguration"] = RpcError(message)
    got, headers, body = await client("GET", "/v1/operator/raft/configuration")
    assert (got, body.decode()) == (status, message)
    assert headers["content-type"].startswith("text/plain")


async def test_internal_error_is_500_without_traceback(client, agent):
    agent.replies["Status.Peers"] = ZeroDivisionError("secret detail")
    status, _, body = await client("GET", "/v1/status/peers")
    assert (status, body) == (500, b"internal error")
    assert b"Traceback" not in body and b"secret" not in body
    assert len(agent.internal_errors) == 1
    where, exc = agent.internal_errors[0]
    assert where == "GET /v1/status/peers" and isinstance(exc, ZeroDivisionError)


async def test_unserialisable_reply_is_internal_error(client, agent):
    agent.replies["Status.Peers"] = [object()]
    status, _, body = await client("GET", "/v1/status/peers")
    assert (status, body) == (500, b"internal error")
