"""Scenario files: TOML read with ``tomllib``, validated completely before anything runs.

A scenario is a cluster description plus a list of ``[[step]]`` tables, each with exactly one
action key (``wait``, ``kill``, ``http``, ``consul``, ``assert``, ...). This module checks the file
and the cluster table; each step goes to its action (``consim.scenario.actions``), which checks its
own fields and returns its typed arguments. Every error names the file, the step number (1-based,
as a learner counts) and the field, and says what was expected::

    scenarios/x.toml: step 3: field 'within': expected a duration like "5s", got 5

The runner (``consim.scenario.runner``) never has to re-check a value's type.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consim.acl import ACLConfig, ACLConfigError
from consim.raft.config import snapshot_interval_error
from consim.raft.recovery import RecoveryError, parse_peers_json
from consim.raft.types import Configuration
from consim.scenario.actions import ACTIONS
from consim.scenario.base import (
    COMMON_KEYS,
    GROUP_TARGET,
    PARTITION_MEMBER,
    PLACEHOLDER,
    PLACEHOLDER_KINDS,
    ROLE_TARGETS,
    ActionArgs,
    Checker,
    ClusterSettings,
    ScenarioError,
    Step,
    Target,
    gossip_key,
    parse_duration,
    shown,
)
from consim.scenario.notes import check_note
from consim.spec import NetworkModel

__all__ = [
    "COMMON_KEYS",
    "GROUP_TARGET",
    "PARTITION_MEMBER",
    "PLACEHOLDER",
    "PLACEHOLDER_KINDS",
    "ROLE_TARGETS",
    "ActionArgs",
    "ClusterSettings",
    "Scenario",
    "ScenarioError",
    "Step",
    "Target",
    "load_scenario",
    "parse_duration",
    "parse_scenario",
    "shown",
]


@dataclass
class Scenario:
    path: Path
    name: str
    summary: str
    seed: int
    cluster: ClusterSettings
    steps: list[Step]


_TOP_KEYS = frozenset({"name", "summary", "seed", "cluster", "step", "acl"})
_CLUSTER_KEYS = frozenset(
    {
        "datacenters",
        "raft_multiplier",
        "encrypt",
        "raft_protocol",
        "rpc_hold_timeout",
        "snapshot_threshold",
        "snapshot_interval",
        "trailing_logs",
        "data_dir",
        "acl",
        "network",
        "pre_vote",
        "raft_peers",
        "tls",
    }
)
_NETWORK_KEYS = (
    "lan_latency",
    "lan_jitter",
    "wan_latency",
    "wan_jitter",
    "wan",
    "loss",
    "bandwidth",
)
_BANDWIDTH = re.compile(r"^(\d+(?:\.\d+)?)\s*(kbit|Mbit|Gbit|KB|MB|GB)/s$")
_BANDWIDTH_UNIT = {"kbit": 125.0, "Mbit": 125e3, "Gbit": 125e6, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raises :class:`ScenarioError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: not valid TOML: {exc}") from None
    return parse_scenario(raw, p)


def parse_scenario(raw: dict[str, Any], path: Path) -> Scenario:
    c = Checker(path, [], [])
    for key in raw:
        if key not in _TOP_KEYS:
            with c.collect():
                raise c.fail(key, f"unknown top-level field (expected one of {sorted(_TOP_KEYS)})")
    name, summary, seed = path.stem, "", 0
    with c.collect():
        name = c.string("name", raw.get("name", path.stem))
    with c.collect():
        summary = c.string("summary", raw.get("summary", ""))
    with c.collect():
        seed = c.integer("seed", raw.get("seed", 0))
    c.where = "[cluster]"
    cluster = _parse_cluster(c, raw.get("cluster", {}), raw.get("acl"))
    c.where = ""
    c.cluster = cluster
    c.servers = cluster.server_names()
    c.datacenters = [dc for dc, _ in cluster.datacenters]
    raw_steps = raw.get("step", [])
    steps = []
    if not isinstance(raw_steps, list) or not raw_steps:
        with c.collect():
            raise c.fail("step", "expected at least one [[step]] table")
    else:
        for i, raw_step in enumerate(raw_steps, start=1):
            c.where = f"step {i}"
            with c.collect():
                steps.append(_parse_step(c, i, raw_step))
    c.where = ""
    c.raise_collected()
    return Scenario(path, name, summary, seed, cluster, steps)


def _parse_cluster(c: Checker, obj: Any, top_acl: Any) -> ClusterSettings:
    s = ClusterSettings()
    if not isinstance(obj, dict):
        with c.collect():
            raise c.fail(None, "expected a [cluster] table")
        return s
    for key in obj:
        if key not in _CLUSTER_KEYS:
            with c.collect():
                raise c.fail(key, f"unknown field (expected one of {sorted(_CLUSTER_KEYS)})")
    if "datacenters" in obj:
        before = len(c.errors)
        with c.collect():
            s.datacenters = _datacenters(c, obj["datacenters"])
        if len(c.errors) > before:
            # Server names follow from the datacenters: checking steps against a guess would
            # only add false errors.
            c.raise_collected()
    with c.collect():
        if "raft_multiplier" in obj:
            s.raft_multiplier = c.number("raft_multiplier", obj["raft_multiplier"], 0.1, 10)
    with c.collect():
        if "raft_protocol" in obj:
            v = obj["raft_protocol"]
            if v not in (2, 3) or isinstance(v, bool):
                raise c.expected("raft_protocol", "2 or 3", v)
            s.raft_protocol = v
    with c.collect():
        if "rpc_hold_timeout" in obj:
            s.rpc_hold_timeout = c.duration("rpc_hold_timeout", obj["rpc_hold_timeout"])[0]
    with c.collect():
        if "snapshot_interval" in obj:
            # "0s": check after every apply (consim's own; Consul's default is 30s)
            seconds, text = c.duration("snapshot_interval", obj["snapshot_interval"])
            error = snapshot_interval_error(seconds)
            if error is not None:
                raise c.expected("snapshot_interval", 'a duration of "0s" or at least "5ms"', text)
            s.snapshot_interval = seconds
    with c.collect():
        if "encrypt" in obj:
            s.encrypt = gossip_key(c, "encrypt", obj["encrypt"])
    for key in ("snapshot_threshold", "trailing_logs"):
        with c.collect():
            if key in obj:
                setattr(s, key, c.integer(key, obj[key], 1 if key == "snapshot_threshold" else 0))
    with c.collect():
        if "data_dir" in obj:
            if obj["data_dir"] != "tmp":
                raise c.expected(
                    "data_dir", '"tmp" (a fresh temporary directory per run)', obj["data_dir"]
                )
            s.data_dir = "tmp"
    with c.collect():
        if "network" in obj:
            s.network = _network(c, obj["network"], [dc for dc, _ in s.datacenters])
    with c.collect():
        if "pre_vote" in obj:
            if not isinstance(obj["pre_vote"], bool):
                raise c.expected("pre_vote", "true or false", obj["pre_vote"])
            s.pre_vote = obj["pre_vote"]
    with c.collect():
        if "raft_peers" in obj:
            s.raft_peers = _raft_peers(c, obj["raft_peers"])
    if "tls" in obj:
        from consim.tls.config import TLSConfig, TLSConfigError

        try:
            s.tls = TLSConfig.from_dict(
                obj["tls"],
                datacenters=[dc for dc, _ in s.datacenters],
                base=c.path.parent,
                source=f"{c.path}: [cluster.tls]",
            )
        except TLSConfigError as exc:
            c.errors.append(str(exc))
    acl_obj = obj.get("acl", top_acl)
    if acl_obj is not None:
        try:
            s.acl = ACLConfig.from_dict(acl_obj, source=f"{c.path}: [acl]")
        except ACLConfigError as exc:
            c.errors.append(str(exc))
    return s


def _network(c: Checker, obj: Any, datacenters: list[str]) -> NetworkModel:
    """``[cluster.network]``: one-way ``lan_latency``/``lan_jitter``/``wan_latency``/
    ``wan_jitter`` durations, ``wan = { "dc1:dc2" = "80ms" }`` per pair, ``loss`` on every link."""
    obj = c.table("network", obj, '{ lan_latency = "2ms", wan_latency = "40ms" }', _NETWORK_KEYS)
    values: dict[str, Any] = {}
    for k in ("lan_latency", "lan_jitter", "wan_latency", "wan_jitter"):
        if k in obj:
            values[k] = c.duration(f"network.{k}", obj[k])[0]
    if "loss" in obj:
        values["loss"] = c.number("network.loss", obj["loss"], 0.0, 0.99)
    if "bandwidth" in obj:
        m = _BANDWIDTH.match(obj["bandwidth"]) if isinstance(obj["bandwidth"], str) else None
        if m is None or float(m.group(1)) <= 0:
            raise c.expected(
                "network.bandwidth", 'a rate like "100Mbit/s" or "10MB/s"', obj["bandwidth"]
            )
        values["bandwidth"] = float(m.group(1)) * _BANDWIDTH_UNIT[m.group(2)]
    pairs = []
    wan = obj.get("wan", {})
    if not isinstance(wan, dict):
        raise c.expected("network.wan", 'a table like { "dc1:dc2" = "80ms" }', wan)
    for key, latency in wan.items():
        a, sep, b = key.partition(":")
        if not sep or a not in datacenters or b not in datacenters or a == b:
            raise c.expected(
                f"network.wan.{key}", f'two datacenters of {datacenters} like "dc1:dc2"', key
            )
        pairs.append((a, b, c.duration(f"network.wan.{key}", latency)[0]))
    return NetworkModel(wan=tuple(pairs), **values)


def _raft_peers(c: Checker, value: Any) -> Configuration:
    """``raft_peers = "peers.json"`` (next to the scenario file) or the entries inline:
    ``raft_peers = [{ id = "...", address = "127.0.0.1:8300", non_voter = false }, ...]``."""
    if isinstance(value, str):
        path = c.path.parent / value
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise c.fail("raft_peers", f"cannot read {path}: {exc.strerror or exc}") from None
    elif isinstance(value, list):
        text = json.dumps(value)
    else:
        raise c.expected("raft_peers", "a peers.json path or a list of {id, address}", value)
    try:
        configuration = parse_peers_json(text, 3)
    except RecoveryError as exc:
        raise c.fail("raft_peers", str(exc)) from None
    if not configuration.servers:
        raise c.fail("raft_peers", "no servers in the configuration")
    return configuration


def _datacenters(c: Checker, dcs: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(dcs, dict) or not dcs:
        raise c.expected("datacenters", "a table like { dc1 = 3 }", dcs)
    out = []
    for dc, n in dcs.items():
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 9:
            raise c.expected(f"datacenters.{dc}", "a server count from 1 to 9", n)
        out.append((dc, n))
    if len(out) > 9:
        raise c.fail("datacenters", "at most 9 datacenters")
    return tuple(out)


def _parse_step(c: Checker, number: int, obj: Any) -> Step:
    if not isinstance(obj, dict):
        raise c.fail(None, "expected a table")
    actions = [k for k in obj if k in ACTIONS and k != "note"]
    if not actions:
        if "note" in obj:
            actions = ["note"]
        else:
            raise c.fail(
                None,
                "expected exactly one action ("
                + ", ".join(k for k in ACTIONS)
                + f"), got none (keys: {', '.join(obj) or 'none'})",
            )
    if len(actions) > 1:
        raise c.fail(None, f"expected exactly one action, got {' and '.join(actions)}")
    action = actions[0]
    # An action takes its own keys; ``note`` and ``dc`` go with every step.
    allowed = ACTIONS[action].keys | COMMON_KEYS | {action}
    for key in obj:
        if key not in allowed:
            raise c.fail(
                key, f"not allowed in a '{action}' step (allowed: {', '.join(sorted(allowed))})"
            )
    note = c.string("note", obj["note"]) if "note" in obj else None
    if note is not None:
        check_note(c, note)
    dc = c.dc("dc", obj["dc"]) if "dc" in obj else None
    args = ACTIONS[action].parse(c, obj[action], obj, dc)
    return Step(number, action, args, note=note, dc=dc)
