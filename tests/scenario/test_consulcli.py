"""Consul's CLI texts, byte for byte, over a fake transport and over a live server."""

from __future__ import annotations

import json

import pytest
import trio

from consim.consulcli import (
    TransportError,
    force_leave,
    httpx_transport,
    keyring,
    kv_get,
    kv_put,
    list_peers,
    members,
    remove_peer,
    run_command,
    transfer_leader,
)

CONFIG = {
    "Servers": [
        {
            "ID": "127.0.0.1:8300",
            "Node": "alice",
            "Address": "127.0.0.1:8300",
            "Leader": False,
            "Voter": True,
            "ProtocolVersion": "3",
            "LastIndex": 1167,
        },
        {
            "ID": "127.0.0.2:8300",
            "Node": "bob",
            "Address": "127.0.0.2:8300",
            "Leader": True,
            "Voter": True,
            "ProtocolVersion": "3",
            "LastIndex": 1167,
        },
        {
            "ID": "127.0.0.3:8300",
            "Node": "carol",
            "Address": "127.0.0.3:8300",
            "Leader": False,
            "Voter": True,
            "ProtocolVersion": "3",
            "LastIndex": 1159,
        },
        {
            "ID": "127.0.0.4:8300",
            "Node": "dave",
            "Address": "127.0.0.4:8300",
            "Leader": False,
            "Voter": False,
            "ProtocolVersion": "3",
            "LastIndex": 1166,
        },
    ],
    "Index": 22,
}


class Fake:
    def __init__(self, status=200, body=b"", error=None):
        self.status, self.body, self.error = status, body, error
        self.calls = []

    async def __call__(self, method, path, headers, body):
        self.calls.append((method, path, headers, body))
        if self.error:
            raise TransportError(self.error)
        return self.status, {}, self.body


async def test_list_peers_table_matches_consul():
    fake = Fake(body=json.dumps(CONFIG).encode())
    out = await list_peers([], fake, env={})
    assert out.exit_code == 0 and out.stderr == ""
    assert out.stdout == (
        "Node   ID              Address         State     Voter  RaftProtocol  Commit Index  Trails Leader By\n"
        "alice  127.0.0.1:8300  127.0.0.1:8300  follower  true   3             1167          0 commits\n"
        "bob    127.0.0.2:8300  127.0.0.2:8300  leader    true   3             1167          -\n"
        "carol  127.0.0.3:8300  127.0.0.3:8300  follower  true   3             1159          8 commits\n"
        "dave   127.0.0.4:8300  127.0.0.4:8300  follower  false  3             1166          1 commit\n"
    )
    assert fake.calls[0][:2] == ("GET", "/v1/operator/raft/configuration")


async def test_list_peers_no_leader_error_and_flags():
    fake = Fake(status=500, body=b"No cluster leader")
    out = await list_peers(["-stale", "-token=s3cret"], fake, env={})
    assert out.exit_code == 1 and out.stdout == ""
    assert out.stderr == (
        "Error getting peers: Failed to retrieve raft configuration: "
        "Unexpected response code: 500 (No cluster leader)\n"
    )
    method, path, headers, _ = fake.calls[0]
    assert path == "/v1/operator/raft/configuration?stale="
    assert headers == {"X-Consul-Token": "s3cret"}
    # CONSUL_HTTP_TOKEN is used when -token is absent.
    await list_peers([], fake, env={"CONSUL_HTTP_TOKEN": "from-env"})
    assert fake.calls[1][2] == {"X-Consul-Token": "from-env"}
    out = await list_peers(["-bogus"], fake, env={})
    assert (out.exit_code, out.stderr) == (
        1,
        "Failed to parse args: flag provided but not defined: -bogus\n",
    )


async def test_remove_peer_texts():
    fake = Fake()
    out = await remove_peer(["-address=127.0.0.9:8300"], fake, env={})
    assert (out.exit_code, out.stdout) == (0, 'Removed peer with address "127.0.0.9:8300"\n')
    assert fake.calls[0][:2] == ("DELETE", "/v1/operator/raft/peer?address=127.0.0.9%3A8300")
    out = await remove_peer(["-id", "abc"], fake, env={})
    assert out.stdout == 'Removed peer with id "abc"\n'
    out = await remove_peer([], fake, env={})
    assert (
        out.stderr == "Error removing peer: an address or id is required for the peer to remove\n"
    )
    out = await remove_peer(["-id=a", "-address=b"], fake, env={})
    assert out.stderr == "Error removing peer: cannot give both an address and id\n"
    fake = Fake(status=500, body=b'address "10.0.0.9:8300" was not found in the Raft configuration')
    out = await remove_peer(["-address=10.0.0.9:8300"], fake, env={})
    assert out.exit_code == 1
    assert out.stderr == (
        'Error removing peer: Unexpected response code: 500 (address "10.0.0.9:8300" was not '
        "found in the Raft configuration)\n"
    )


