"""ACLs as Consul's servers enforce them, reduced to the resources consim serves.

Pure: no I/O except :meth:`ACLConfig.load`. The server endpoints call
``config.resolve(token).require(resource, level, segment)`` after leader forwarding (as Consul
does), and the HTTP layer maps the resulting texts to status codes (403).

Configuration shape (a JSON object, a TOML file, or the ``[acl]`` table of a scenario file)::

    [acl]
    enabled = true
    default_policy = "deny"            # "allow" (default) or "deny"
    initial_management = "root-secret" # secret id with every right (optional)

    [[acl.tokens]]
    accessor_id = "8f4b2a6e-0000-4000-8000-000000000001"
    secret_id = "ops-secret"
    description = "operators"          # optional
    operator = "write"                 # read | write | deny (optional)
    keyring = "read"                   # read | write | deny (optional)
    key_prefix = { "" = "read", "app/" = "write", "app/secret/" = "deny" }
    agent_prefix = { "" = "read" }     # agent:read/write on an agent's node name (optional)
    node_prefix = { "" = "read" }      # node:read on a member's name (optional)

``key_prefix`` levels are ``deny | read | list | write``; ``agent_prefix`` and ``node_prefix``
levels are ``deny | read | write``; the longest matching prefix wins. Consul's exact-match rules
(``key "x"``, ``agent "x"``, ``node "x"``) are not modelled: write them as prefixes. A
token entry whose ``accessor_id`` is Consul's anonymous accessor
(``00000000-0000-0000-0000-000000000002``) gives rules to requests without a token; its
``secret_id`` may then be ``"anonymous"``.

Decisions follow Consul's ``enforce``: ``write`` grants everything, ``list`` grants list and
read, ``read`` grants only read, ``deny`` nothing; with no matching rule ``default_policy``
decides. With ACLs disabled every request is allowed, whatever its token.
"""

from __future__ import annotations

import functools
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consim.acl_rules import Rules

ANONYMOUS_ACCESSOR_ID = "00000000-0000-0000-0000-000000000002"

# Texts from hashicorp/consul acl/errors.go.
ACL_NOT_FOUND = "ACL not found"
_ANONYMOUS_SUFFIX = (
    ". The anonymous token is used implicitly when a request does not specify a token."
)

RESOURCES = ("acl", "operator", "keyring", "key", "agent", "node", "service", "session")
_GLOBAL_LEVELS = ("read", "write", "deny")
_KEY_LEVELS = ("read", "list", "write", "deny")
# Prefix-rule resources: token field -> allowed levels.
_PREFIX_FIELDS = {
    "key_prefix": _KEY_LEVELS,
    "agent_prefix": _GLOBAL_LEVELS,
    "node_prefix": _GLOBAL_LEVELS,
}
_TOKEN_FIELDS = {
    "accessor_id",
    "secret_id",
    "description",
    "operator",
    "keyring",
    *_PREFIX_FIELDS,
}
_TOP_FIELDS = {"enabled", "default_policy", "initial_management", "tokens"}


class ACLConfigError(ValueError):
    """A configuration that cannot be used; the message names the source and the field."""


