"""Scenario files: TOML read with ``tomllib``, validated completely before anything runs.

A scenario is a cluster description plus a list of ``[[step]]`` tables, each with exactly one
action key (``wait``, ``kill``, ``http``, ``consul``, ``assert``, ...). Every error names the
file, the step number (1-based, as a learner counts) and the field, and says what was expected::

    scenarios/x.toml: step 3: field 'within': expected a duration like "5s", got 5

Validation produces plain dataclasses; the runner (``consim.scenario.runner``) never has to
re-check a value's type.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consim.acl import ACLConfig, ACLConfigError

# Each action and the extra keys it accepts (``note`` and ``dc`` are accepted by every step).
ACTION_KEYS: dict[str, frozenset[str]] = {
    "wait": frozenset({"within", "count", "member", "status", "pool", "key", "contains"}),
    "kill": frozenset(),
    "restart": frozenset(),
    "stop": frozenset(),
    "pause": frozenset(),
    "resume": frozenset(),
    "isolate": frozenset(),
    "partition": frozenset(),
    "block": frozenset({"to"}),
    "heal": frozenset(),
    "loss": frozenset(),
    "delay": frozenset(),
    "http": frozenset({"on", "body", "headers", "token", "expect"}),
    "consul": frozenset({"on", "expect"}),
    "peers_json": frozenset(),
    "load": frozenset({"expect"}),
    "check": frozenset({"expect"}),
    "sleep": frozenset(),
    "assert": frozenset({"within"}),
    "note": frozenset(),
}
COMMON_KEYS = frozenset({"note", "dc"})
WAIT_CONDITIONS = (
    "leader",
    "new-leader",
    "no-leader",
    "voters",
    "member-status",
    "keyring-converged",
    "log",
)
MEMBER_STATUSES = ("alive", "failed", "left")
GOSSIP_POOLS = ("lan", "wan")
ROLE_TARGETS = ("leader", "follower", "old-leader", "last-killed", "any")
# Names a group: every running server of the datacenter (kill/restart/stop/peers_json only).
GROUP_TARGET = "survivors"
# "partition[0][1]": the second server of the first group of the last partition step, as
# resolved when that step ran (roles change later; this name stays put).
PARTITION_MEMBER = re.compile(r"^partition\[(\d+)\]\[(\d+)\]$")
HTTP_METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS")
CONSUL_COMMANDS = (
    ("operator", "raft", "list-peers"),
    ("operator", "raft", "remove-peer"),
    ("operator", "raft", "transfer-leader"),
    ("kv", "get"),
    ("kv", "put"),
    ("keyring",),
    ("members",),
    ("force-leave",),
)
ASSERT_KEYS = frozenset(
    {
        "leader",
        "leader_not",
        "no_leader",
        "term_increased",
        "logs_equal",
        "commit_converged",
        "state",
        "voters",
        "kv",
    }
)
# "not-leader": running and not leader. A deposed leader cut off in a minority keeps starting
# pre-vote elections (hashicorp/raft stays in the candidate state), so follower and candidate are
# both what Consul shows there; what matters to the learner is that it stopped leading.
SERVER_STATES = ("leader", "follower", "candidate", "not-leader", "down", "paused")

# "{rpc:dc1-s5}" in a consul command, an HTTP path/body or an expectation: that server's address,
# filled in when the step runs (live runs may put a cluster on another 127.0.N.x block).
PLACEHOLDER = re.compile(r"\{(rpc|host|http):([^{}]+)\}")
PLACEHOLDER_KINDS = {"rpc": "IP:8300", "host": "IP", "http": "IP:http-port"}

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ScenarioError(ValueError):
    """A scenario file that cannot run; the message is complete (file, step, field, why).

    ``errors`` lists every problem found (one line each); the message is those lines joined.
    """

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        self.errors = errors if errors is not None else [message]
        super().__init__(message)


def parse_duration(text: str) -> float:
    """Go's duration syntax as Consul uses it: ``"5s"``, ``"500ms"``, ``"1m30s"``."""
    if not _DURATION.match(text):
        raise ValueError(text)
    return sum(float(n) * _UNIT[u] for n, u in _DURATION_PART.findall(text))


