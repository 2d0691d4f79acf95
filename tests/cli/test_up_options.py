"""`consim up` option parsing: the ACL file and the gossip key reach the cluster spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consim.cli import UsageError, _cluster_spec, build_parser, main

KEY = "0eK8RjnsGC/+I1fJErQsBA=="


def _up_args(*argv: str):
    return build_parser().parse_args(["up", *argv])


def test_acl_file_and_encrypt_reach_the_cluster_spec(tmp_path: Path) -> None:
    acl = tmp_path / "acl.json"
    acl.write_text(
        json.dumps(
            {
                "enabled": True,
                "default_policy": "deny",
                "initial_management": "root",
                "tokens": [{"accessor_id": "a-1", "secret_id": "ops", "operator": "read"}],
            }
        )
    )
    spec = _cluster_spec(
        _up_args("--datacenters", "dc1=3,dc2=1", "--acl-file", str(acl), "--encrypt", KEY)
    )
    assert spec.datacenters == (("dc1", 3), ("dc2", 1))
    assert spec.encrypt == KEY
    assert spec.acl.enabled and spec.acl.default_policy == "deny"
    # The loaded rules really decide: the ops token may read operator but not write it.
    authorizer = spec.acl.resolve("ops")
    authorizer.require("operator", "read")
    with pytest.raises(Exception, match="lacks permission 'operator:write'"):
        authorizer.require("operator", "write")


def test_toml_acl_file(tmp_path: Path) -> None:
    acl = tmp_path / "acl.toml"
    acl.write_text('enabled = true\ninitial_management = "root"\n')
    spec = _cluster_spec(_up_args("--acl-file", str(acl)))
    assert spec.acl.enabled and spec.acl.initial_management == "root"
    assert spec.encrypt is None  # gossip encryption is off unless asked for


def test_bad_acl_file_is_a_usage_error_naming_the_field(tmp_path: Path, capsys) -> None:
    acl = tmp_path / "acl.json"
    acl.write_text(json.dumps({"enabled": True, "default_policy": "maybe"}))
    with pytest.raises(UsageError, match="default_policy"):
        _cluster_spec(_up_args("--acl-file", str(acl)))
    assert main(["up", "--acl-file", str(acl)]) == 2
    assert "default_policy" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("0eK8", "encrypt has invalid key: key size must be 16, 24 or 32 bytes"),
        ("not*base64", "encrypt has invalid key: illegal base64 data at input byte"),
    ],
)
def test_bad_encrypt_key_is_refused_with_consuls_text(key: str, error: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        _up_args("--encrypt", key)
    assert exc.value.code == 2
    assert error in capsys.readouterr().err


def test_raft_log_bounds_reach_the_servers_raft_config() -> None:
    """``--raft-snapshot-threshold`` / ``--raft-trailing-logs`` (Consul's raft_snapshot_threshold
    and raft_trailing_logs) reach every server's Raft configuration; unset, Consul's defaults."""
    from consim.events import EventLog
    from consim.runtime import VIRTUAL

    def raft_bounds(*argv: str) -> tuple[int, float, int]:
        cluster = VIRTUAL.cluster(_cluster_spec(_up_args(*argv)), EventLog(lambda: 0.0))
        c = cluster.raft_config
        return c.snapshot_threshold, c.snapshot_interval, c.trailing_logs

    argv = ("--raft-snapshot-threshold", "1024", "--raft-trailing-logs", "512")
    assert raft_bounds(*argv, "--raft-snapshot-interval", "1m30s") == (1024, 90.0, 512)
    assert raft_bounds("--raft-snapshot-interval", "0s") == (8192, 0.0, 10240)
    assert raft_bounds() == (8192, 30.0, 10240)


@pytest.mark.parametrize("text", ["-5s", "30", "soon", "1ns", "4ms"])
def test_bad_snapshot_interval_is_refused(text: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        _up_args(f"--raft-snapshot-interval={text}")
    assert exc.value.code == 2
    assert "--raft-snapshot-interval" in capsys.readouterr().err