class ACLError(Exception):
    """An ACL refusal; ``message`` is Consul's exact text (HTTP 403)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ACLNotFound(ACLError):
    def __init__(self) -> None:
        super().__init__(ACL_NOT_FOUND)


class PermissionDenied(ACLError):
    pass


@dataclass(frozen=True)
class ACLToken:
    accessor_id: str
    secret_id: str
    description: str = ""
    operator: str | None = None
    keyring: str | None = None
    key_prefix: dict[str, str] = field(default_factory=dict)
    agent_prefix: dict[str, str] = field(default_factory=dict)
    node_prefix: dict[str, str] = field(default_factory=dict)

    def prefix_rules(self, resource: str) -> dict[str, str]:
        # A config-file token has no service or session rules: the default policy decides.
        return {"key": self.key_prefix, "agent": self.agent_prefix, "node": self.node_prefix}.get(
            resource, {}
        )


def _longest_prefix(rules: Mapping[str, str], segment: str) -> str | None:
    best: str | None = None
    best_len = -1
    for prefix, level in rules.items():
        if segment.startswith(prefix) and len(prefix) > best_len:
            best, best_len = level, len(prefix)
    return best


def _enforce(rule: str, required: str) -> bool:
    # Consul's acl.enforce: what a rule grants for a required access level.
    if rule == "write":
        return True
    if rule == "list":
        return required in ("read", "list")
    if rule == "read":
        return required == "read"
    return False


class Authorizer:
    """Answers for one resolved token. ``token`` is None for management (everything allowed)."""

    def __init__(self, config: ACLConfig, token: ACLToken | None, management: bool) -> None:
        self._config = config
        self.token = token
        self.management = management

    @property
    def accessor_id(self) -> str:
        if self.management:
            return self._config.management_accessor_id
        return self.token.accessor_id if self.token else ANONYMOUS_ACCESSOR_ID

    def _rule(self, resource: str, segment: str | None) -> str | None:
        if self.token is None:
            return None
        if resource == "operator":
            return self.token.operator
        if resource == "keyring":
            return self.token.keyring
        if resource == "acl":
            return None  # the config file's tokens carry no acl rules
        return _longest_prefix(self.token.prefix_rules(resource), segment or "")

    def allowed(self, resource: str, level: str, segment: str | None = None) -> bool:
        if resource not in RESOURCES:
            raise ValueError(f"unknown ACL resource {resource!r}")
        if not self._config.enabled or self.management:
            return True
        rule = self._rule(resource, segment)
        if rule is None:
            # Consul's static authorizers: the default policy never grants acl:read/write.
            return resource != "acl" and self._config.default_policy == "allow"
        return _enforce(rule, level)

    def require(self, resource: str, level: str, segment: str | None = None) -> None:
        """Raise :class:`PermissionDenied` with Consul's text unless allowed."""
        if not self.allowed(resource, level, segment):
            raise PermissionDenied(
                permission_denied_text(self.accessor_id, resource, level, segment)
            )

    def key_write_prefix(self, prefix: str) -> bool:
        """Consul's KeyWritePrefix (delete-tree): write on ``prefix`` (its longest matching rule,
        else the default policy) and every rule beneath it grants write too."""
        if not self.allowed("key", "write", prefix):
            return False
        if not self._config.enabled or self.management:
            return True
        return all(
            _enforce(level, "write")
            for p, level in self._key_rules_beneath(prefix)
            if p.startswith(prefix) and len(p) > len(prefix)
        )

    def _key_rules_beneath(self, prefix: str) -> list[tuple[str, str]]:
        return list(self.token.key_prefix.items()) if self.token else []

    def require_key_write_prefix(self, prefix: str) -> None:
        """Raise :class:`PermissionDenied` (``key:write`` on ``prefix``) unless
        :meth:`key_write_prefix` allows it, as Consul's KeyWritePrefixAllowed does."""
        if not self.key_write_prefix(prefix):
            raise PermissionDenied(permission_denied_text(self.accessor_id, "key", "write", prefix))

    @property
    def unrestricted(self) -> bool:
        """ACLs off or the management token: every check passes."""
        return not self._config.enabled or self.management

    def filter_keys(self, keys: list[str]) -> list[str]:
        """The keys this token may read (Consul's FilterDirEnt: key:read per entry)."""
        if self.unrestricted:
            return list(keys)
        return [k for k in keys if self.allowed("key", "read", k)]


class RulesAuthorizer(Authorizer):
    """A token stored in the ACL table: its policies' (and roles') rules merged
    (``consim.acl_rules``); ``management`` for a token holding global-management."""

    def __init__(self, config: ACLConfig, accessor_id: str, rules: Rules, management: bool) -> None:
        super().__init__(config, None, management)
        self._accessor_id = accessor_id
        self.rules = rules

    @property
    def accessor_id(self) -> str:
        return self._accessor_id

    def _rule(self, resource: str, segment: str | None) -> str | None:
        if resource in self.rules.globals:
            return self.rules.globals[resource]
        exact = self.rules.exact.get(resource, {})
        if segment is not None and segment in exact:
            return exact[segment]
        return _longest_prefix(self.rules.prefix.get(resource, {}), segment or "")

    def _key_rules_beneath(self, prefix: str) -> list[tuple[str, str]]:
        return [
            *self.rules.prefix.get("key", {}).items(),
            *self.rules.exact.get("key", {}).items(),
        ]


def permission_denied_text(
    accessor_id: str, resource: str, level: str, segment: str | None = None
) -> str:
    """Consul's PermissionDeniedError.Error() for an attributed refusal."""
    if accessor_id == ANONYMOUS_ACCESSOR_ID:
        text = "Permission denied: anonymous token"
    else:
        text = f"Permission denied: token with AccessorID '{accessor_id}'"
    text += f" lacks permission '{resource}:{level}'"
    if segment:
        text += f' on "{segment}"'
    if accessor_id == ANONYMOUS_ACCESSOR_ID:
        text += _ANONYMOUS_SUFFIX
    return text


