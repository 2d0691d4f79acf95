"""Operator, status and agent endpoints (docs/consul-behaviour.md, sections 4 and 6)."""

from __future__ import annotations

import json

import pytest

from consim.http.agent import RpcError

KEY = "0eK8RjnsGC/+I1fJErQsBA=="


def pool(wan: bool, error: str = "", messages: dict | None = None, dc: str = "dc1") -> dict:
    return {
        "WAN": wan,
        "Datacenter": dc,
        "Segment": "",
        "Keys": {KEY: 3},
        "PrimaryKeys": {KEY: 3},
        "NumNodes": 3,
        "Messages": messages or {},
        "Error": error,
    }


# ----------------------------------------------------------------------------- raft


async def test_raft_configuration_body(client, agent):
    agent.replies["Operator.RaftGetConfiguration"] = {
        "Servers": [
            {
                "ID": "127.0.0.1:8300",
                "Node": "alice",
                "Address": "127.0.0.1:8300",
                "Leader": True,
                "Voter": True,
                "ProtocolVersion": "3",
                "LastIndex": 1167,
            }
        ],
        "Index": 22,
    }
    status, headers, body = await client("GET", "/v1/operator/raft/configuration?stale")
    assert status == 200 and headers["content-type"] == "application/json"
    assert "x-consul-index" not in headers
    assert json.loads(body) == {
        "Servers": [
            {
                "ID": "127.0.0.1:8300",
                "Node": "alice",
                "Address": "127.0.0.1:8300",
                "Leader": True,
                "ProtocolVersion": "3",
                "Voter": True,
                "LastIndex": 1167,
            }
        ],
        "Index": 22,
    }
    assert agent.last_args["AllowStale"] is True


async def test_raft_configuration_no_leader(client, agent):
    agent.replies["Operator.RaftGetConfiguration"] = RpcError("No cluster leader")
    assert (await client("GET", "/v1/operator/raft/configuration"))[::2] == (
        500,
        b"No cluster leader",
    )


@pytest.mark.parametrize(
    ("query", "text"),
    [
        (
            "",
            "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
        ),
        ("?id=a&address=b", "Must specify only one of ?id or ?address"),
    ],
)
async def test_raft_peer_400s(client, agent, query, text):
    status, _, body = await client("DELETE", f"/v1/operator/raft/peer{query}")
    assert (status, body.decode()) == (400, text)
    assert agent.calls == []


async def test_raft_peer_remove(client, agent):
    agent.replies["Operator.RaftRemovePeerByAddress"] = {}
    status, headers, body = await client(
        "DELETE", "/v1/operator/raft/peer?address=10.0.0.9:8300&dc=dc1&token=t"
    )
    assert (status, body) == (200, b"")
    assert "content-type" not in headers
    assert agent.calls == [
        (
            "Operator.RaftRemovePeerByAddress",
            {"Datacenter": "dc1", "Token": "t", "Address": "10.0.0.9:8300"},
        )
    ]
    text = 'id "abc" was not found in the Raft configuration'
    agent.replies["Operator.RaftRemovePeerByID"] = RpcError(text)
    status, _, body = await client("DELETE", "/v1/operator/raft/peer?id=abc")
    assert (status, body.decode()) == (500, text)
    assert agent.calls[-1][0] == "Operator.RaftRemovePeerByID"
    assert agent.last_args["ID"] == "abc"


async def test_transfer_leader(client, agent):
    agent.replies["Operator.RaftTransferLeader"] = {"Success": True}
    status, _, body = await client("POST", "/v1/operator/raft/transfer-leader?id=n2")
    assert (status, body) == (200, b'{"Success":true}')
    assert agent.last_args["ID"] == "n2"


# ----------------------------------------------------------------------------- keyring


async def test_keyring_list(client, agent):
    agent.replies["keyring"] = [pool(True), pool(False, messages={"bob": "hi"})]
    status, _, body = await client("GET", "/v1/operator/keyring")
    assert status == 200
    data = json.loads(body)
    assert [p["WAN"] for p in data] == [True, False]
    assert "Messages" not in data[0] and data[1]["Messages"] == {"bob": "hi"}
    assert list(data[0]) == ["WAN", "Datacenter", "Segment", "Keys", "PrimaryKeys", "NumNodes"]
    assert agent.last_args == {
        "op": "list",
        "key": None,
        "relay_factor": 0,
        "local_only": False,
        "token": "",
    }


async def test_keyring_multierror_body_byte_for_byte(client, agent):
    agent.replies["keyring"] = [
        pool(True),
        pool(
            False,
            error="1/3 nodes reported failure",
            messages={"carol": "Requested key is not in the keyring", "alice": "boom"},
        ),
    ]
    status, headers, body = await client(
        "PUT", "/v1/operator/keyring", body=json.dumps({"Key": KEY}).encode()
    )
    assert status == 500
    assert headers["content-type"].startswith("text/plain")
    assert body == (
        b"3 errors occurred:\n"
        b"\t* dc1 (LAN) error: 1/3 nodes reported failure\n"
        b"\t* alice: boom\n"
        b"\t* carol: Requested key is not in the keyring\n\n"
    )
    assert agent.last_args["op"] == "use" and agent.last_args["key"] == KEY


