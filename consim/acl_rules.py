"""ACL policy rules (Consul's policy language, HCL or its JSON form) as consim models them.

``parse_rules(text) -> Rules`` reads what a policy's ``Rules`` field holds::

    acl = "read"
    operator = "write"
    key_prefix "app/" { policy = "write" }
    key "app/secret" { policy = "deny" }

or the same as JSON (``{"key_prefix": {"app/": {"policy": "write"}}}``). Global resources
(``acl``, ``operator``, ``keyring``, ``mesh``, ``peering``) take a level; the others take blocks
per name, exact (``key "x"``) or by prefix (``key_prefix "x"``). Resources consim does not enforce
(event, query...) are parsed and kept, so a policy round-trips, and ignored by the authorizer. A malformed text raises :class:`RulesError` with a reason for Consul's
``Failed to parse policy`` answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

GLOBAL_RESOURCES = ("acl", "operator", "keyring", "mesh", "peering")
NAMED_RESOURCES = (
    "agent", "event", "identity", "key", "node", "query", "service", "session",
)  # fmt: skip
LEVELS = ("read", "write", "deny", "list")


class RulesError(ValueError):
    """A policy text that cannot be parsed."""


@dataclass
class Rules:
    """One policy's rules: global levels, exact and prefix rules per named resource."""

    globals: dict[str, str] = field(default_factory=dict)
    exact: dict[str, dict[str, str]] = field(default_factory=dict)
    prefix: dict[str, dict[str, str]] = field(default_factory=dict)

    def merge(self, other: Rules) -> None:
        """Consul merges a token's policies keeping the strongest-deny-first answer: a deny
        anywhere wins, else the most permissive level."""
        for name, level in other.globals.items():
            self.globals[name] = _stronger(self.globals.get(name), level)
        for mine, theirs in ((self.exact, other.exact), (self.prefix, other.prefix)):
            for resource, rules in theirs.items():
                into = mine.setdefault(resource, {})
                for segment, level in rules.items():
                    into[segment] = _stronger(into.get(segment), level)


def _stronger(a: str | None, b: str) -> str:
    if a is None:
        return b
    if "deny" in (a, b):
        return "deny"
    order = {"read": 0, "list": 1, "write": 2}
    return a if order.get(a, 0) >= order.get(b, 0) else b


_TOKEN = re.compile(
    r'\s*(?:(#[^\n]*|//[^\n]*|/\*.*?\*/)|("(?:[^"\\]|\\.)*")|([A-Za-z_][A-Za-z0-9_\-]*)|(\S))',
    re.S,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            break
        pos = m.end()
        comment, string, ident, punct = m.groups()
        if comment:
            continue
        if string is not None:
            out.append(("str", json.loads(string)))
        elif ident is not None:
            out.append(("ident", ident))
        elif punct is not None:
            out.append(("punct", punct))
    return out


def _parse_hcl(text: str) -> dict[str, Any]:
    """The subset of HCL 1 that policies use: ``name = "v"``, ``name "label" { ... }``,
    ``name { ... }``; returns the same shape JSON rules decode to."""
    toks = _tokens(text)
    pos = 0

    def expect(kind: str, value: str | None = None) -> str:
        nonlocal pos
        if pos >= len(toks) or toks[pos][0] != kind or (value and toks[pos][1] != value):
            got = toks[pos][1] if pos < len(toks) else "end of input"
            raise RulesError(f"expected {value or kind}, got {got!r}")
        pos += 1
        return toks[pos - 1][1]

    def body(closing: bool) -> dict[str, Any]:
        nonlocal pos
        obj: dict[str, Any] = {}
        while pos < len(toks):
            kind, value = toks[pos]
            if closing and kind == "punct" and value == "}":
                pos += 1
                return obj
            if kind not in ("ident", "str"):
                raise RulesError(f"unexpected {value!r}")
            pos += 1
            nxt = toks[pos] if pos < len(toks) else ("end", "")
            if nxt == ("punct", "="):
                pos += 1
                kind2, v = toks[pos] if pos < len(toks) else ("end", "")
                if kind2 == "punct" and v == "{":
                    pos += 1
                    obj[value] = body(True)
                else:
                    obj[value] = expect("str") if kind2 == "str" else expect("ident")
            elif nxt[0] == "str":
                pos += 1
                expect("punct", "{")
                obj.setdefault(value, {})[nxt[1]] = body(True)
            elif nxt == ("punct", "{"):
                pos += 1
                obj[value] = body(True)
            else:
                raise RulesError(f"expected '=' or a block after {value!r}")
            if pos < len(toks) and toks[pos] == ("punct", ","):
                pos += 1
        if closing:
            raise RulesError("unclosed block")
        return obj

    return body(False)


def parse_rules(text: str) -> Rules:
    """A policy's rules; ``RulesError`` for a text Consul would refuse."""
    text = text or ""
    stripped = text.strip()
    if not stripped:
        return Rules()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except ValueError as exc:
            raise RulesError(str(exc)) from None
    else:
        obj = _parse_hcl(text)
    if not isinstance(obj, dict):
        raise RulesError("rules must be an object")
    rules = Rules()
    for name, value in obj.items():
        if name in GLOBAL_RESOURCES:
            if value not in LEVELS:
                raise RulesError(f"Invalid {name} policy: {value!r}")
            rules.globals[name] = str(value)
            continue
        resource, is_prefix = (
            (name[: -len("_prefix")], True) if name.endswith("_prefix") else (name, False)
        )
        if resource not in NAMED_RESOURCES:
            raise RulesError(f"Unknown resource {name!r}")
        if not isinstance(value, dict):
            raise RulesError(f"Invalid {name} block")
        target = (rules.prefix if is_prefix else rules.exact).setdefault(resource, {})
        for segment, block in value.items():
            level = block.get("policy") if isinstance(block, dict) else None
            if level not in LEVELS:
                raise RulesError(f"Invalid {resource} policy: {level!r}")
            target[str(segment)] = str(level)
    return rules


# builtin templated policies (structs.ACLTemplatedPolicy*): name -> (ID, the rules template)
TEMPLATED_POLICIES: dict[str, tuple[str, str, str]] = {
    "builtin/service": (
        "00000000-0000-0000-0000-000000000003",
        "name",
        'service "{name}" {{\n\tpolicy = "write"\n}}\nservice "{name}-sidecar-proxy" {{\n'
        '\tpolicy = "write"\n}}\nservice_prefix "" {{\n\tpolicy = "read"\n}}\n'
        'node_prefix "" {{\n\tpolicy = "read"\n}}',
    ),
    "builtin/node": (
        "00000000-0000-0000-0000-000000000004",
        "name",
        'node "{name}" {{\n\tpolicy = "write"\n}}\nservice_prefix "" {{\n\tpolicy = "read"\n}}',
    ),
    "builtin/dns": (
        "00000000-0000-0000-0000-000000000005",
        "",
        'node_prefix "" {{\n\tpolicy = "read"\n}}\nservice_prefix "" {{\n\tpolicy = "read"\n}}\n'
        'query_prefix "" {{\n\tpolicy = "read"\n}}',
    ),
}