async def test_transfer_leader_and_kv():
    out = await transfer_leader(["-id=x"], Fake(body=b'{"Success": true}'), env={})
    assert (out.exit_code, out.stdout) == (0, "Success\n")
    fake = Fake(body=b"true")
    out = await kv_put(["app/x", "hello"], fake, env={})
    assert out.stdout == "Success! Data written to: app/x\n"
    assert fake.calls[0][0:2] == ("PUT", "/v1/kv/app/x") and fake.calls[0][3] == b"hello"
    body = json.dumps([{"Key": "app/x", "Value": "aGVsbG8=", "Flags": 0}]).encode()
    out = await kv_get(["app/x"], Fake(body=body), env={})
    assert out.stdout == "hello\n"
    out = await kv_get(["nope"], Fake(status=404), env={})
    assert (out.exit_code, out.stderr) == (1, "Error! No key exists at: nope\n")
    out = await kv_get([], Fake(), env={})
    assert out.stderr == "Error! Missing KEY argument\n"
    out = await run_command(["kv", "get", "k"], Fake(error="dial tcp: refused"), env={})
    assert out.stderr == "Error querying Consul agent: dial tcp: refused\n"


async def test_httpx_transport_connection_refused_reads_like_go():
    transport = httpx_transport("127.0.0.1:1")
    with pytest.raises(
        TransportError,
        match=r'^Get "http://127.0.0.1:1/v1/kv/x": dial tcp 127.0.0.1:1: connect: connection refused$',
    ):
        await transport("GET", "/v1/kv/x", {}, b"")
    await trio.sleep(0)


K1 = "a2tra2tra2tra2tra2traw=="
K2 = "dHdvLXR3by10d28tdHdvLXR3by10d28tdHdvLXR3by0="


def _pool(wan, dc, keys, n, primary=None, messages=None):
    entry = {
        "WAN": wan,
        "Datacenter": dc,
        "Segment": "",
        "Keys": keys,
        "PrimaryKeys": primary or keys,
        "NumNodes": n,
    }
    if messages:
        entry["Messages"] = messages
    return entry


async def test_keyring_list_pools_counts_and_messages():
    listing = [
        _pool(True, "dc1", {K1: 2, K2: 2}, 2, {K1: 2}),
        _pool(False, "dc1", {K1: 3, K2: 2}, 3, {K1: 3}, {"dc1-s3": "a message"}),
    ]
    fake = Fake(body=json.dumps(listing).encode())
    out = await keyring(["-list"], fake, env={})
    assert (out.exit_code, out.stderr) == (0, "")
    assert out.stdout == (
        "==> Gathering installed encryption keys...\n"
        "\n"
        "WAN:\n"
        f"  {K1} [2/2]\n"
        f"  {K2} [2/2]\n"
        "\n"
        "dc1 (LAN):\n"
        "  ===> dc1-s3: a message\n"
        f"  {K1} [3/3]\n"
        f"  {K2} [2/3]\n"
    )
    assert fake.calls[0][:2] == ("GET", "/v1/operator/keyring")
    out = await keyring(["-list-primary"], fake, env={})
    assert out.stdout.startswith("==> Gathering installed primary encryption keys...\n\nWAN:\n")
    assert f"  {K2} [" not in out.stdout
    await keyring(["-list", "-local-only"], fake, env={})
    assert fake.calls[2][1] == "/v1/operator/keyring?local-only=true"
    # as Consul's ValidateLocalOnly(local, listKeys): -list-primary cannot be local-only
    out = await keyring(["-list-primary", "-local-only"], fake, env={})
    assert out.stderr.startswith("Error validating local-only")


