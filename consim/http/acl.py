"""Consul's ``/v1/acl/*`` HTTP handlers (``agent/acl_endpoint.go``) over the ``ACL.*`` RPCs.

Bodies decode as Consul's ``lib.DecodeJSON`` does: field names match case-insensitively (so
py-consul's ``{"name": ..., "rules": ...}`` is a policy's ``Name`` and ``Rules``). With ACLs off
every handler answers ``401 ACL support disabled``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from consim.acl_rules import TEMPLATED_POLICIES
from consim.golike import GoError, decode_json_value, go_json_kind
from consim.http.context import Ctx, HTTPError, Reply, Route

_DISABLED = HTTPError(401, "ACL support disabled")

_TOKEN_BODY = (
    "AccessorID", "SecretID", "Description", "Policies", "Roles", "ServiceIdentities",
    "NodeIdentities", "TemplatedPolicies", "Local", "AuthMethod", "ExpirationTime",
    "ExpirationTTL", "Namespace", "Partition",
)  # fmt: skip
_POLICY_BODY = ("ID", "Name", "Description", "Rules", "Datacenters", "Namespace", "Partition")
_ROLE_BODY = (
    "ID", "Name", "Description", "Policies", "ServiceIdentities", "NodeIdentities",
    "TemplatedPolicies", "Namespace", "Partition",
)  # fmt: skip
_AUTH_METHOD_BODY = (
    "Name", "Type", "DisplayName", "Description", "MaxTokenTTL", "TokenLocality", "Config",
    "TokenNameFormat", "NamespaceRules", "Namespace", "Partition",
)  # fmt: skip
_BINDING_RULE_BODY = (
    "ID", "Description", "AuthMethod", "Selector", "BindType", "BindName", "BindVars",
    "Namespace", "Partition",
)  # fmt: skip


def _enabled(c: Ctx) -> None:
    if not c.agent.acl_enabled:
        raise _DISABLED


async def _decode(c: Ctx, fields: tuple[str, ...], what: str, type_name: str) -> dict[str, Any]:
    """lib.DecodeJSON into a struct: names case-insensitive, unknown names ignored."""
    try:
        raw = await c.body()
        obj = decode_json_value(raw) if raw.strip() else {}
    except GoError as exc:
        raise HTTPError(400, f"{what} decoding failed: {exc}") from None
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise HTTPError(
            400,
            f"{what} decoding failed: json: cannot unmarshal {go_json_kind(obj)} into Go value of type {type_name}",
        )
    by_lower = {f.lower(): f for f in fields}
    out: dict[str, Any] = {}
    for name, value in obj.items():
        field = by_lower.get(name.lower())
        if field is not None:
            out[field] = value
    return out


# ---- bootstrap ----------------------------------------------------------------------------------


async def bootstrap(c: Ctx) -> Any:
    _enabled(c)
    args = c.write_args()
    if c.request.content_length:
        body = await _decode(c, ("BootstrapSecret",), "Request", "api.BootstrapRequest")
        args["BootstrapSecret"] = body.get("BootstrapSecret") or ""
    try:
        token = await c.rpc("ACL.BootstrapTokens", args)
    except Exception as exc:
        message = getattr(exc, "message", str(exc))
        if "ACL bootstrap no longer allowed" in message:
            raise HTTPError(403, f"Permission denied: {message}") from None
        raise
    return {"ID": token["SecretID"], **token}


# ---- tokens -------------------------------------------------------------------------------------


async def token_list(c: Ctx) -> Any:
    _enabled(c)
    args = c.query_args()
    args.update(Policy=c.get("policy"), Role=c.get("role"), AuthMethod=c.get("authmethod"))
    reply = await c.rpc("ACL.TokenList", args)
    c.set_meta(reply)
    return list(reply.get("Tokens") or [])


async def token_create(c: Ctx) -> Any:
    _enabled(c)
    return await _token_set(c, "", create=True)


async def _token_set(c: Ctx, accessor: str, create: bool) -> Any:
    args = c.write_args()
    token = await _decode(c, _TOKEN_BODY, "Token", "structs.ACLToken")
    if not create:
        if not token.get("AccessorID"):
            token["AccessorID"] = accessor
        if token["AccessorID"] != accessor:
            raise HTTPError(400, "Token Accessor ID in URL and payload do not match")
    args.update(ACLToken=token, Create=create)
    return await c.rpc("ACL.TokenSet", args)


async def token_self(c: Ctx) -> Any:
    _enabled(c)
    args = c.query_args()
    args.update(TokenID=args["Token"], TokenIDType="secret")
    reply = await c.rpc("ACL.TokenRead", args)
    c.set_meta(reply)
    return reply["Token"]


async def token_crud(c: Ctx) -> Any:
    _enabled(c)
    accessor = c.rest
    if c.method == "PUT" and accessor.endswith("/clone"):
        accessor = accessor[: -len("/clone")]
        args = c.write_args()
        token = await _decode(c, _TOKEN_BODY, "Token", "structs.ACLToken")
        token["AccessorID"] = accessor
        args["ACLToken"] = token
        return await c.rpc("ACL.TokenClone", args)
    if not accessor and c.method != "PUT":
        raise HTTPError(400, "Missing token AccessorID")
    if c.method == "GET":
        args = c.query_args()
        args.update(TokenID=accessor, TokenIDType="accessor")
        reply = await c.rpc("ACL.TokenRead", args)
        c.set_meta(reply)
        return reply["Token"]
    if c.method == "PUT":
        return await _token_set(c, accessor, create=False)
    args = c.write_args()
    args["TokenID"] = accessor
    try:
        await c.rpc("ACL.TokenDelete", args)
    except Exception as exc:
        if getattr(exc, "message", str(exc)) == "ACL not found":
            raise HTTPError(404, "Cannot find token to delete") from None
        raise
    return True


# ---- policies, roles, auth methods, binding rules ---------------------------------------------


def _family(
    rpc: str,
    out: str,
    list_out: str,
    body_fields: tuple[str, ...],
    what: str,
    type_name: str,
    key_arg: str,
    name_arg: str | None,
    key_field: str,
    missing: str,
    not_found: str | None,
    list_filters: tuple[tuple[str, str], ...] = (),
):
    """The five handlers every ACL object family has (list, create, read/update/delete by key,
    read by name), as Consul's ACL<Family>List / ACL<Family>CRUD / ACL<Family>ReadByName."""

    async def listing(c: Ctx) -> Any:
        _enabled(c)
        args = c.query_args()
        for query, arg in list_filters:
            args[arg] = c.get(query)
        reply = await c.rpc(f"ACL.{rpc}List", args)
        c.set_meta(reply)
        return list(reply.get(list_out) or [])

    async def write(c: Ctx, key: str, create: bool) -> Any:
        args = c.write_args()
        body = await _decode(c, body_fields, what, type_name)
        if create:
            if key_field == "ID" and body.get("ID"):
                raise HTTPError(400, f"Cannot specify the ID when creating a new {what.lower()}")
        elif body.get(key_field) and body[key_field] != key:
            raise HTTPError(400, f"{what} {key_field} in URL and payload do not match")
        elif not create:
            body[key_field] = key
        args[out] = body
        return await c.rpc(f"ACL.{rpc}Set", args)

    async def create(c: Ctx) -> Any:
        _enabled(c)
        return await write(c, "", True)

    async def read(c: Ctx, key: str, name: str) -> Any:
        args = c.query_args()
        args[key_arg] = key
        if name_arg:
            args[name_arg] = name
        reply = await c.rpc(f"ACL.{rpc}Read", args)
        c.set_meta(reply)
        if reply.get(out) is None:
            if not_found is None:
                return Reply(404)
            raise HTTPError(404, not_found)
        return reply[out]

    async def crud(c: Ctx) -> Any:
        _enabled(c)
        key = c.rest
        if not key and c.method != "PUT":
            raise HTTPError(400, missing)
        if c.method == "GET":
            return await read(c, key, "")
        if c.method == "PUT":
            return await write(c, key, False)
        args = c.write_args()
        args[key_arg] = key
        try:
            await c.rpc(f"ACL.{rpc}Delete", args)
        except Exception as exc:
            if getattr(exc, "message", str(exc)) == "ACL not found":
                raise HTTPError(404, f"Cannot find {what.lower()} to delete") from None
            raise
        return True

    async def by_name(c: Ctx) -> Any:
        _enabled(c)
        if not c.rest:
            raise HTTPError(400, f"Missing {what.lower()} Name")
        return await read(c, "", c.rest)

    return listing, create, crud, by_name


