"""``consim agent``'s flags and configuration files: Go's flag rules, Consul's merge order and
Consul's texts and exit codes for bad input (no process is started here, except where said)."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pytest

from consim.agent.config import (
    ERR_EXCLUSIVE,
    WARN_EXPECT_EVEN,
    WARN_EXPECT_TWO,
    ConfigError,
    FlagError,
    build,
)
from consim.agent.run import AgentStartError, check_ports, node_id_for, run_agent


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_agent(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_go_flag_syntax(tmp_path: Path) -> None:
    cfg = build(
        [
            "-server",
            "--node=n1",
            "-datacenter",
            "DC7",
            "-bind=127.0.0.5",
            "-retry-join",
            "127.0.0.6",
            "-retry-join=127.0.0.7",
            "-bootstrap-expect=3",
            "-server=true",
            f"-data-dir={tmp_path}",
        ]
    )
    assert (cfg.server, cfg.node_name, cfg.datacenter, cfg.bind_addr) == (
        True,
        "n1",
        "dc7",  # Consul lowercases the datacenter
        "127.0.0.5",
    )
    assert cfg.retry_join == ["127.0.0.6", "127.0.0.7"] and cfg.bootstrap_expect == 3
    # Consul's server defaults: neither signal leaves.
    assert cfg.skips_leave_on_interrupt and not cfg.leaves_on_terminate


def test_unknown_flag_is_gos_text_then_usage_exit_1(tmp_path: Path) -> None:
    code, out, err = _run(["-server", "-bootstrapp", f"-data-dir={tmp_path}"])
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert lines[0] == "flag provided but not defined: -bootstrapp"
    assert lines[1] == "Usage:" and "  -bootstrap-expect int" in lines
    assert lines[-1] == "error parsing flags: flag provided but not defined: -bootstrapp"


def test_consul_flags_consim_does_not_model_say_so(tmp_path: Path) -> None:
    code, out, err = _run(["-server", "-dev", f"-data-dir={tmp_path}"])
    assert (code, out, err) == (1, "", "-dev: a consul agent flag consim does not model\n")


@pytest.mark.parametrize(
    ("argv", "text"),
    [
        (["-node"], "flag needs an argument: -node"),
        (["-bootstrap-expect=x"], 'invalid value "x" for flag -bootstrap-expect: parse error'),
        (["-server=maybe"], 'invalid boolean value "maybe" for -server: parse error'),
    ],
)
def test_bad_flag_values(argv: list[str], text: str) -> None:
    with pytest.raises(FlagError, match=text):
        build(argv)


def test_bootstrap_with_bootstrap_expect_is_refused(tmp_path: Path) -> None:
    code, out, err = _run(["-server", "-bootstrap", "-bootstrap-expect=3", f"-data-dir={tmp_path}"])
    assert (code, out, err) == (1, "", ERR_EXCLUSIVE + "\n")
    assert not (tmp_path / "node-id").exists()  # nothing was started


def test_bootstrap_expect_warnings_as_consul(tmp_path: Path) -> None:
    two = build(["-server", "-bootstrap-expect=2", f"-data-dir={tmp_path}"])
    assert two.warnings == ["bootstrap_expect > 0: expecting 2 servers", WARN_EXPECT_TWO]
    four = build(["-server", "-bootstrap-expect=4", f"-data-dir={tmp_path}"])
    assert four.warnings == ["bootstrap_expect > 0: expecting 4 servers", WARN_EXPECT_EVEN]
    one = build(["-server", "-bootstrap-expect=1", f"-data-dir={tmp_path}"])
    assert one.bootstrap and one.bootstrap_expect == 0
    assert one.warnings[0] == "BootstrapExpect is set to 1; this is the same as Bootstrap mode."
    assert build(["-server", "-bootstrap-expect=3", f"-data-dir={tmp_path}"]).warnings == [
        "bootstrap_expect > 0: expecting 3 servers"
    ]


def test_required_values() -> None:
    with pytest.raises(ConfigError, match="^data_dir cannot be empty$"):
        build(["-server"])
    with pytest.raises(ConfigError, match=r'^datacenter cannot be "d c"\. Please use only'):
        build(["-server", "-data-dir=/x", "-datacenter=d c"])


def test_json_and_hcl_files_merge_then_flags_win(tmp_path: Path) -> None:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "10-base.json").write_text(
        json.dumps(
            {
                "server": True,
                "datacenter": "east",
                "data_dir": str(tmp_path / "data"),
                "retry_join": ["10.0.0.1"],
                "ports": {"http": 8501},
                "performance": {"raft_multiplier": 1},
            }
        )
    )
    (conf / "20-more.hcl").write_text(
        'node_name = "from-hcl"\nretry_join = ["10.0.0.2"]\nbootstrap_expect = 3\n'
        "ports {\n  http = 8502\n}\nleave_on_terminate = true\n"
    )
    (conf / "notes.txt").write_text("not read")
    cfg = build([f"-config-dir={conf}", "-node=from-flag", "-retry-join=10.0.0.3"])
    assert cfg.datacenter == "east" and cfg.server and cfg.raft_multiplier == 1
    assert cfg.http_port == 8502  # the later file wins
    assert cfg.node_name == "from-flag"  # flags win over files
    assert cfg.retry_join == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]  # lists accumulate
    assert cfg.leaves_on_terminate


def test_unknown_config_key_is_consuls_multierror(tmp_path: Path) -> None:
    f = tmp_path / "bad.hcl"
    f.write_text('server = true\nbogus_key = 1\ndata_dir = "/x"\n')
    with pytest.raises(ConfigError) as info:
        build([f"-config-file={f}"])
    assert (
        str(info.value)
        == f"Error parsing {f}: 1 error occurred:\n\t* invalid config key bogus_key\n"
    )


def test_data_dir_of_another_node_id_is_refused(tmp_path: Path) -> None:
    cfg = build(["-server", f"-data-dir={tmp_path}"])
    first = node_id_for(cfg, tmp_path)
    assert (tmp_path / "node-id").read_text() == first
    assert node_id_for(cfg, tmp_path) == first  # a restart resumes as the same node
    other = build(
        ["-server", f"-data-dir={tmp_path}", "-node-id=11111111-2222-3333-4444-555555555555"]
    )
    with pytest.raises(AgentStartError, match=f"belongs to node id {first}"):
        node_id_for(other, tmp_path)
    code, _, err = _run(
        [
            "-server",
            f"-data-dir={tmp_path}",
            "-node-id=11111111-2222-3333-4444-555555555555",
            "-bind=127.0.0.1",
        ]
    )
    assert code == 1 and err.startswith("==> Error starting agent: data dir ")
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_port_in_use_is_one_line_naming_address_and_flag(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.241.9", 8301))
        with pytest.raises(AgentStartError) as info:
            check_ports("127.0.241.9", "127.0.241.9", 8500)
        assert str(info.value) == (
            "listen udp 127.0.241.9:8301: bind: address already in use (serf LAN; change -bind)"
        )
        code, out, err = _run(["-server", f"-data-dir={tmp_path}", "-bind=127.0.241.9"])
    assert code == 1 and out == ""
    assert err == (
        "==> Error starting agent: listen udp 127.0.241.9:8301: bind: address already in use "
        "(serf LAN; change -bind)\n"
    )
    with socket.socket() as holder:
        holder.bind(("127.0.241.10", 8555))
        holder.listen()
        with pytest.raises(
            AgentStartError,
            match=r"8555: bind: address already in use \(the HTTP API; change -http-port or -client\)",
        ):
            check_ports("127.0.241.10", "127.0.241.10", 8555)


def test_bad_peers_json_refuses_to_start_and_keeps_the_file(tmp_path: Path) -> None:
    raft = tmp_path / "raft"
    raft.mkdir()
    (raft / "peers.info").write_text("written on an earlier start")
    (raft / "peers.json").write_text("{}")
    code, out, err = _run(
        [
            "-server",
            "-bootstrap",
            f"-data-dir={tmp_path}",
            "-bind=127.0.242.2",
            "-client=127.0.242.2",
        ]
    )
    assert code == 1
    assert "found peers.json file, recovering Raft configuration..." in out
    assert err.splitlines()[-1] == (
        "==> Error starting agent: Failed to start Consul server: Failed to start Raft: recovery "
        "failed to parse peers.json: json: cannot unmarshal object into Go value of type "
        "[]raft.configEntry"
    )
    assert "Traceback" not in err and (raft / "peers.json").exists()