async def test_keyring_single_error_and_wan_name(client, agent):
    agent.replies["keyring"] = [pool(True, error="1/3 nodes reported failure"), pool(False)]
    status, _, body = await client("GET", "/v1/operator/keyring")
    assert (status, body) == (
        500,
        b"1 error occurred:\n\t* WAN error: 1/3 nodes reported failure\n\n",
    )


@pytest.mark.parametrize(
    ("method", "op"), [("POST", "install"), ("PUT", "use"), ("DELETE", "remove")]
)
async def test_keyring_writes_succeed_empty(client, agent, method, op):
    agent.replies["keyring"] = [pool(True), pool(False)]
    status, headers, body = await client(
        method, "/v1/operator/keyring?relay-factor=2", {"X-Consul-Token": "k"}, b'{"key": "abc"}'
    )
    assert (status, body) == (200, b"")
    assert agent.last_args == {
        "op": op,
        "key": "abc",
        "relay_factor": 2,
        "local_only": False,
        "token": "k",
    }


@pytest.mark.parametrize(
    ("method", "query", "body", "text"),
    [
        ("POST", "", b"", "Request decode failed: EOF"),
        ("PUT", "", b'{"Key": "x", "Bogus": 1}', 'Request decode failed: json: unknown field "Bogus"'),
        ("DELETE", "", b"{nope", "Request decode failed: invalid character 'n' looking for beginning of object key string"),
        ("POST", "", b'{"Key": 5}', "Request decode failed: json: cannot unmarshal number into Go struct field keyringArgs.Key of type string"),
        ("GET", "?relay-factor=x", b"", 'Error parsing relay factor: strconv.Atoi: parsing "x": invalid syntax'),
        ("GET", "?relay-factor=6", b"", "Invalid relay-factor: Relay factor must be in range: [0, 5]"),
        ("GET", "?relay-factor=-1", b"", "Invalid relay-factor: Relay factor must be in range: [0, 5]"),
        ("GET", "?local-only=maybe", b"", 'Error parsing local-only: strconv.ParseBool: parsing "maybe": invalid syntax'),
        ("POST", "?local-only=true", b'{"Key": "k"}', "Invalid use of local-only: local-only can only be set for list requests"),
    ],
)  # fmt: skip
async def test_keyring_400s(client, agent, method, query, body, text):
    status, _, got = await client(method, f"/v1/operator/keyring{query}", body=body)
    assert (status, got.decode()) == (400, text)
    assert agent.calls == []


async def test_keyring_local_only_list(client, agent):
    agent.replies["keyring"] = [pool(False)]
    status, _, _ = await client("GET", "/v1/operator/keyring?local-only=1")
    assert status == 200 and agent.last_args["local_only"] is True


async def test_keyring_permission_denied(client, agent):
    text = (
        "Permission denied: anonymous token lacks permission 'keyring:read'. The anonymous "
        "token is used implicitly when a request does not specify a token."
    )
    agent.replies["keyring"] = RpcError(text)
    assert (await client("GET", "/v1/operator/keyring"))[::2] == (403, text.encode())


# ----------------------------------------------------------------------------- autopilot

AP = {
    "CleanupDeadServers": True,
    "LastContactThreshold": 0.2,
    "MaxTrailingLogs": 250,
    "MinQuorum": 0,
    "ServerStabilizationTime": 10.0,
    "RedundancyZoneTag": "",
    "DisableUpgradeMigration": False,
    "UpgradeVersionTag": "",
    "CreateIndex": 4,
    "ModifyIndex": 4,
}


async def test_autopilot_get(client, agent):
    agent.replies["Operator.AutopilotGetConfiguration"] = AP
    status, _, body = await client("GET", "/v1/operator/autopilot/configuration")
    assert status == 200
    assert body == (
        b'{"CleanupDeadServers":true,"LastContactThreshold":"200ms","MaxTrailingLogs":250,'
        b'"MinQuorum":0,"ServerStabilizationTime":"10s","RedundancyZoneTag":"",'
        b'"DisableUpgradeMigration":false,"UpgradeVersionTag":"","CreateIndex":4,"ModifyIndex":4}'
    )


async def test_autopilot_put(client, agent):
    agent.replies["Operator.AutopilotSetConfiguration"] = {"Result": False}
    body = b'{"CleanupDeadServers": true, "LastContactThreshold": "1s", "MaxTrailingLogs": 9}'
    status, _, got = await client("PUT", "/v1/operator/autopilot/configuration", body=body)
    assert (status, got) == (200, b"true")
    args = agent.last_args
    assert args["CAS"] is False
    assert args["Config"]["LastContactThreshold"] == 1.0
    assert args["Config"]["MaxTrailingLogs"] == 9
    # missing: api.NewAutopilotConfiguration()'s default, not Go's zero value
    assert args["Config"]["ServerStabilizationTime"] == 10.0
    status, _, got = await client("PUT", "/v1/operator/autopilot/configuration?cas=4", body=body)
    assert (status, got) == (200, b"false")
    assert agent.last_args["CAS"] is True and agent.last_args["Config"]["ModifyIndex"] == 4


