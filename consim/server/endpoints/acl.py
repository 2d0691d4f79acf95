"""Consul's ACL endpoint (``acl_endpoint.go``): bootstrap, tokens, policies, roles, auth methods,
binding rules, login/logout. Records live in the replicated ACL table (``state/acl.py``); writes
are validated here on the leader and applied through Raft, reads are blocking queries.

Not modelled: token expiry (``ExpirationTime`` is recorded and shown, never enforced), auth
method validation against a real JWT/OIDC/Kubernetes backend (``Login`` answers that no method
can log in), binding rule selectors (stored, not evaluated), namespaces and partitions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from datetime import timedelta
from typing import Any

import trio

from consim.acl_rules import TEMPLATED_POLICIES, RulesError, parse_rules
from consim.events import VIRTUAL_EPOCH
from consim.golike import GoError, format_duration, parse_duration
from consim.net.network import RpcError
from consim.server.endpoints.kvs import indexed_reply
from consim.server.endpoints.registry import authorize, endpoint
from consim.server.interface import Server
from consim.server.state.acl import (
    ANONYMOUS_ACCESSOR,
    ANONYMOUS_SECRET,
    GLOBAL_MANAGEMENT_ID,
    GLOBAL_MANAGEMENT_NAME,
    GLOBAL_MANAGEMENT_RULES,
    ACLTable,
)
from consim.server.state.base import encode_command

ERR_ACL_NOT_FOUND = "ACL not found"
ERR_ACL_DISABLED = "ACL support disabled"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,128}$")
TTL_MIN, TTL_MAX = 60.0, 24 * 3600.0


def table(node: Server) -> ACLTable:
    return node.fsm.table(ACLTable)


def new_uuid(node: Server) -> str:
    # From the server's seeded generator, so virtual runs repeat.
    return str(uuid.UUID(int=node.rng.getrandbits(128), version=4))


def create_time(node: Server) -> str:
    """RFC 3339 with nanoseconds, on the cluster clock (the event log's epoch)."""
    when = VIRTUAL_EPOCH + timedelta(seconds=trio.current_time())
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(record: dict[str, Any], fields: tuple[str, ...]) -> str:
    text = json.dumps([record.get(f) for f in fields], sort_keys=True, default=str)
    return base64.b64encode(hashlib.blake2b(text.encode(), digest_size=32).digest()).decode()


def _enabled(node: Server) -> None:
    if not node.acl.enabled:
        raise RpcError(ERR_ACL_DISABLED)


def _require(node: Server, args: dict[str, Any], level: str) -> None:
    _enabled(node)
    authz = authorize(node, args)
    try:
        authz.require("acl", level)
    except Exception as exc:
        raise RpcError(str(exc)) from None


async def _apply(node: Server, body: dict[str, Any]) -> Any:
    result = await node.apply_command(encode_command("ACL", body))
    if isinstance(result, dict) and "Error" in result:
        raise RpcError(str(result["Error"]))
    return result


async def _reads(
    node: Server, kind: str, args: dict[str, Any], read: Any, out: str
) -> dict[str, Any]:
    """A blocking query over ``kind``'s records: ``read()``'s result as ``out`` (``Token``,
    ``Policies``...), with the index and query meta."""
    return await indexed_reply(node, args, lambda: (max(table(node).index(kind), 1), read()), out)


# ---- the leader's initializeACLs ----------------------------------------------------------------


def init_command(node: Server) -> dict[str, Any]:
    """What a new leader with ACLs enabled stores once: the builtin policy, the anonymous token
    and the configured initial management token."""
    now = create_time(node)
    policy = {
        "ID": GLOBAL_MANAGEMENT_ID,
        "Name": GLOBAL_MANAGEMENT_NAME,
        "Description": "Builtin Policy that grants unlimited access",
        "Rules": GLOBAL_MANAGEMENT_RULES,
        "Datacenters": None,
    }
    policy["Hash"] = record_hash(policy, ("Name", "Description", "Rules"))
    anonymous = _token_record(
        {"AccessorID": ANONYMOUS_ACCESSOR, "SecretID": ANONYMOUS_SECRET},
        "Anonymous Token",
        now,
    )
    body: dict[str, Any] = {"Op": "init", "Policy": policy, "Anonymous": anonymous}
    secret = node.acl.initial_management
    if secret:
        body["Management"] = _token_record(
            {
                "AccessorID": new_uuid(node),
                "SecretID": secret,
                "Policies": [{"ID": GLOBAL_MANAGEMENT_ID, "Name": GLOBAL_MANAGEMENT_NAME}],
            },
            "Initial Management Token",
            now,
        )
    return body


async def initialize_acls(node: Server) -> None:
    """Run on the leader (its reconcile): store the builtins once (Consul's initializeACLs)."""
    if not node.acl.enabled:
        return
    t = table(node)
    secret = node.acl.initial_management
    if t.initialized and (not secret or t.by_secret(secret) is not None):
        return
    await _apply(node, init_command(node))


# ---- tokens ------------------------------------------------------------------------------------

_TOKEN_FIELDS = (
    "AccessorID", "SecretID", "Description", "Policies", "Roles", "ServiceIdentities",
    "NodeIdentities", "TemplatedPolicies", "Local", "AuthMethod", "ExpirationTime",
    "CreateTime", "Hash", "CreateIndex", "ModifyIndex",
)  # fmt: skip


def _token_record(source: dict[str, Any], description: str, now: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "AccessorID": source["AccessorID"],
        "SecretID": source["SecretID"],
        "Description": description,
    }
    for name in ("Policies", "Roles", "ServiceIdentities", "NodeIdentities", "TemplatedPolicies"):
        if source.get(name):
            record[name] = source[name]
    record["Local"] = bool(source.get("Local"))
    if source.get("AuthMethod"):
        record["AuthMethod"] = source["AuthMethod"]
    if source.get("ExpirationTime"):
        record["ExpirationTime"] = source["ExpirationTime"]
    record["CreateTime"] = source.get("CreateTime") or now
    record["Hash"] = record_hash(record, ("Description", "Policies", "Roles", "Local"))
    return record


def token_out(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in _TOKEN_FIELDS if k in record}


def _links(node: Server, kind: str, links: Any, what: str) -> list[dict[str, str]]:
    """Policy or role links by ID or name, resolved to both (Consul's TokenSet)."""
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for link in links or []:
        if not isinstance(link, dict):
            raise RpcError(f"Invalid {what} link")
        lid, name = str(link.get("ID") or ""), str(link.get("Name") or "")
        if lid:
            record = table(node).get(kind, lid)
            if record is None:
                raise RpcError(f"No such ACL {what} with ID {json.dumps(lid)}")
        else:
            record = table(node).by_name(kind, name)
            if record is None:
                raise RpcError(f"No such ACL {what} with name {json.dumps(name)}")
        if record["ID"] not in seen:
            seen.add(record["ID"])
            out.append({"ID": record["ID"], "Name": record["Name"]})
    return out


def _identities(token: dict[str, Any], local: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    services = []
    for ident in token.get("ServiceIdentities") or []:
        name = str((ident or {}).get("ServiceName") or "")
        if not name:
            raise RpcError("Service identity is missing the service name field on this token")
        dcs = list((ident or {}).get("Datacenters") or [])
        if local and dcs:
            raise RpcError(
                f"Service identity {json.dumps(name)} cannot specify a list of datacenters "
                "on a local token"
            )
        entry: dict[str, Any] = {"ServiceName": name}
        if dcs:
            entry["Datacenters"] = dcs
        services.append(entry)
    if services:
        out["ServiceIdentities"] = services
    nodes = []
    for ident in token.get("NodeIdentities") or []:
        name = str((ident or {}).get("NodeName") or "")
        dc = str((ident or {}).get("Datacenter") or "")
        if not name:
            raise RpcError("Node identity is missing the node name field on this token")
        if not dc:
            raise RpcError("Node identity is missing the datacenter field on this token")
        nodes.append({"NodeName": name, "Datacenter": dc})
    if nodes:
        out["NodeIdentities"] = nodes
    templated = []
    for entry in token.get("TemplatedPolicies") or []:
        name = str((entry or {}).get("TemplateName") or "")
        if name not in TEMPLATED_POLICIES:
            raise RpcError(f"no such ACL templated policy with Name {json.dumps(name)}")
        variables = (entry or {}).get("TemplateVariables") or {}
        # structs.ACLTemplatedPolicyVariables: one field, `json:"name"`, decoded case-blind.
        value = next((v for k, v in variables.items() if k.lower() == "name"), None)
        out_entry: dict[str, Any] = {"TemplateName": name}
        if value is not None:
            out_entry["TemplateVariables"] = {"name": str(value)}
        templated.append(out_entry)
    if templated:
        out["TemplatedPolicies"] = templated
    return out


def _expiration(node: Server, token: dict[str, Any], now: str) -> str | None:
    ttl_raw = token.get("ExpirationTTL")
    if ttl_raw in (None, "", 0):
        return token.get("ExpirationTime") or None
    if token.get("ExpirationTime"):
        raise RpcError("Token Expiration TTL and Expiration Time cannot both be set")
    try:
        ttl = parse_duration(ttl_raw) if isinstance(ttl_raw, str) else float(ttl_raw) / 1e9
    except GoError as exc:
        raise RpcError(str(exc)) from None
    if not TTL_MIN <= ttl <= TTL_MAX:
        raise RpcError(
            f"Token Expiration TTL '{format_duration(ttl)}' should be between "
            f"{format_duration(TTL_MIN)} and {format_duration(TTL_MAX)}"
        )
    when = VIRTUAL_EPOCH + timedelta(seconds=trio.current_time() + ttl)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@endpoint("ACL.TokenSet")
async def token_set(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    _require(node, args, "write")
    token = dict(args.get("ACLToken") or {})
    t = table(node)
    accessor = str(token.get("AccessorID") or "")
    secret = str(token.get("SecretID") or "")
    existing = None
    if args.get("Create"):
        if accessor:
            if not _UUID.match(accessor):
                raise RpcError("Invalid Token: AccessorID is not a valid UUID")
            if t.get("token", accessor) is not None:
                raise RpcError("Invalid Token: AccessorID is already in use")
        else:
            accessor = new_uuid(node)
        if secret:
            if not _UUID.match(secret):
                raise RpcError("Invalid Token: SecretID is not a valid UUID")
            if t.by_secret(secret) is not None:
                raise RpcError("Invalid Token: SecretID is already in use")
        else:
            secret = new_uuid(node)
    else:
        if not _UUID.match(accessor):
            raise RpcError("Invalid Token: AccessorID is not a valid UUID")
        existing = t.get("token", accessor)
        if existing is None:
            raise RpcError(f"Cannot find token {json.dumps(accessor)}")
        if secret and secret != existing["SecretID"]:
            raise RpcError("Changing a tokens SecretID is not permitted")
        secret = existing["SecretID"]
        if "Local" in token and bool(token["Local"]) != bool(existing.get("Local")):
            raise RpcError("Cannot toggle local mode of " + accessor)
    local = bool(token.get("Local") if existing is None else existing.get("Local"))
    now = create_time(node)
    source: dict[str, Any] = {
        "AccessorID": accessor,
        "SecretID": secret,
        "Policies": _links(node, "policy", token.get("Policies"), "policy"),
        "Roles": _links(node, "role", token.get("Roles"), "role"),
        "Local": local,
        **_identities(token, local),
    }
    if existing is not None:
        source["CreateTime"] = existing.get("CreateTime")
        source["ExpirationTime"] = existing.get("ExpirationTime")
        source["AuthMethod"] = existing.get("AuthMethod")
    else:
        source["ExpirationTime"] = _expiration(node, token, now)
    record = _token_record(source, str(token.get("Description") or ""), now)
    stored = await _apply(node, {"Op": "token-set", "Record": record})
    return token_out(stored)


@endpoint("ACL.TokenClone")
async def token_clone(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    _require(node, args, "write")
    token = dict(args.get("ACLToken") or {})
    source = table(node).get("token", str(token.get("AccessorID") or ""))
    if source is None:
        raise RpcError(ERR_ACL_NOT_FOUND)
    if source.get("AuthMethod"):
        raise RpcError("Cannot clone a token created from an auth method")
    clone = dict(source)
    clone.update(AccessorID=new_uuid(node), SecretID=new_uuid(node), CreateTime=None)
    description = str(token.get("Description") or "") or str(source.get("Description") or "")
    record = _token_record(clone, description, create_time(node))
    return token_out(await _apply(node, {"Op": "token-set", "Record": record}))


@endpoint("ACL.TokenDelete")
async def token_delete(node: Server, args: dict[str, Any]) -> str:
    _require(node, args, "write")
    accessor = str(args.get("TokenID") or "")
    t = table(node)
    if not _UUID.match(accessor):
        raise RpcError("Failed to parse token accessor ID")
    record = t.get("token", accessor)
    if record is None:
        raise RpcError(ERR_ACL_NOT_FOUND)
    if accessor == ANONYMOUS_ACCESSOR:
        raise RpcError("Delete operation not permitted on the anonymous token")
    if record.get("SecretID") == str(args.get("Token") or ""):
        raise RpcError("Deletion of the request's authorization token is not permitted")
    await _apply(node, {"Op": "token-delete", "Key": accessor})
    return accessor


@endpoint("ACL.TokenRead", read=True)
async def token_read(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    _enabled(node)
    by_secret = args.get("TokenIDType") == "secret"
    token_id = str(args.get("TokenID") or "")
    if not by_secret:
        _require(node, args, "read")
    elif table(node).by_secret(token_id) is None:
        authorize(node, args)  # a secret neither in the table nor configured: ACL not found
        raise RpcError(ERR_ACL_NOT_FOUND)

    def read() -> Any:
        t = table(node)
        record = t.by_secret(token_id) if by_secret else t.get("token", token_id)
        return None if record is None else token_out(record)

    reply = await _reads(node, "token", args, read, "Token")
    if reply["Token"] is None:
        raise RpcError(ERR_ACL_NOT_FOUND)
    return reply


@endpoint("ACL.TokenList", read=True)
async def token_list(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    _require(node, args, "read")
    policy, role = str(args.get("Policy") or ""), str(args.get("Role") or "")
    method = str(args.get("AuthMethod") or "")

    def read() -> Any:
        out = []
        for record in table(node).all("token"):
            if policy and policy not in {p["ID"] for p in record.get("Policies") or []}:
                continue
            if role and role not in {r["ID"] for r in record.get("Roles") or []}:
                continue
            if method and record.get("AuthMethod") != method:
                continue
            out.append({**token_out(record), "Legacy": False})
        return out

    return await _reads(node, "token", args, read, "Tokens")


@endpoint("ACL.BootstrapTokens")
async def bootstrap_tokens(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    _enabled(node)
    t = table(node)
    if t.bootstrap_index:
        raise RpcError(t.bootstrap_refused())
    secret = str(args.get("BootstrapSecret") or "") or new_uuid(node)
    if not _UUID.match(secret):
        raise RpcError("The bootstrap secret must be a valid UUID")
    record = _token_record(
        {
            "AccessorID": new_uuid(node),
            "SecretID": secret,
            "Policies": [{"ID": GLOBAL_MANAGEMENT_ID, "Name": GLOBAL_MANAGEMENT_NAME}],
        },
        "Bootstrap Token (Global Management)",
        create_time(node),
    )
    return token_out(await _apply(node, {"Op": "bootstrap", "Record": record}))


# ---- policies and roles ----------------------------------------------------------------------

_POLICY_FIELDS = (
    "ID", "Name", "Description", "Rules", "Datacenters", "Hash", "CreateIndex", "ModifyIndex",
)  # fmt: skip
_ROLE_FIELDS = (
    "ID", "Name", "Description", "Policies", "ServiceIdentities", "NodeIdentities",
    "TemplatedPolicies", "Hash", "CreateIndex", "ModifyIndex",
)  # fmt: skip


def _check_name(kind: str, name: str) -> None:
    if not name:
        raise RpcError(f"Invalid {kind.capitalize()}: no Name is set")
    if not _NAME.match(name):
        raise RpcError(
            f"Invalid {kind.capitalize()}: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"
        )


def _existing(node: Server, kind: str, record_id: str, what: str) -> dict[str, Any] | None:
    if not record_id:
        return None
    if not _UUID.match(record_id):
        raise RpcError(f"{what} ID invalid UUID")
    existing = table(node).get(kind, record_id)
    if existing is None:
        raise RpcError(f"cannot find {what} {record_id}")
    return existing


def _set_request(
    node: Server, args: dict[str, Any], kind: str
) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
    """A ``Policy``/``Role`` set request's record, its Name (valid, no other record's) and the
    stored record its ID names (None: a new one)."""
    kind_title = kind.capitalize()
    body = dict(args.get(kind_title) or {})
    name = str(body.get("Name") or "")
    _check_name(kind, name)
    existing = _existing(node, kind, str(body.get("ID") or ""), kind)
    same_name = table(node).by_name(kind, name)
    if same_name is not None and (existing is None or same_name["ID"] != existing["ID"]):
        raise RpcError(
            f"Invalid {kind_title}: A {kind_title} with Name {json.dumps(name)} already exists"
        )
    return body, name, existing


@endpoint("ACL.PolicySet")
async def policy_set(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    _require(node, args, "write")
    policy, name, existing = _set_request(node, args, "policy")
    builtin = existing is not None and existing["ID"] == GLOBAL_MANAGEMENT_ID
    if builtin and str(policy.get("Rules") or "") != existing["Rules"]:
        raise RpcError(
            "Changing the Rules for the builtin global-management policy is not permitted"
        )
    rules = str(policy.get("Rules") or "")
    try:
        parse_rules(rules)
    except RulesError as exc:
        raise RpcError(f"Invalid Policy: Failed to parse policy: {exc}") from None
    record = {
        "ID": existing["ID"] if existing else new_uuid(node),
        "Name": name,
        "Description": str(policy.get("Description") or ""),
        "Rules": rules,
        "Datacenters": list(policy.get("Datacenters") or []) or None,
    }
    record["Hash"] = record_hash(record, ("Name", "Description", "Rules", "Datacenters"))
    stored = await _apply(node, {"Op": "policy-set", "Record": record})
    return {k: stored[k] for k in _POLICY_FIELDS if k in stored}


@endpoint("ACL.RoleSet")
async def role_set(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    _require(node, args, "write")
    role, name, existing = _set_request(node, args, "role")
    record: dict[str, Any] = {
        "ID": existing["ID"] if existing else new_uuid(node),
        "Name": name,
        "Description": str(role.get("Description") or ""),
    }
    policies = _links(node, "policy", role.get("Policies"), "policy")
    if policies:
        record["Policies"] = policies
    record.update(_identities(role, False))
    record["Hash"] = record_hash(record, ("Name", "Description", "Policies", "ServiceIdentities"))
    stored = await _apply(node, {"Op": "role-set", "Record": record})
    return {k: stored[k] for k in _ROLE_FIELDS if k in stored}


def _delete_endpoint(kind: str, what: str, arg: str, builtin: str | None = None) -> None:
    async def delete(node: Server, args: dict[str, Any]) -> str:
        _require(node, args, "write")
        key = str(args.get(arg) or "")
        if builtin is not None and key == builtin:
            raise RpcError(f"Delete operation not permitted on the builtin {what}")
        if kind in ("policy", "role", "bindingrule") and not _UUID.match(key):
            raise RpcError(f"{what} ID invalid UUID")
        if table(node).get(kind, key) is None:
            raise RpcError(ERR_ACL_NOT_FOUND)
        await _apply(node, {"Op": f"{kind}-delete", "Key": key})
        return key

    endpoint(f"ACL.{_RPC[kind]}Delete")(delete)


def _read_endpoint(
    kind: str, what: str, id_arg: str, name_arg: str, fields: tuple[str, ...]
) -> None:
    async def read(node: Server, args: dict[str, Any]) -> dict[str, Any]:
        _require(node, args, "read")
        key, name = str(args.get(id_arg) or ""), str(args.get(name_arg) or "")
        if key and kind != "authmethod" and not _UUID.match(key):
            raise RpcError(f"failed acl {what} lookup: index error: UUID must be 36 characters")

        def fetch() -> Any:
            t = table(node)
            record = t.get(kind, key) if key else t.by_name(kind, name)
            return None if record is None else {k: record[k] for k in fields if k in record}

        return await _reads(node, kind, args, fetch, _OUT[kind])

    endpoint(f"ACL.{_RPC[kind]}Read", read=True)(read)


def _list_endpoint(kind: str, stub: tuple[str, ...], filters: dict[str, Any]) -> None:
    async def listing(node: Server, args: dict[str, Any]) -> dict[str, Any]:
        _require(node, args, "read")

        def fetch() -> Any:
            out = []
            for record in table(node).all(kind):
                if all(f(record, args.get(a)) for a, f in filters.items() if args.get(a)):
                    out.append({k: record[k] for k in stub if k in record})
            return out

        return await _reads(node, kind, args, fetch, _LIST_OUT[kind])

    endpoint(f"ACL.{_RPC[kind]}List", read=True)(listing)


_RPC = {
    "policy": "Policy",
    "role": "Role",
    "authmethod": "AuthMethod",
    "bindingrule": "BindingRule",
}
_OUT = {
    "policy": "Policy",
    "role": "Role",
    "authmethod": "AuthMethod",
    "bindingrule": "BindingRule",
}
_LIST_OUT = {
    "policy": "Policies",
    "role": "Roles",
    "authmethod": "AuthMethods",
    "bindingrule": "BindingRules",
}
_AUTH_METHOD_FIELDS = (
    "Name", "Type", "DisplayName", "Description", "MaxTokenTTL", "TokenLocality", "Config",
    "CreateIndex", "ModifyIndex",
)  # fmt: skip
_BINDING_RULE_FIELDS = (
    "ID", "Description", "AuthMethod", "Selector", "BindType", "BindName", "BindVars",
    "CreateIndex", "ModifyIndex",
)  # fmt: skip


def _has_policy(record: dict[str, Any], pid: Any) -> bool:
    return str(pid) in {p["ID"] for p in record.get("Policies") or []}


_read_endpoint("policy", "policy", "PolicyID", "PolicyName", _POLICY_FIELDS)
_read_endpoint("role", "role", "RoleID", "RoleName", _ROLE_FIELDS)
_read_endpoint("authmethod", "auth method", "AuthMethodName", "AuthMethodName", _AUTH_METHOD_FIELDS)
_read_endpoint("bindingrule", "binding rule", "BindingRuleID", "", _BINDING_RULE_FIELDS)
_list_endpoint(
    "policy",
    ("ID", "Name", "Description", "Datacenters", "Hash", "CreateIndex", "ModifyIndex"),
    {},
)
_list_endpoint("role", _ROLE_FIELDS, {"Policy": _has_policy})
_list_endpoint(
    "authmethod",
    (
        "Name",
        "Type",
        "DisplayName",
        "Description",
        "MaxTokenTTL",
        "TokenLocality",
        "CreateIndex",
        "ModifyIndex",
    ),
    {},
)
_list_endpoint(
    "bindingrule",
    _BINDING_RULE_FIELDS,
    {"AuthMethod": lambda r, m: r.get("AuthMethod") == m},
)
_delete_endpoint("policy", "global-management policy", "PolicyID", builtin=GLOBAL_MANAGEMENT_ID)
_delete_endpoint("role", "role", "RoleID")
_delete_endpoint("authmethod", "auth method", "AuthMethodName")
_delete_endpoint("bindingrule", "binding rule", "BindingRuleID")


# ---- auth methods and binding rules (stored; no login against them) ------------------------------

AUTH_METHOD_TYPES = ("kubernetes", "jwt", "oidc", "aws-iam")


@endpoint("ACL.AuthMethodSet")
async def auth_method_set(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    _require(node, args, "write")
    method = dict(args.get("AuthMethod") or {})
    name = str(method.get("Name") or "")
    if not name:
        raise RpcError("Invalid Auth Method: no Name is set")
    if not _NAME.match(name):
        raise RpcError(
            "Invalid Auth Method: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"
        )
    kind = str(method.get("Type") or "")
    existing = table(node).get("authmethod", name)
    if existing is not None and kind and kind != existing["Type"]:
        raise RpcError(f"the Type field is immutable: {kind} != {existing['Type']}")
    if kind not in AUTH_METHOD_TYPES:
        raise RpcError(f"Invalid Auth Method: Type should be one of: {AUTH_METHOD_TYPES}")
    locality = str(method.get("TokenLocality") or "")
    if locality not in ("", "local", "global"):
        raise RpcError(f"Invalid Auth Method: invalid TokenLocality {json.dumps(locality)}")
    ttl = method.get("MaxTokenTTL") or 0
    if isinstance(ttl, str):
        try:
            ttl_seconds = parse_duration(ttl)
        except GoError as exc:
            raise RpcError(str(exc)) from None
    else:
        ttl_seconds = float(ttl) / 1e9
    record = {
        "Name": name,
        "Type": kind,
        "DisplayName": str(method.get("DisplayName") or ""),
        "Description": str(method.get("Description") or ""),
        "MaxTokenTTL": format_duration(ttl_seconds) if ttl_seconds else "0s",
        "TokenLocality": locality,
        "Config": method.get("Config") or None,
    }
    stored = await _apply(node, {"Op": "authmethod-set", "Record": record})
    return {k: stored[k] for k in _AUTH_METHOD_FIELDS if k in stored}


BIND_TYPES = ("service", "node", "role", "templated-policy", "policy")


@endpoint("ACL.BindingRuleSet")
async def binding_rule_set(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    _require(node, args, "write")
    rule = dict(args.get("BindingRule") or {})
    existing = _existing(node, "bindingrule", str(rule.get("ID") or ""), "binding rule")
    method = str(rule.get("AuthMethod") or "")
    if not method:
        raise RpcError("Invalid Binding Rule: no AuthMethod is set")
    if table(node).get("authmethod", method) is None:
        raise RpcError(f"Invalid Binding Rule: unknown AuthMethod {json.dumps(method)}")
    if existing is not None and existing["AuthMethod"] != method:
        raise RpcError("Invalid Binding Rule: the AuthMethod field is immutable")
    bind_type = str(rule.get("BindType") or "")
    if bind_type not in BIND_TYPES:
        raise RpcError(f"Invalid Binding Rule: unknown BindType {json.dumps(bind_type)}")
    if not rule.get("BindName"):
        raise RpcError("Invalid Binding Rule: no BindName is set")
    record = {
        "ID": existing["ID"] if existing else new_uuid(node),
        "Description": str(rule.get("Description") or ""),
        "AuthMethod": method,
        "Selector": str(rule.get("Selector") or ""),
        "BindType": bind_type,
        "BindName": str(rule.get("BindName")),
    }
    if rule.get("BindVars"):
        record["BindVars"] = rule["BindVars"]
    stored = await _apply(node, {"Op": "bindingrule-set", "Record": record})
    return {k: stored[k] for k in _BINDING_RULE_FIELDS if k in stored}


@endpoint("ACL.Login")
async def login(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    _enabled(node)
    auth = dict(args.get("Auth") or {})
    name = str(auth.get("AuthMethod") or "")
    if table(node).get("authmethod", name) is None:
        raise RpcError(f'auth method "{name}" not found')
    # consim validates no bearer token against any backend.
    raise RpcError("Permission denied: consim does not validate bearer tokens")


@endpoint("ACL.Logout")
async def logout(node: Server, args: dict[str, Any]) -> bool:
    _enabled(node)
    secret = str(args.get("Token") or "")
    record = table(node).by_secret(secret) if secret else None
    if record is None:
        raise RpcError(ERR_ACL_NOT_FOUND)
    if not record.get("AuthMethod"):
        raise RpcError("Permission denied: token wasn't created via login")
    await _apply(node, {"Op": "token-delete", "Key": record["AccessorID"]})
    return True
