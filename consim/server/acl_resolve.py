"""Token -> authorizer, as Consul's ACL resolver: the configuration's tokens first (consim's
``--acl-file``), then the replicated ACL table (tokens made through ``/v1/acl/*``).

A stored token's rules are its policies' and its roles' policies' rules merged; one linked to
global-management is a management token. Links to policies or roles that no longer exist are
skipped, as Consul does.
"""

from __future__ import annotations

from typing import Any

from consim.acl import ACLConfig, ACLNotFound, Authorizer, RulesAuthorizer
from consim.acl_rules import Rules, RulesError, parse_rules
from consim.server.state.acl import ANONYMOUS_ACCESSOR, GLOBAL_MANAGEMENT_ID, ACLTable


def resolve(config: ACLConfig, table: ACLTable, secret: str) -> Authorizer:
    """The authorizer of ``secret`` (``""``: the anonymous token); raises ACLNotFound."""
    if not config.enabled:
        return config.resolve(secret)
    record = table.get("token", ANONYMOUS_ACCESSOR) if not secret else table.by_secret(secret)
    if record is not None and (secret or _has_links(record)):
        return token_authorizer(config, table, record)
    try:
        return config.resolve(secret)
    except ACLNotFound:
        if record is not None:
            return token_authorizer(config, table, record)
        raise


def _has_links(record: dict[str, Any]) -> bool:
    return bool(record.get("Policies") or record.get("Roles"))


def token_authorizer(config: ACLConfig, table: ACLTable, record: dict[str, Any]) -> Authorizer:
    rules = Rules()
    management = False
    policy_ids = [str(p.get("ID", "")) for p in record.get("Policies") or []]
    for link in record.get("Roles") or []:
        role = table.get("role", str(link.get("ID", "")))
        if role is not None:
            policy_ids.extend(str(p.get("ID", "")) for p in role.get("Policies") or [])
    for pid in policy_ids:
        if pid == GLOBAL_MANAGEMENT_ID:
            management = True
            continue
        policy = table.get("policy", pid)
        if policy is None:
            continue
        try:
            rules.merge(parse_rules(str(policy.get("Rules") or "")))
        except RulesError:
            continue  # refused when written; a stored one that fails grants nothing
    return RulesAuthorizer(config, str(record.get("AccessorID", "")), rules, management)