@dataclass(frozen=True)
class ACLConfig:
    enabled: bool = False
    default_policy: str = "allow"
    initial_management: str = ""
    tokens: tuple[ACLToken, ...] = ()
    # Consul generates a random accessor for the initial management token; a fixed one keeps
    # traces deterministic. It never appears in an error (management is never denied).
    management_accessor_id: str = "00000000-0000-0000-0000-000000000001"

    @functools.cached_property
    def _allow_all(self) -> Authorizer:
        # ACLs off: every request gets this one (immutable) authorizer, not a new one per RPC.
        return Authorizer(self, None, management=True)

    def resolve(self, token: str) -> Authorizer:
        """The authorizer for a secret id; ``""`` is the anonymous token."""
        if not self.enabled:
            return self._allow_all
        if token and self.initial_management and token == self.initial_management:
            return Authorizer(self, None, management=True)
        if not token:
            for t in self.tokens:
                if t.accessor_id == ANONYMOUS_ACCESSOR_ID:
                    return Authorizer(self, t, management=False)
            return Authorizer(self, None, management=False)
        for t in self.tokens:
            if t.secret_id == token:
                return Authorizer(self, t, management=False)
        raise ACLNotFound()

    @classmethod
    def from_dict(cls, obj: Any, source: str = "acl config") -> ACLConfig:
        """Validate ``obj`` (the ``[acl]`` table); errors name ``source`` and the field."""

        def fail(where: str, why: str) -> ACLConfigError:
            return ACLConfigError(f"{source}: {where}: {why}")

        if not isinstance(obj, Mapping):
            raise ACLConfigError(f"{source}: acl: must be a table/object")
        for k in obj:
            if k not in _TOP_FIELDS:
                raise fail(f"acl.{k}", f"unknown field (expected one of {sorted(_TOP_FIELDS)})")
        enabled = obj.get("enabled", False)
        if not isinstance(enabled, bool):
            raise fail("acl.enabled", "must be true or false")
        policy = obj.get("default_policy", "allow")
        if policy not in ("allow", "deny"):
            raise fail("acl.default_policy", f'must be "allow" or "deny", not {policy!r}')
        mgmt = obj.get("initial_management", "")
        if not isinstance(mgmt, str):
            raise fail("acl.initial_management", "must be a string")
        raw_tokens = obj.get("tokens", [])
        if not isinstance(raw_tokens, list):
            raise fail("acl.tokens", "must be a list of tables/objects")
        tokens: list[ACLToken] = []
        seen_secret: set[str] = {mgmt} if mgmt else set()
        seen_accessor: set[str] = set()
        for i, raw in enumerate(raw_tokens):
            tokens.append(_parse_token(raw, f"acl.tokens[{i}]", fail, seen_secret, seen_accessor))
        return cls(
            enabled=enabled,
            default_policy=policy,
            initial_management=mgmt,
            tokens=tuple(tokens),
        )

    @classmethod
    def load(cls, path: str | Path) -> ACLConfig:
        """Read a ``.json`` or ``.toml`` file; a top-level ``acl`` table is used if present."""
        p = Path(path)
        try:
            if p.suffix == ".json":
                obj = json.loads(p.read_text(encoding="utf-8"))
            elif p.suffix == ".toml":
                obj = tomllib.loads(p.read_text(encoding="utf-8"))
            else:
                raise ACLConfigError(f"{p}: unsupported file type (use .json or .toml)")
        except (OSError, ValueError) as exc:
            if isinstance(exc, ACLConfigError):
                raise
            raise ACLConfigError(f"{p}: {exc}") from exc
        if isinstance(obj, dict) and isinstance(obj.get("acl"), dict):
            obj = obj["acl"]
        return cls.from_dict(obj, source=str(p))


def _parse_token(
    raw: Any, where: str, fail: Any, seen_secret: set[str], seen_accessor: set[str]
) -> ACLToken:
    if not isinstance(raw, Mapping):
        raise fail(where, "must be a table/object")
    for k in raw:
        if k not in _TOKEN_FIELDS:
            raise fail(f"{where}.{k}", f"unknown field (expected one of {sorted(_TOKEN_FIELDS)})")
    values: dict[str, Any] = {}
    for name in ("accessor_id", "secret_id"):
        v = raw.get(name)
        if not isinstance(v, str) or not v:
            raise fail(f"{where}.{name}", "required, a non-empty string")
        values[name] = v
    if values["accessor_id"] in seen_accessor:
        raise fail(f"{where}.accessor_id", f"duplicate accessor id {values['accessor_id']!r}")
    if values["secret_id"] in seen_secret:
        raise fail(f"{where}.secret_id", "duplicate secret id")
    seen_accessor.add(values["accessor_id"])
    seen_secret.add(values["secret_id"])
    desc = raw.get("description", "")
    if not isinstance(desc, str):
        raise fail(f"{where}.description", "must be a string")
    for name in ("operator", "keyring"):
        v = raw.get(name)
        if v is not None and v not in _GLOBAL_LEVELS:
            raise fail(f"{where}.{name}", f"must be one of read, write, deny, not {v!r}")
    rules: dict[str, dict[str, str]] = {}
    for name, levels in _PREFIX_FIELDS.items():
        kp = raw.get(name, {})
        if not isinstance(kp, Mapping):
            raise fail(f"{where}.{name}", "must be a table/object of prefix = level")
        for prefix, level in kp.items():
            if not isinstance(prefix, str):
                raise fail(f"{where}.{name}", "prefixes must be strings")
            if level not in levels:
                raise fail(
                    f"{where}.{name}.{prefix!r}",
                    f"must be one of {', '.join(levels)}, not {level!r}",
                )
        rules[name] = dict(kp)
    return ACLToken(
        accessor_id=values["accessor_id"],
        secret_id=values["secret_id"],
        description=desc,
        operator=raw.get("operator"),
        keyring=raw.get("keyring"),
        **rules,
    )
