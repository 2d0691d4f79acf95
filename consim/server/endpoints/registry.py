"""The one registry of the server's RPC endpoints, and the ACL checks every endpoint makes.

Each endpoint module (one per Consul endpoint family: ``status``, ``operator``, ``kvs``,
``internal``) registers its handlers with ``@endpoint("Family.Method")``; importing
``consim.server.endpoints`` loads them all. A handler runs on the server that serves the request
(after ``forwarding`` has done the datacenter and leader forwarding) and reaches that server only
through ``consim.server.interface.Server``. ACLs are checked there, as Consul does: a follower
with no leader answers ``No cluster leader`` before it would ever answer ``Permission denied``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from consim.acl import ACLNotFound, Authorizer, PermissionDenied
from consim.net.network import RpcError
from consim.server.acl_resolve import resolve
from consim.server.interface import Server
from consim.server.state.acl import ACLTable

Handler = Callable[[Server, dict[str, Any]], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}
# Methods registered with read=True (may be served stale) or local=True (answered by whichever
# server receives them); ``forwarding`` reads both.
READS: set[str] = set()
LOCALS: set[str] = set()


def endpoint(name: str, *, read: bool = False, local: bool = False) -> Callable[[Handler], Handler]:
    """Register the decorated handler as RPC method ``name``."""

    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        if read:
            READS.add(name)
        if local:
            LOCALS.add(name)
        return fn

    return register


def require(
    node: Server, args: dict[str, Any], resource: str, level: str, segment: str | None = None
) -> None:
    authorizer = authorize(node, args)
    try:
        authorizer.require(resource, level, segment)
    except PermissionDenied as exc:
        raise RpcError(str(exc)) from None


def authorize(node: Server, args: dict[str, Any]) -> Authorizer:
    """The request token's authorizer (``ACL not found`` as an RpcError)."""
    try:
        return resolve(node.acl, node.fsm.table(ACLTable), str(args.get("Token") or ""))
    except ACLNotFound as exc:
        raise RpcError(str(exc)) from None
