"""Consul's CLI texts, byte for byte, over a fake transport and over a live server."""

from __future__ import annotations

import json

import pytest
import trio

from consim.consulcli import (
    TransportError,
    httpx_transport,
    kv_get,
    kv_put,
    list_peers,
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
