"""The server's RPC endpoints, one module per Consul endpoint family, in one registry.

``HANDLERS`` maps an RPC method (``"KVS.Get"``) to its handler; importing this package registers
every family. A new endpoint goes into its family's module with ``@endpoint("Family.Method")``
(see ``registry``); a new family is a new module imported here.
"""

from consim.server.endpoints import (
    acl,
    catalog,
    configentry,
    coordinate,
    health,
    intention,
    internal,
    kvs,
    operator,
    session,
    snapshot,
    status,
    txn,
)
from consim.server.endpoints.registry import HANDLERS, Handler, authorize, endpoint, require

__all__ = [
    "HANDLERS",
    "acl",
    "Handler",
    "authorize",
    "catalog",
    "configentry",
    "coordinate",
    "endpoint",
    "health",
    "intention",
    "internal",
    "kvs",
    "operator",
    "require",
    "session",
    "snapshot",
    "status",
    "txn",
]