policy_list, policy_create, policy_crud, policy_by_name = _family(
    "Policy", "Policy", "Policies", _POLICY_BODY, "Policy", "structs.ACLPolicy", "PolicyID",
    "PolicyName", "ID", "Missing policy ID", "Requested policy does not exist: ACL not found",
)  # fmt: skip
role_list, role_create, role_crud, role_by_name = _family(
    "Role", "Role", "Roles", _ROLE_BODY, "Role", "structs.ACLRole", "RoleID", "RoleName", "ID",
    "Missing role ID", None, (("policy", "Policy"),),
)  # fmt: skip
method_list, method_create, method_crud, _method_by_name = _family(
    "AuthMethod", "AuthMethod", "AuthMethods", _AUTH_METHOD_BODY, "AuthMethod",
    "structs.ACLAuthMethod", "AuthMethodName", None, "Name", "Missing auth method name", None,
)  # fmt: skip
rule_list, rule_create, rule_crud, _rule_by_name = _family(
    "BindingRule", "BindingRule", "BindingRules", _BINDING_RULE_BODY, "BindingRule",
    "structs.ACLBindingRule", "BindingRuleID", None, "ID", "Missing binding rule ID", None,
    (("authmethod", "AuthMethod"),),
)  # fmt: skip


# ---- templated policies (answered by the agent from its builtin list) --------------------------