def shown(value: Any) -> str:
    """A value as it would be written in TOML, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Target):
        return json.dumps(str(value))
    if isinstance(value, dict) and value and all(isinstance(v, str) for v in value.values()):
        return "{ " + ", ".join(f"{k} = {json.dumps(str(v))}" for k, v in value.items()) + " }"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


@dataclass(frozen=True)
class Target:
    """A server name (``dc1-s2``) or a role resolved when the step runs."""

    name: str
    dc: str | None = None

    @property
    def is_role(self) -> bool:
        return (
            self.name in ROLE_TARGETS
            or self.name in ("others", GROUP_TARGET)
            or PARTITION_MEMBER.match(self.name) is not None
        )

    def __str__(self) -> str:
        return self.name if self.dc is None or not self.is_role else f"{self.name}@{self.dc}"


@dataclass
class Step:
    """One validated step. ``args`` holds the action's checked, normalized arguments."""

    number: int
    action: str
    args: dict[str, Any]
    note: str | None = None
    dc: str | None = None

    def describe(self) -> str:
        """A short human label, e.g. ``kill leader`` or ``GET /v1/kv/x on dc1-s1``."""
        a = self.args
        if self.action == "wait":
            extra = f" {a['count']}" if a.get("count") is not None else ""
            if a["condition"] == "member-status":
                extra = f" {a['member']} {a['status']} ({a['pool'].upper()})"
            elif a.get("key"):
                extra = f" on {a['key']}"
            elif a["condition"] == "log":
                extra = f" {a['contains']!r}"
            return f"wait {a['condition']}{extra} within {a['within_text']}"
        if self.action in ("kill", "restart", "stop", "pause", "resume", "isolate"):
            return f"{self.action} {a['target']}"
        if self.action == "partition":
            return "partition " + " | ".join(
                ",".join(str(t) for t in group) for group in a["groups"]
            )
        if self.action == "block":
            return f"block {a['target']} -> {a['to']}"
        if self.action == "heal":
            return "heal"
        if self.action in ("loss", "delay"):
            return f"{self.action} {a['from']} -> {a['to']} {a['value']}"
        if self.action == "http":
            return f"{a['method']} {a['path']} on {a['on']}"
        if self.action == "consul":
            return f"consul {' '.join(a['argv'])} on {a['on']}"
        if self.action == "peers_json":
            return f"write peers.json on {', '.join(str(t) for t in a['on'])}"
        if self.action == "load":
            bg = " in the background" if a.get("background") else ""
            return (
                f"load {a['op']} {a['consistency']} {a['rate']:g}/s for {a['duration_text']} "
                f"on {a['on']}{bg}"
            )
        if self.action == "check":
            return (
                f"check {a['consistency']} reads, {a['clients']} clients, nemesis "
                f"{','.join(a['nemesis']) or 'none'} for {a['duration_text']}"
            )
        if self.action == "sleep":
            return f"sleep {a['text']}"
        if self.action == "assert":
            return "assert " + ", ".join(f"{k}={shown(v)}" for k, v in a["checks"].items())
        return self.action


@dataclass
class ClusterSettings:
    datacenters: tuple[tuple[str, int], ...] = (("dc1", 3),)
    raft_multiplier: float = 1.0
    raft_protocol: int = 3
    rpc_hold_timeout: float = 7.0
    encrypt: str | None = None
    snapshot_threshold: int | None = None
    trailing_logs: int | None = None
    # "tmp": a fresh temporary directory per run (needed by peers_json steps).
    data_dir: str | None = None
    acl: ACLConfig = field(default_factory=ACLConfig)

    def server_names(self) -> list[str]:
        return [f"{dc}-s{k}" for dc, n in self.datacenters for k in range(1, n + 1)]


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
        "trailing_logs",
        "data_dir",
        "acl",
    }
)


