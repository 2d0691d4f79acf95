"""``consim tls ca create`` / ``consim tls cert create`` as ``consul tls`` does them, the files
they write loaded as a cluster's TLS settings (``consim up`` options, ``[cluster.tls]``), and a
live cluster with verify_incoming on real sockets: consim's servers talk TLS, a plaintext peer
is refused and counted."""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path

import pytest
import trio
from cryptography import x509

from consim.cli import build_parser, main
from consim.net.msgpackrpc import ClientCodec
from consim.net.portmux import RPC_CONSUL
from consim.runtime import start_live_cluster_parts
from consim.scenario.model import ScenarioError, load_scenario
from consim.spec import ClusterSpec
from consim.tls.cli import tls_from_args
from consim.tls.config import TLSConfig, TLSConfigError


def make_files(tmp_path: Path, monkeypatch, capsys) -> str:
    monkeypatch.chdir(tmp_path)
    assert main(["tls", "ca", "create"]) == 0
    assert capsys.readouterr().out == (
        "==> Saved consul-agent-ca.pem\n==> Saved consul-agent-ca-key.pem\n"
    )
    assert main(["tls", "cert", "create", "-server", "-dc", "dc1"]) == 0
    return capsys.readouterr().out


def test_ca_and_server_certificate_as_consul_makes_them(tmp_path, monkeypatch, capsys):
    out = make_files(tmp_path, monkeypatch, capsys)
    assert out.startswith("==> WARNING: Server Certificates grants authority to become a\n")
    assert out.endswith(
        "==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n"
        "==> Saved dc1-server-consul-0.pem\n==> Saved dc1-server-consul-0-key.pem\n"
    )
    cert = x509.load_pem_x509_certificate((tmp_path / "dc1-server-consul-0.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["server.dc1.consul", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert cert.subject.rfc4514_string() == "CN=server.dc1.consul"
    ca = x509.load_pem_x509_certificate((tmp_path / "consul-agent-ca.pem").read_bytes())
    assert ca.subject.rfc4514_string().startswith("CN=Consul Agent CA ")
    cert.verify_directly_issued_by(ca)
    assert (tmp_path / "consul-agent-ca-key.pem").stat().st_mode & 0o777 == 0o600
    # a second one takes the next number; an existing CA is not overwritten
    assert main(["tls", "cert", "create", "-server", "-dc", "dc1"]) == 0
    assert "dc1-server-consul-1.pem" in capsys.readouterr().out
    assert main(["tls", "ca", "create"]) == 1
    assert capsys.readouterr().err == "consul-agent-ca.pem already exists.\n"
    assert main(["tls", "cert", "create", "-dc", "dc1"]) == 1


def test_up_options_and_scenario_table_load_the_files(tmp_path, monkeypatch, capsys):
    make_files(tmp_path, monkeypatch, capsys)
    args = build_parser().parse_args(
        [
            "up",
            "--ca-file=consul-agent-ca.pem",
            "--cert-file=dc1-server-consul-0.pem",
            "--key-file=dc1-server-consul-0-key.pem",
            "--verify-incoming",
            "--verify-outgoing",
            "--verify-server-hostname",
        ]
    )
    config = tls_from_args(args, ["dc1"])
    assert config.enabled and config.verify_incoming and config.verify_server_hostname
    bad = build_parser().parse_args(["up", "--verify-incoming"])
    with pytest.raises(TLSConfigError, match="ca_file: needed to verify"):
        tls_from_args(bad, ["dc1"])
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        '[cluster]\ndatacenters = { dc1 = 3 }\n[cluster.tls]\nca_file = "consul-agent-ca.pem"\n'
        'cert_file = "dc1-server-consul-0.pem"\nkey_file = "dc1-server-consul-0-key.pem"\n'
        "verify_incoming = true\nverify_outgoing = true\n"
        '[[step]]\nwait = "leader"\nwithin = "5s"\n'
    )
    assert load_scenario(scenario).cluster.tls.verify_incoming
    scenario.write_text(
        '[cluster.tls]\ncert_file = "missing.pem"\nkey_file = "x"\n[[step]]\nwait = "leader"\n'
    )
    with pytest.raises(ScenarioError, match=r"\[cluster.tls\].cert_file: No such file"):
        load_scenario(scenario)


async def test_live_cluster_with_verify_incoming_refuses_plaintext():
    from live_hosts import free_host_base

    block = free_host_base([3], 18641)
    spec = ClusterSpec(
        seed=4,
        raft_multiplier=1,
        http_port=18641,
        host_block=block,
        tls=TLSConfig.auto(["dc1"]),
        rpc_hold_timeout=2.0,
    )
    cluster, _events = start_live_cluster_parts(spec)
    async with trio.open_nursery() as nursery:
        await nursery.start(cluster.net.run)
        await nursery.start(cluster.run)
        leader = await cluster.wait_for_leader(within=15)
        follower = next(n for n in cluster.servers.values() if n is not leader)
        with trio.fail_after(15):
            while True:  # a write through a follower: forwarded over TLS on real sockets
                status, _, body = await cluster.http(follower.name, "PUT", "/v1/kv/a", body=b"1")
                if status == 200:
                    break
                await trio.sleep(0.1)
        assert body == b"true"
        assert cluster.net.stats[leader.address]["tls_accepted"] > 0
        # A plaintext Consul RPC client: closed without an answer, counted.
        stream = await cluster.net.open_stream("127.0.0.1:0", leader.address, RPC_CONSUL)
        await stream.send_all(ClientCodec.request(1, "Status.Ping", {}))
        # closed with our request unread: EOF or a reset
        with trio.fail_after(5), contextlib.suppress(trio.BrokenResourceError):
            assert await stream.receive_some(100) == b""
        with trio.fail_after(5):
            while cluster.net.stats[leader.address]["tls_plaintext_refused"] == 0:
                await trio.sleep(0.05)
        assert cluster.net.stats[leader.address]["tls_plaintext_refused"] == 1
        nursery.cancel_scope.cancel()


SCENARIO = """
name = "tls"
seed = 3
[cluster]
datacenters = { dc1 = 3 }
[cluster.tls]
auto = true
verify_incoming = true
verify_outgoing = true
verify_server_hostname = true
[[step]]
wait = "leader"
within = "5s"
[[step]]
http = "PUT /v1/kv/color"
body = "blue"
on = "follower"
expect = { status = 200, body = "true" }
"""


def test_scenario_with_tls_runs_in_virtual_time(tmp_path, capsys):
    path = tmp_path / "tls.toml"
    path.write_text(SCENARIO)
    assert main(["run", str(path)]) == 0
    first = capsys.readouterr().out
    assert "==> PASS tls: 2/2 steps ok" in first
    assert main(["run", str(path)]) == 0  # a fresh CA each run, the same trace
    hashes = [
        line for line in (first + capsys.readouterr().out).splitlines() if "trace hash" in line
    ]
    assert len(hashes) == 2 and hashes[0] == hashes[1]