def _templates() -> dict[str, tuple[str, str, str]]:
    return TEMPLATED_POLICIES


_SCHEMA_NAME = (
    '{\n  "type": "object",\n  "properties": {\n    "name": { "type": "string", "$ref": '
    '"#/definitions/min-length-one" }\n  },\n  "required": ["name"],\n  "definitions": {\n'
    '    "min-length-one": {\n      "type": "string",\n      "minLength": 1\n    }\n  }\n}'
)


def _template_out(name: str) -> dict[str, Any]:
    _id, variable, template = _templates()[name]
    return {
        "TemplateName": name,
        "Schema": _SCHEMA_NAME if variable else "",
        "Template": template.replace("{{", "{").replace("}}", "}").replace("{name}", "{{.Name}}"),
        "Description": f"Gives the token or role permissions for the {name} templated policy",
    }


async def _acl_read_allowed(c: Ctx) -> None:
    # Consul checks acl:read on the agent before answering from its builtin list.
    await c.rpc("ACL.PolicyList", c.query_args())


async def templated_list(c: Ctx) -> Any:
    _enabled(c)
    await _acl_read_allowed(c)
    return {name: _template_out(name) for name in sorted(_templates())}


async def templated_read(c: Ctx) -> Any:
    _enabled(c)
    await _acl_read_allowed(c)
    if c.rest not in _templates():
        raise HTTPError(404, f"Invalid templated policy Name: {c.rest}")
    return _template_out(c.rest)


async def templated_preview(c: Ctx) -> Any:
    _enabled(c)
    await _acl_read_allowed(c)
    name = c.rest
    if name not in _templates():
        raise HTTPError(404, f"Invalid templated policy Name: {name}")
    body = await _decode(c, ("Name",), "Request", "structs.ACLTemplatedPolicyVariables")
    _id, variable, template = _templates()[name]
    value = str(body.get("Name") or "")
    if variable and not value:
        raise HTTPError(400, "Failed to generate preview for templated policy: name is required")
    rules = template.format(name=value)
    digest = hashlib.sha256(f"{name}{value}".encode()).hexdigest()[:16]
    return {
        "ID": _id,
        "Name": f"synthetic-policy-{digest}",
        "Description": f"synthetic policy generated from templated policy: {name}",
        "Rules": rules,
        "Hash": None,
        "CreateIndex": 0,
        "ModifyIndex": 0,
    }


# ---- login / logout -----------------------------------------------------------------------------


async def login(c: Ctx) -> Any:
    _enabled(c)
    body = await _decode(
        c, ("AuthMethod", "BearerToken", "Meta"), "Failed", "structs.ACLLoginParams"
    )
    args = c.write_args()
    args["Auth"] = body
    return await c.rpc("ACL.Login", args)


async def logout(c: Ctx) -> Any:
    _enabled(c)
    args = c.write_args()
    await c.rpc("ACL.Logout", args)
    return True


ROUTES: tuple[Route, ...] = (
    Route("/v1/acl/bootstrap", False, ("PUT",), bootstrap),
    Route("/v1/acl/tokens", False, ("GET",), token_list),
    Route("/v1/acl/token", False, ("PUT",), token_create),
    Route("/v1/acl/token/self", False, ("GET",), token_self),
    Route("/v1/acl/token/", True, ("GET", "PUT", "DELETE"), token_crud),
    Route("/v1/acl/policies", False, ("GET",), policy_list),
    Route("/v1/acl/policy", False, ("PUT",), policy_create),
    Route("/v1/acl/policy/", True, ("GET", "PUT", "DELETE"), policy_crud),
    Route("/v1/acl/policy/name/", True, ("GET",), policy_by_name),
    Route("/v1/acl/roles", False, ("GET",), role_list),
    Route("/v1/acl/role", False, ("PUT",), role_create),
    Route("/v1/acl/role/", True, ("GET", "PUT", "DELETE"), role_crud),
    Route("/v1/acl/role/name/", True, ("GET",), role_by_name),
    Route("/v1/acl/auth-methods", False, ("GET",), method_list),
    Route("/v1/acl/auth-method", False, ("PUT",), method_create),
    Route("/v1/acl/auth-method/", True, ("GET", "PUT", "DELETE"), method_crud),
    Route("/v1/acl/binding-rules", False, ("GET",), rule_list),
    Route("/v1/acl/binding-rule", False, ("PUT",), rule_create),
    Route("/v1/acl/binding-rule/", True, ("GET", "PUT", "DELETE"), rule_crud),
    Route("/v1/acl/templated-policies", False, ("GET",), templated_list),
    Route("/v1/acl/templated-policy/name/", True, ("GET",), templated_read),
    Route("/v1/acl/templated-policy/preview/", True, ("POST",), templated_preview),
    Route("/v1/acl/login", False, ("POST",), login),
    Route("/v1/acl/logout", False, ("POST",), logout),
)