class _Checker:
    """Builds error messages with the file / step / field prefix."""

    def __init__(self, path: Path, servers: list[str], datacenters: list[str]) -> None:
        self.path = path
        self.servers = servers
        self.datacenters = datacenters
        self.where = ""
        self.errors: list[str] = []

    @contextlib.contextmanager
    def collect(self) -> Iterator[None]:
        """Record an error and go on with the next field or step, so a file's every error is
        reported at once (each part stops at its own first error)."""
        try:
            yield
        except ScenarioError as exc:
            self.errors.extend(exc.errors)

    def raise_collected(self) -> None:
        if self.errors:
            raise ScenarioError("\n".join(self.errors), list(self.errors))

    def fail(self, fieldname: str | None, why: str) -> ScenarioError:
        parts = [str(self.path)]
        if self.where:
            parts.append(self.where)
        if fieldname is not None:
            parts.append(f"field '{fieldname}'")
        return ScenarioError(": ".join(parts) + ": " + why)

    def expected(self, fieldname: str, what: str, got: Any) -> ScenarioError:
        return self.fail(fieldname, f"expected {what}, got {shown(got)}")

    def string(self, fieldname: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.expected(fieldname, "a string", value)
        return value

    def duration(self, fieldname: str, value: Any) -> tuple[float, str]:
        if not isinstance(value, str):
            raise self.expected(fieldname, 'a duration like "5s"', value)
        try:
            return parse_duration(value), value
        except ValueError:
            raise self.expected(fieldname, 'a duration like "5s"', value) from None

    def integer(self, fieldname: str, value: Any, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.expected(fieldname, f"an integer >= {minimum}", value)
        return value

    def number(self, fieldname: str, value: Any, lo: float, hi: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.expected(fieldname, "a number", value)
        if value < lo or (hi is not None and value > hi):
            rng = f"between {lo:g} and {hi:g}" if hi is not None else f">= {lo:g}"
            raise self.expected(fieldname, f"a number {rng}", value)
        return float(value)

    def dc(self, fieldname: str, value: Any) -> str:
        text = self.string(fieldname, value)
        if text not in self.datacenters:
            raise self.expected(fieldname, f"one of the datacenters {self.datacenters}", value)
        return text

    def placeholders(self, fieldname: str, value: Any) -> None:
        """Every ``{rpc:NAME}`` in ``value`` (strings, nested lists/tables) names a server or a
        role (resolved when the step runs)."""
        if isinstance(value, str):
            for m in PLACEHOLDER.finditer(value):
                if m.group(2) not in self.servers and m.group(2) not in ROLE_TARGETS:
                    raise self.fail(
                        fieldname,
                        f"{m.group(0)} names no server (expected one of "
                        f"{', '.join(self.servers)} or a role: {', '.join(ROLE_TARGETS)})",
                    )
        elif isinstance(value, dict):
            for v in value.values():
                self.placeholders(fieldname, v)
        elif isinstance(value, list):
            for v in value:
                self.placeholders(fieldname, v)

    def target(
        self,
        fieldname: str,
        value: Any,
        dc: str | None,
        *,
        others: bool = False,
        group: bool = False,
    ) -> Target:
        roles = ROLE_TARGETS + (("others",) if others else ()) + ((GROUP_TARGET,) if group else ())
        if not isinstance(value, str) or (
            value not in self.servers and value not in roles and not PARTITION_MEMBER.match(value)
        ):
            names = ", ".join(self.servers)
            raise self.expected(
                fieldname,
                f"a server name ({names}), one of {', '.join(roles)} or partition[G][N]",
                value,
            )
        return Target(value, dc)


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
    c = _Checker(path, [], [])
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
                steps.append(_parse_step(c, i, raw_step, cluster))
    c.where = ""
    c.raise_collected()
    return Scenario(path, name, summary, seed, cluster, steps)


def _parse_cluster(c: _Checker, obj: Any, top_acl: Any) -> ClusterSettings:
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
        if "encrypt" in obj:
            s.encrypt = _gossip_key(c, "encrypt", obj["encrypt"])
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
    acl_obj = obj.get("acl", top_acl)
    if acl_obj is not None:
        try:
            s.acl = ACLConfig.from_dict(acl_obj, source=f"{c.path}: [acl]")
        except ACLConfigError as exc:
            c.errors.append(str(exc))
    return s


def _datacenters(c: _Checker, dcs: Any) -> tuple[tuple[str, int], ...]:
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


def _parse_step(c: _Checker, number: int, obj: Any, cluster: ClusterSettings) -> Step:
    if not isinstance(obj, dict):
        raise c.fail(None, "expected a table")
    actions = [k for k in obj if k in ACTION_KEYS and k != "note"]
    if not actions:
        if "note" in obj:
            actions = ["note"]
        else:
            raise c.fail(
                None,
                "expected exactly one action ("
                + ", ".join(k for k in ACTION_KEYS)
                + f"), got none (keys: {', '.join(obj) or 'none'})",
            )
    if len(actions) > 1:
        raise c.fail(None, f"expected exactly one action, got {' and '.join(actions)}")
    action = actions[0]
    allowed = ACTION_KEYS[action] | COMMON_KEYS | {action}
    for key in obj:
        if key not in allowed:
            raise c.fail(
                key, f"not allowed in a '{action}' step (allowed: {', '.join(sorted(allowed))})"
            )
    note = c.string("note", obj["note"]) if "note" in obj else None
    dc = c.dc("dc", obj["dc"]) if "dc" in obj else None
    value = obj[action]
    parse = _ACTION_PARSERS[action]
    args = parse(c, value, obj, dc, cluster)
    return Step(number, action, args, note=note, dc=dc)


def _p_wait(
    c: _Checker, value: Any, obj: dict[str, Any], dc: str | None, cl: Any
) -> dict[str, Any]:
    if value not in WAIT_CONDITIONS:
        raise c.expected("wait", "one of " + ", ".join(f'"{w}"' for w in WAIT_CONDITIONS), value)
    within, within_text = c.duration("within", obj.get("within", "10s"))
    args: dict[str, Any] = {"condition": value, "within": within, "within_text": within_text}
    if value == "voters":
        if "count" not in obj:
            raise c.fail("count", 'required with wait = "voters"')
        args["count"] = c.integer("count", obj["count"], 1)
    elif "count" in obj:
        raise c.fail("count", 'only allowed with wait = "voters"')
    if value == "member-status":
        if "member" not in obj:
            raise c.fail("member", 'required with wait = "member-status": the server to watch')
        args["member"] = c.target("member", obj["member"], dc)
        status = obj.get("status")
        if status not in MEMBER_STATUSES:
            raise c.expected("status", '"alive", "failed" or "left"', status)
        args["status"] = status
        pool = obj.get("pool", "lan")
        if pool not in GOSSIP_POOLS:
            raise c.expected("pool", '"lan" or "wan"', pool)
        args["pool"] = pool
    else:
        for k in ("member", "status", "pool"):
            if k in obj:
                raise c.fail(k, 'only allowed with wait = "member-status"')
    if value == "keyring-converged":
        args["key"] = _gossip_key(c, "key", obj["key"]) if "key" in obj else None
    elif "key" in obj:
        raise c.fail("key", 'only allowed with wait = "keyring-converged"')
    if value == "log":
        if "contains" not in obj:
            raise c.fail("contains", 'required with wait = "log": the text of a log line')
        args["contains"] = c.string("contains", obj["contains"])
        if not args["contains"]:
            raise c.expected("contains", "a non-empty string", "")
    elif "contains" in obj:
        raise c.fail("contains", 'only allowed with wait = "log"')
    return args


def _gossip_key(c: _Checker, fieldname: str, value: Any) -> str:
    """A gossip encryption key: base64 of 16, 24 or 32 bytes (memberlist's rule)."""
    import base64
    import binascii

    text = c.string(fieldname, value)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise c.expected(fieldname, "a base64 gossip key", text) from None
    if len(key) not in (16, 24, 32):
        raise c.fail(fieldname, "key size must be 16, 24 or 32 bytes")
    return text


def _p_target(action: str) -> Any:
    def parse(
        c: _Checker, value: Any, obj: dict[str, Any], dc: str | None, cl: Any
    ) -> dict[str, Any]:
        group = action in ("kill", "restart", "stop")
        return {"target": c.target(action, value, dc, group=group)}

    return parse


def _p_block(
    c: _Checker, value: Any, obj: dict[str, Any], dc: str | None, cl: Any
) -> dict[str, Any]:
    if "to" not in obj:
        raise c.fail("to", "required: the server whose incoming traffic from 'block' is dropped")
    return {"target": c.target("block", value, dc), "to": c.target("to", obj["to"], dc)}


def _p_partition(
    c: _Checker, value: Any, obj: dict[str, Any], dc: str | None, cl: Any
) -> dict[str, Any]:
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(g, list) for g in value):
        raise c.expected(
            "partition", 'at least two groups like [["dc1-s1"], ["dc1-s2", "dc1-s3"]]', value
        )
    groups = []
    for gi, group in enumerate(value):
        if not group:
            raise c.fail(f"partition[{gi}]", "expected a non-empty group")
        groups.append([c.target(f"partition[{gi}]", t, dc, others=True) for t in group])
    named = [t.name for g in groups for t in g if not t.is_role]
    if len(named) != len(set(named)):
        raise c.fail("partition", "a server appears in more than one group")
    if sum(1 for g in groups for t in g if t.name == "others") > 1:
        raise c.fail("partition", '"others" may appear only once')
    return {"groups": groups}


def _p_heal(
    c: _Checker, value: Any, obj: dict[str, Any], dc: str | None, cl: Any
) -> dict[str, Any]:
    if value is not True:
        raise c.expected("heal", "true", value)
    return {}


def _p_link(kind: str) -> Any:
    key = "probability" if kind == "loss" else "seconds"

    def parse(
        c: _Checker, value: Any, obj: dict[str, Any], dc: str | None, cl: Any
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise c.expected(
                kind, f'a table like {{ from = "dc1-s1", to = "*", {key} = ... }}', value
            )
        for k in value:
            if k not in ("from", "to", key):
                raise c.fail(f"{kind}.{k}", f"unknown field (expected from, to, {key})")
        ends = {}
        for end in ("from", "to"):
            v = value.get(end, "*")
            ends[end] = "*" if v == "*" else c.target(f"{kind}.{end}", v, dc)
        if key not in value:
            raise c.fail(f"{kind}.{key}", "required")
        if kind == "loss":
            amount = c.number(f"{kind}.{key}", value[key], 0.0, 1.0)
        else:
            v = value[key]
            amount = (
                c.duration(f"{kind}.{key}", v)[0]
                if isinstance(v, str)
                else c.number(f"{kind}.{key}", v, 0.0)
            )
        return {"from": ends["from"], "to": ends["to"], "value": amount}

    return parse


def _p_http(
    c: _Checker, value: Any, obj: dict[str, Any], dc: str | None, cl: Any
) -> dict[str, Any]:
    text = c.string("http", value)
    method, _, path = text.strip().partition(" ")
    path = path.strip()
    if method.upper() not in HTTP_METHODS or method != method.upper() or not path.startswith("/"):
        raise c.expected("http", 'a request like "GET /v1/status/leader"', value)
    body = obj.get("body", "")
    if not isinstance(body, str):
        raise c.expected("body", "a string", body)
    headers = obj.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise c.expected("headers", "a table of strings", headers)
    token = c.string("token", obj["token"]) if "token" in obj else None
    expect = _p_http_expect(c, obj.get("expect", {}))
    c.placeholders("http", path)
    c.placeholders("body", body)
    c.placeholders("expect", expect)
    return {
        "method": method,
        "path": path,
        "on": c.target("on", obj.get("on", "any"), dc),
        "body": body,
        "headers": dict(headers),
        "token": token,
        "expect": expect,
    }


def _p_http_expect(c: _Checker, expect: Any) -> dict[str, Any]:
    if not isinstance(expect, dict):
        raise c.expected("expect", "a table like { status = 200 }", expect)
    out: dict[str, Any] = {}
    for k, v in expect.items():
        f = f"expect.{k}"
        if k == "status":
            out[k] = c.integer(f, v, 100)
        elif k == "body":
            out[k] = c.string(f, v)
        elif k in ("json", "headers"):
            if not isinstance(v, dict):
                raise c.expected(f, "a table", v)
            out[k] = dict(v)
        elif k == "leaders":
            out[k] = c.integer(f, v, 0)
        elif k == "body_contains":
            out[k] = c.string(f, v)
        else:
            raise c.fail(
                f,
                "unknown expectation (expected status, body, body_contains, json, headers, leaders)",
            )
    return out


def _p_consul(
    c: _Checker, value: Any, obj: dict[str, Any], dc: str | None, cl: Any
) -> dict[str, Any]:
    text = c.string("consul", value)
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise c.expected("consul", f"a command line ({exc})", value) from None
    if argv and argv[0] == "consul":
        argv = argv[1:]
    if not any(tuple(argv[: len(cmd)]) == cmd for cmd in CONSUL_COMMANDS):
        known = ", ".join(f'"{" ".join(cmd)}"' for cmd in CONSUL_COMMANDS)
        raise c.expected("consul", f"one of {known} with its flags", value)
    if any(a.startswith(("-http-addr", "--http-addr")) for a in argv):
        raise c.fail("consul", "-http-addr is chosen by 'on' inside a scenario")
    c.placeholders("consul", argv)
    expect = obj.get("expect", {})
    if not isinstance(expect, dict):
        raise c.expected("expect", "a table like { exit = 0 }", expect)
    out: dict[str, Any] = {}
    for k, v in expect.items():
        if k == "exit":
            out[k] = c.integer("expect.exit", v, 0)
        elif k in ("stdout_contains", "stdout_lacks", "stderr_contains", "stdout"):
            if isinstance(v, str):
                v = [v] if k != "stdout" else v
            if k != "stdout" and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
                raise c.expected(f"expect.{k}", "a string or a list of strings", v)
            out[k] = v
        else:
            raise c.fail(
                f"expect.{k}",
                "unknown expectation (expected exit, stdout, stdout_contains, stdout_lacks, "
                "stderr_contains)",
            )
    c.placeholders("expect", out)
    return {"argv": argv, "on": c.target("on", obj.get("on", "any"), dc), "expect": out}


def _p_peers_json(
    c: _Checker, value: Any, obj: dict[str, Any], dc: str | None, cl: ClusterSettings
) -> dict[str, Any]:
    if cl.data_dir is None:
        raise c.fail("peers_json", 'needs a data directory: set [cluster] data_dir = "tmp"')
    if not isinstance(value, dict):
        raise c.expected(
            "peers_json", 'a table like { on = "dc1-s1", servers = ["dc1-s1"] }', value
        )
    for k in value:
        if k not in ("on", "servers"):
            raise c.fail(f"peers_json.{k}", "unknown field (expected on, servers)")
    on = value.get("on")
    on_list = on if isinstance(on, list) else [on]
    targets = [c.target("peers_json.on", t, dc, group=True) for t in on_list]
    servers = value.get("servers")
    if servers in ("all-running", GROUP_TARGET):
        server_list: Any = "all-running"
    elif isinstance(servers, list) and servers:
        server_list = [c.target("peers_json.servers", s, dc) for s in servers]
    else:
        raise c.expected(
            "peers_json.servers", 'a list of servers, "survivors" or "all-running"', servers
        )
    return {"on": targets, "servers": server_list}


def _p_load(
    c: _Checker, value: Any, obj: dict[str, Any], dc: str | None, cl: Any
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise c.expected("load", 'a table like { rate = 50, duration = "5s", op = "write" }', value)
    known = ("rate", "duration", "op", "consistency", "on", "key", "background")
    for k in value:
        if k not in known:
            raise c.fail(f"load.{k}", f"unknown field (expected {', '.join(known)})")
    rate = c.number("load.rate", value.get("rate", 10), 0.1, 1000)
    duration, duration_text = c.duration("load.duration", value.get("duration", "1s"))
    op = value.get("op", "write")
    if op not in ("write", "read"):
        raise c.expected("load.op", '"write" or "read"', op)
    consistency = value.get("consistency", "default")
    if consistency not in ("default", "stale", "consistent"):
        raise c.expected("load.consistency", '"default", "stale" or "consistent"', consistency)
    if op == "write" and consistency != "default":
        raise c.fail(
            "load.consistency", "writes always go to the leader; only reads take a consistency"
        )
    key = c.string("load.key", value.get("key", "load"))
    background = value.get("background", False)
    if not isinstance(background, bool):
        raise c.expected("load.background", "true or false", background)
    expect = obj.get("expect", {})
    if not isinstance(expect, dict) or any(k != "min_ok" for k in expect):
        raise c.expected(
            "expect", "a table like { min_ok = 0.9 } (fraction of requests answered 200)", expect
        )
    min_ok = c.number("expect.min_ok", expect["min_ok"], 0.0, 1.0) if "min_ok" in expect else None
    return {
        "rate": rate,
        "duration": duration,
        "duration_text": duration_text,
        "op": op,
        "consistency": consistency,
        "on": c.target("load.on", value.get("on", "any"), dc),
        "key": key,
        "min_ok": min_ok,
        "background": background,
    }


def _p_check(
    c: _Checker, value: Any, obj: dict[str, Any], dc: str | None, cl: Any
) -> dict[str, Any]:
    """``check = { clients = 5, duration = "20s", consistency = "default", nemesis = "pause" }``:
    a consim check campaign on the scenario's cluster; ``expect = { verdict = "valid" }``."""
    from consim.check.nemesis import parse_nemesis

    if not isinstance(value, dict):
        raise c.expected(
            "check", 'a table like { duration = "20s", nemesis = "partition,kill" }', value
        )
    known = ("clients", "keys", "rate", "duration", "consistency", "nemesis", "interval", "timeout")
    for k in value:
        if k not in known:
            raise c.fail(f"check.{k}", f"unknown field (expected {', '.join(known)})")
    consistency = value.get("consistency", "default")
    if consistency not in ("default", "stale", "consistent"):
        raise c.expected("check.consistency", '"default", "stale" or "consistent"', consistency)
    nemesis_text = value.get("nemesis", "partition,kill,pause")
    if not isinstance(nemesis_text, str):
        raise c.expected("check.nemesis", 'a string like "partition,kill"', nemesis_text)
    try:
        nemesis = parse_nemesis(nemesis_text)
    except ValueError as exc:
        raise c.fail("check.nemesis", str(exc)) from None
    duration, duration_text = c.duration("check.duration", value.get("duration", "20s"))
    interval, _ = c.duration("check.interval", value.get("interval", "5s"))
    timeout, _ = c.duration("check.timeout", value.get("timeout", "10s"))
    expect = obj.get("expect", {})
    if not isinstance(expect, dict) or any(k not in ("verdict", "live") for k in expect):
        raise c.expected("expect", 'a table like { verdict = "valid" }', expect)
    verdict = expect.get("verdict", "valid")
    if verdict not in ("valid", "invalid", "any"):
        raise c.expected("expect.verdict", '"valid", "invalid" or "any"', verdict)
    # Live, whether a window shows depends on real timing: `live = "any"` reports the verdict
    # without failing the step (the Raft and gossip invariants must still hold).
    live_verdict = expect.get("live", verdict)
    if live_verdict not in ("valid", "invalid", "any"):
        raise c.expected("expect.live", '"valid", "invalid" or "any"', live_verdict)
    if duration <= 0 or interval <= 0 or timeout <= 0:
        raise c.fail("check", "duration, interval and timeout must be more than 0s")
    return {
        "clients": c.integer("check.clients", value.get("clients", 5), 1),
        "keys": c.integer("check.keys", value.get("keys", 3), 1),
        "rate": c.number("check.rate", value.get("rate", 10), 0.1, 1000),
        "duration": duration,
        "duration_text": duration_text,
        "consistency": consistency,
        "nemesis": nemesis,
        "interval": interval,
        "timeout": timeout,
        "verdict": verdict,
        "live_verdict": live_verdict,
    }


def _p_sleep(
    c: _Checker, value: Any, obj: dict[str, Any], dc: str | None, cl: Any
) -> dict[str, Any]:
    seconds, text = c.duration("sleep", value)
    return {"seconds": seconds, "text": text}


def _p_note(
    c: _Checker, value: Any, obj: dict[str, Any], dc: str | None, cl: Any
) -> dict[str, Any]:
    c.string("note", value)
    return {}


def _p_assert(
    c: _Checker, value: Any, obj: dict[str, Any], dc: str | None, cl: Any
) -> dict[str, Any]:
    if not isinstance(value, dict) or not value:
        raise c.expected("assert", 'a table like { leader = "dc1-s2" }', value)
    checks: dict[str, Any] = {}
    for k, v in value.items():
        f = f"assert.{k}"
        if k not in ASSERT_KEYS:
            raise c.fail(f, f"unknown assertion (expected one of {', '.join(sorted(ASSERT_KEYS))})")
        if k in ("leader", "leader_not"):
            checks[k] = c.target(f, v, dc)
        elif k in ("no_leader", "term_increased", "logs_equal", "commit_converged"):
            if v is not True:
                raise c.expected(f, "true", v)
            checks[k] = True
        elif k == "state":
            if not isinstance(v, dict) or not v:
                raise c.expected(f, 'a table like { "dc1-s1" = "leader" }', v)
            states = {}
            for name, state in v.items():
                target = c.target(f"{f}.{name}", name, dc)
                if state not in SERVER_STATES:
                    raise c.expected(f"{f}.{name}", "one of " + ", ".join(SERVER_STATES), state)
                states[target] = state
            checks[k] = states
        elif k == "voters":
            checks[k] = c.integer(f, v, 0)
        elif k == "kv":
            # Read straight from each server's state machine: { key = "x", value = "y", on = [...] }.
            if not isinstance(v, dict) or "key" not in v:
                raise c.expected(f, 'a table like { key = "k", value = "v" }', v)
            on = v.get("on", "all-running")
            checks[k] = {
                "key": c.string(f"{f}.key", v["key"]),
                "value": None if "value" not in v else c.string(f"{f}.value", v["value"]),
                "on": on
                if on == "all-running"
                else [c.target(f"{f}.on", t, dc) for t in (on if isinstance(on, list) else [on])],
            }
    within, within_text = c.duration("within", obj.get("within", "0s"))
    return {"checks": checks, "within": within, "within_text": within_text}


_ACTION_PARSERS: dict[str, Any] = {
    "wait": _p_wait,
    "kill": _p_target("kill"),
    "restart": _p_target("restart"),
    "stop": _p_target("stop"),
    "pause": _p_target("pause"),
    "resume": _p_target("resume"),
    "isolate": _p_target("isolate"),
    "partition": _p_partition,
    "block": _p_block,
    "heal": _p_heal,
    "loss": _p_link("loss"),
    "delay": _p_link("delay"),
    "http": _p_http,
    "consul": _p_consul,
    "peers_json": _p_peers_json,
    "load": _p_load,
    "check": _p_check,
    "sleep": _p_sleep,
    "assert": _p_assert,
    "note": _p_note,
}