async def test_keyring_install_use_remove_and_errors():
    for flag, method, line in (
        ("-install", "POST", "==> Installing new gossip encryption key...\n"),
        ("-use", "PUT", "==> Changing primary gossip encryption key...\n"),
        ("-remove", "DELETE", "==> Removing gossip encryption key...\n"),
    ):
        fake = Fake()
        out = await keyring([f"{flag}={K2}", "-token", "t"], fake, env={})
        assert (out.exit_code, out.stdout, out.stderr) == (0, line, "")
        assert fake.calls == [
            (
                method,
                "/v1/operator/keyring",
                {"X-Consul-Token": "t"},
                json.dumps({"Key": K2}).encode(),
            )
        ]
    body = b"1 error occurred:\n\t* dc1 (LAN) error: 2/3 nodes reported success\n\n"
    out = await keyring([f"-install={K2}"], Fake(status=500, body=body), env={})
    assert out.exit_code == 1
    assert out.stdout == "==> Installing new gossip encryption key...\n"
    assert out.stderr == f"error: Unexpected response code: 500 ({body.decode()})\n"
    out = await keyring(["-list"], Fake(error="dial tcp 127.0.0.1:8500: refused"), env={})
    assert out.stderr == "error: dial tcp 127.0.0.1:8500: refused\n"
    out = await keyring(["-list", f"-use={K1}"], Fake(), env={})
    assert (out.exit_code, out.stderr) == (1, "Only a single action is allowed\n")
    out = await keyring([], Fake(), env={})
    assert out.exit_code == 1 and out.stderr.startswith("Usage: consul keyring [options]\n")
    out = await keyring([f"-install={K1}", "-local-only"], Fake(), env={})
    assert out.stderr == (
        "Error validating local-only: local-only can only be set for list requests\n"
    )
    out = await keyring(["-list", "-relay-factor=6"], Fake(), env={})
    assert out.stderr == "Error parsing relay factor: Relay factor must be in range: [0, 5]\n"
    out = await keyring(["-list", "-stale"], Fake(), env={})  # a server flag keyring lacks
    assert out.exit_code == 1
    assert out.stderr.startswith("flag provided but not defined: -stale\nUsage: consul keyring")


MEMBERS = [
    {
        "Name": name,
        "Addr": f"127.0.0.{k}",
        "Port": 8301,
        "Status": status,
        "Tags": {"role": "consul", "dc": "dc1", "vsn": "2", "build": "1.4.0:consim"},
    }
    for name, k, status in (("dc1-s2", 2, 1), ("dc1-s1", 1, 1), ("dc1-s3", 3, 4))
]


async def test_members_table_filter_and_wan():
    fake = Fake(body=json.dumps(MEMBERS).encode())
    out = await members([], fake, env={})
    assert (out.exit_code, out.stderr) == (0, "")
    assert out.stdout == (
        "Node    Address         Status  Type    Build  Protocol  DC   Partition  Segment\n"
        "dc1-s1  127.0.0.1:8301  alive   server  1.4.0  2         dc1  default    <all>\n"
        "dc1-s2  127.0.0.2:8301  alive   server  1.4.0  2         dc1  default    <all>\n"
        "dc1-s3  127.0.0.3:8301  failed  server  1.4.0  2         dc1  default    <all>\n"
    )
    assert fake.calls[0][1] == "/v1/agent/members?segment=_all"
    out = await members(["-status=fail"], fake, env={})
    assert out.stdout.splitlines()[1:] == [
        "dc1-s3  127.0.0.3:8301  failed  server  1.4.0  2         dc1  default    <all>"
    ]
    out = await members(["-status=left"], fake, env={})
    assert (out.exit_code, out.stdout, out.stderr) == (2, "", "")
    await members(["-wan"], fake, env={})
    assert fake.calls[-1][1] == "/v1/agent/members?wan=1&segment=_all"
    out = await members([], Fake(status=403, body=b"ACL not found"), env={})
    assert (out.exit_code, out.stderr) == (
        1,
        "Error retrieving members: Unexpected response code: 403 (ACL not found)\n",
    )


async def test_force_leave_texts():
    fake = Fake()
    out = await force_leave(["dc1-s3"], fake, env={})
    assert (out.exit_code, out.stdout, out.stderr) == (0, "", "")
    assert fake.calls[0][:2] == ("PUT", "/v1/agent/force-leave/dc1-s3")
    await force_leave(["-prune", "dc1-s3"], fake, env={})
    assert fake.calls[1][1] == "/v1/agent/force-leave/dc1-s3?prune=1"
    out = await force_leave([], fake, env={})
    assert out.exit_code == 1
    assert out.stderr.startswith(
        "A single node name must be specified to force leave.\n\nUsage: consul force-leave"
    )
    body = b"agent: No node found with name 'nope'"
    out = await force_leave(["nope"], Fake(status=500, body=body), env={})
    assert out.stderr == (
        "Error force leaving: Unexpected response code: 500 (agent: No node found with name 'nope')\n"
    )