@pytest.mark.parametrize(
    ("query", "body", "text"),
    [
        ("", b"", "Error parsing autopilot config: EOF"),
        ("", b'{"Nope": 1}', 'Error parsing autopilot config: json: unknown field "Nope"'),
        ("", b'{"LastContactThreshold": "fast"}', 'Error parsing autopilot config: time: invalid duration "fast"'),
        ("?cas=x", b"{}", 'Error parsing cas value: strconv.ParseUint: parsing "x": invalid syntax'),
    ],
)  # fmt: skip
async def test_autopilot_put_400s(client, agent, query, body, text):
    status, _, got = await client("PUT", f"/v1/operator/autopilot/configuration{query}", body=body)
    assert (status, got.decode()) == (400, text)
    assert agent.calls == []


async def test_autopilot_health_429_when_unhealthy(client, agent):
    server = {
        "ID": "id1",
        "Name": "alice",
        "Address": "127.0.0.1:8300",
        "SerfStatus": "alive",
        "Version": "1.0",
        "Leader": True,
        "LastContact": 0.0,
        "LastTerm": 2,
        "LastIndex": 10,
        "Healthy": False,
        "Voter": True,
        "StableSince": 12.4,
    }
    agent.replies["Operator.ServerHealth"] = {
        "Healthy": False,
        "FailureTolerance": 0,
        "Servers": [server],
    }
    status, headers, body = await client("GET", "/v1/operator/autopilot/health")
    assert status == 429 and headers["content-type"] == "application/json"
    data = json.loads(body)
    assert data["Healthy"] is False
    assert data["Servers"][0]["LastContact"] == "0s"
    assert data["Servers"][0]["StableSince"] == "2026-11-27T12:00:12Z"
    agent.replies["Operator.ServerHealth"] = {"Healthy": True, "FailureTolerance": 1, "Servers": []}
    assert (await client("GET", "/v1/operator/autopilot/health"))[0] == 200


async def test_autopilot_state_passthrough(client, agent):
    agent.replies["Operator.AutopilotState"] = {"Healthy": True, "Leader": "id1"}
    status, _, body = await client("GET", "/v1/operator/autopilot/state")
    assert (status, json.loads(body)) == (200, {"Healthy": True, "Leader": "id1"})


# ----------------------------------------------------------------------------- agent


async def test_agent_self_and_members(client, agent):
    assert json.loads((await client("GET", "/v1/agent/self"))[2]) == agent.self_body
    agent.members_body = [{"Name": "alice", "Tags": {"role": "consul", "dc": "dc1"}, "Status": 1}]
    status, _, body = await client("GET", "/v1/agent/members?wan=1")
    assert status == 200 and b'"Tags":{"dc":"dc1","role":"consul"}' in body
    _ = (await client("GET", "/v1/agent/members?wan=1"))[1]
    assert agent.calls[-1] == ("members", {"wan": True, "token": ""})
    assert "x-consul-results-filtered-by-acls" not in _
    # Consul: empty value is not WAN; the token goes to the agent, which filters by node:read
    _, headers, _ = await client("GET", "/v1/agent/members?wan", {"X-Consul-Token": "t"})
    assert agent.calls[-1] == ("members", {"wan": False, "token": "t"})
    assert "x-consul-results-filtered-by-acls" not in headers
    agent.replies["members_filtered"] = True
    _, headers, _ = await client("GET", "/v1/agent/members?token=t")
    assert headers["x-consul-results-filtered-by-acls"] == "true"
    await client("GET", "/v1/agent/self?token=s")
    assert agent.calls[-1] == ("agent_self", {"token": "s"})
    agent.replies["agent_self"] = RpcError("ACL not found")
    assert (await client("GET", "/v1/agent/self?token=nope"))[::2] == (403, b"ACL not found")


async def test_agent_force_leave_join_leave(client, agent):
    assert (await client("PUT", "/v1/agent/force-leave/bob?prune&token=t"))[::2] == (200, b"")
    assert agent.calls[-1] == ("force_leave", {"node": "bob", "prune": True, "token": "t"})
    assert (await client("PUT", "/v1/agent/join/127.0.0.2:8302?wan=1"))[0] == 200
    assert agent.calls[-1] == ("join", {"address": "127.0.0.2:8302", "wan": True, "token": ""})
    assert (await client("PUT", "/v1/agent/leave"))[0] == 200
    assert agent.calls[-1] == ("leave", {"token": ""})
    text = "Permission denied: token with AccessorID 'a' lacks permission 'operator:write'"
    agent.replies["force_leave"] = RpcError(text)
    assert (await client("PUT", "/v1/agent/force-leave/bob"))[::2] == (403, text.encode())
    assert (await client("GET", "/v1/agent/leave"))[0] == 405
