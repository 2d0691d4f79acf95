"""What every scenario action's parser and runner share: targets, errors, the field checker.

``consim.scenario.model`` reads a file and hands each ``[[step]]`` table to its action
(``consim.scenario.actions``); the action checks its fields with :class:`Checker`, whose errors name
the file, the step number (1-based, as a learner counts) and the field::

    scenarios/x.toml: step 3: field 'within': expected a duration like "5s", got 5
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consim.acl import ACLConfig
from consim.raft.types import Configuration
from consim.spec import NetworkModel

# The node of the events a scenario itself emits (notes, steps, its requests).
SCENARIO_NODE = "scenario"
# Keys every step accepts besides its action's own.
COMMON_KEYS = frozenset({"note", "dc"})
ROLE_TARGETS = ("leader", "follower", "old-leader", "last-killed", "any")
# Names a group: every running server of the datacenter (kill/restart/stop/peers_json only).
GROUP_TARGET = "survivors"
# "partition[0][1]": the second server of the first group of the last partition step, as
# resolved when that step ran (roles change later; this name stays put).
PARTITION_MEMBER = re.compile(r"^partition\[(\d+)\]\[(\d+)\]$")

# "{rpc:dc1-s5}" in a consul command, an HTTP path/body or an expectation: that server's address,
# filled in when the step runs (live runs may put a cluster on another 127.0.N.x block).
# "{var:NAME}": a value an earlier http step saved (save = { NAME = "json.path" }).
PLACEHOLDER = re.compile(r"\{(rpc|host|http|var):([^{}]+)\}")
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


class StepFailed(Exception):
    """A step's expectation did not hold; the message is shown to the learner as is."""


def short(text: str, limit: int = 160) -> str:
    """One line of at most ``limit`` characters (``...`` marks a cut)."""
    text = text.strip().replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_duration(text: str) -> float:
    """Go's duration syntax as Consul uses it: ``"5s"``, ``"500ms"``, ``"1m30s"``, and ``"0"``
    (the one number Go takes without a unit). Negative durations are refused: no step waits less
    than nothing."""
    if text == "0":
        return 0.0
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


class ActionArgs:
    """An action's checked arguments (each action defines a frozen dataclass of its own, with
    ``eq=False``: nothing compares them, and every generated ``__eq__``/``__hash__`` is import
    time each ``consim`` process pays)."""

    def describe(self) -> str:
        """The step's timeline label, e.g. ``kill leader`` or ``GET /v1/kv/x on dc1-s1``."""
        raise NotImplementedError


@dataclass
class Step:
    """One validated step: its action's name and that action's typed arguments."""

    number: int
    action: str
    args: ActionArgs
    note: str | None = None
    dc: str | None = None

    def describe(self) -> str:
        """A short human label, e.g. ``kill leader`` or ``GET /v1/kv/x on dc1-s1``."""
        return self.args.describe()


@dataclass
class ClusterSettings:
    datacenters: tuple[tuple[str, int], ...] = (("dc1", 3),)
    raft_multiplier: float = 1.0
    raft_protocol: int = 3
    rpc_hold_timeout: float = 7.0
    encrypt: str | None = None
    snapshot_threshold: int | None = None
    snapshot_interval: float | None = None
    trailing_logs: int | None = None
    # "tmp": a fresh temporary directory per run (needed by peers_json steps).
    data_dir: str | None = None
    acl: ACLConfig = field(default_factory=ACLConfig)
    # [cluster.network]: latency/jitter/loss (None: the simulator's default 0.5-2 ms links).
    network: NetworkModel | None = None
    pre_vote: bool = True
    # A static initial Raft configuration (peers.json format), see ClusterSpec.raft_peers.
    raft_peers: Configuration | None = None
    # [cluster.tls]: TLS on the server port (consim.tls.config.TLSConfig), None = plaintext
    tls: Any = None

    def server_names(self) -> list[str]:
        return [f"{dc}-s{k}" for dc, n in self.datacenters for k in range(1, n + 1)]


class Checker:
    """Builds error messages with the file / step / field prefix."""

    def __init__(self, path: Path, servers: list[str], datacenters: list[str]) -> None:
        self.path = path
        self.servers = servers
        self.datacenters = datacenters
        # {var:NAME} names saved by the steps parsed so far (an http step's ``save``).
        self.saved: set[str] = set()
        # The file's [cluster], once parsed (the steps are checked against it).
        self.cluster = ClusterSettings()
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

    def table(
        self, fieldname: str, value: Any, example: str, known: tuple[str, ...]
    ) -> dict[str, Any]:
        """``value`` as a table (``example`` shows one in the error) whose keys are all ``known``
        (listed in that order when one is not)."""
        if not isinstance(value, dict):
            raise self.expected(fieldname, f"a table like {example}", value)
        for k in value:
            if k not in known:
                raise self.fail(f"{fieldname}.{k}", f"unknown field (expected {', '.join(known)})")
        return value

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
                if m.group(1) == "var":
                    if m.group(2) not in self.saved:
                        raise self.fail(
                            fieldname,
                            f"{m.group(0)} is saved by no earlier step "
                            f'(an http step\'s save = {{ {m.group(2)} = "json.path" }})',
                        )
                    continue
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


def gossip_key(c: Checker, fieldname: str, value: Any) -> str:
    """A gossip encryption key: base64 of 16, 24 or 32 bytes (memberlist's rule)."""
    text = c.string(fieldname, value)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise c.expected(fieldname, "a base64 gossip key", text) from None
    if len(key) not in (16, 24, 32):
        raise c.fail(fieldname, "key size must be 16, 24 or 32 bytes")
    return text
