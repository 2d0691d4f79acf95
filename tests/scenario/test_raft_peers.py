"""A cluster formed from a static Raft configuration in Consul's peers.json format
(``[cluster] raft_peers`` in scenario files, ``consim up --raft-peers FILE``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consim.cli import UsageError, _cluster_spec, build_parser
from consim.raft.types import Suffrage
from consim.scenario.model import ScenarioError, load_scenario
from consim.scenario.runner import run_scenario

PEERS = [
    {"id": "alpha", "address": "127.0.0.1:8300", "non_voter": False},
    {"id": "beta", "address": "127.0.0.2:8300", "non_voter": False},
    {"id": "gamma", "address": "127.0.0.3:8300", "non_voter": False},
    # another Raft node (not one of consim's servers): it shares the configuration
    {"id": "outside", "address": "127.0.0.9:8300", "non_voter": True},
]


def test_a_scenario_cluster_forms_from_a_peers_file(tmp_path: Path) -> None:
    (tmp_path / "peers.json").write_text(json.dumps(PEERS))
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        """seed = 3
[cluster]
datacenters = { dc1 = 3 }
raft_multiplier = 1
pre_vote = false
raft_peers = "peers.json"
[[step]]
wait = "leader"
within = "10s"
[[step]]
http = "GET /v1/operator/raft/configuration"
on = "follower"
expect = { status = 200, json = { "Servers.0.ID" = "alpha", "Servers.3.ID" = "outside", "Servers.3.Voter" = false } }
[[step]]
http = "PUT /v1/kv/k"
body = "v"
on = "leader"
expect = { status = 200, body = "true" }
"""
    )
    loaded = load_scenario(scenario)
    assert loaded.cluster.pre_vote is False and loaded.cluster.raft_peers is not None
    assert loaded.cluster.raft_peers.get("outside").suffrage is Suffrage.NONVOTER  # type: ignore[union-attr]
    result = run_scenario(loaded)
    assert [s.status for s in result.steps] == ["ok", "ok", "ok"], result.steps


def test_inline_peers_and_bad_ones(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(
        '[cluster]\nraft_peers = [{ id = 5, address = "127.0.0.1:8300" }]\npre_vote = "no"\n'
        '[[step]]\nwait = "leader"\n'
    )
    with pytest.raises(ScenarioError) as err:
        load_scenario(p)
    text = str(err.value)
    assert "raft_peers" in text and "json: cannot unmarshal number" in text
    assert "pre_vote" in text and "true or false" in text


def test_consim_up_takes_a_peers_file(tmp_path: Path) -> None:
    peers = tmp_path / "peers.json"
    peers.write_text(json.dumps(PEERS))
    args = build_parser().parse_args(["up", "--raft-peers", str(peers), "--no-pre-vote"])
    spec = _cluster_spec(args)
    assert spec.raft_peers is not None and [s.id for s in spec.raft_peers.servers] == [
        "alpha",
        "beta",
        "gamma",
        "outside",
    ]
    assert spec.raft_config().pre_vote is False
    peers.write_text('{"id": "x"}')
    with pytest.raises(UsageError, match="--raft-peers: .*cannot unmarshal object"):
        _cluster_spec(build_parser().parse_args(["up", "--raft-peers", str(peers)]))
