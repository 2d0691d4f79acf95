"""The seam between the HTTP app and the server node.

The app never touches Raft: every request becomes one call on an :class:`Agent`. Errors come back
as :class:`RpcError` carrying Consul's exact text; the app maps texts to status codes.
"""

from __future__ import annotations

from typing import Any, Protocol

try:  # The node raises the network layer's RpcError once that module exists.
    from consim.net.network import RpcError
except ImportError:  # pragma: no cover - until consim.net.network lands

    class RpcError(Exception):  # type: ignore[no-redef]
        """An error with Consul's exact text (``No cluster leader``, ``Permission denied: ...``)."""

        def __init__(self, message: str) -> None:
            super().__init__(message)
            self.message = message


__all__ = ["Agent", "RpcError"]


class Agent(Protocol):
    """What one server node offers its HTTP API (implemented by the server node)."""

    node_name: str
    datacenter: str
    # acl.default_policy ("allow" or "deny"); the app reads it with a default of "allow".
    default_acl_policy: str
    # acl.enabled: /v1/acl/* answers 401 "ACL support disabled" without it.
    acl_enabled: bool

    # The user events this agent received (``consim.server.user_events.UserEventLog``).
    user_event_log: Any

    def new_event_id(self) -> int:
        """128 random bits for a user event's ID (seeded: virtual runs repeat)."""
        ...

    def metrics(self, token: str = "") -> dict[str, Any]:
        """The ``/v1/agent/metrics`` body (agent:read)."""
        ...

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        """Run a Consul RPC (``KVS.Get``, ``Operator.RaftGetConfiguration``...) as the local
        server would: forwarding, ACL checks, blocking. Raises :class:`RpcError`."""
        ...

    def agent_self(self, token: str = "") -> dict[str, Any]:
        """The ``/v1/agent/self`` body (agent:read; raises :class:`RpcError` with the ACL text)."""
        ...

    def members(self, wan: bool, token: str = "") -> tuple[list[dict[str, Any]], bool]:
        """The ``/v1/agent/members`` body filtered by node:read, and whether ACLs left any out."""
        ...

    async def force_leave(self, node: str, prune: bool, token: str) -> None: ...

    async def join(self, address: str, wan: bool, token: str) -> None: ...

    async def leave(self, token: str) -> None:
        """Leave gracefully, then shut the agent down (after the answer is sent)."""
        ...

    async def reload(self, token: str) -> None:
        """``PUT /v1/agent/reload`` (agent:write)."""
        ...

    def check_agent_write(self, token: str) -> None:
        """Raise :class:`RpcError` with the ACL text unless ``token`` has agent:write here."""
        ...

    def update_token(self, kind: str, value: str, token: str) -> None:
        """Set the agent's token of ``kind`` (default, agent, agent_recovery, replication,
        config_file_service_registration, dns). The app reads ``user_token`` (the default
        token) for requests that carry none, with a default of ``""``."""
        ...

    def monitor(self, level: str, token: str, json_format: bool = False) -> Any:
        """agent:read, then ``subscribe(send)``: ``send(line)`` for each later log line at
        ``level`` or above (hclog's text, or its JSON with ``json_format``); ``subscribe``
        returns the unsubscribe function."""
        ...

    async def keyring_operation(
        self, op: str, key: str | None, relay_factor: int, local_only: bool, token: str
    ) -> list[dict[str, Any]]:
        """``op`` in list|install|use|remove. One dict per pool, WAN first then each DC's LAN:
        ``{"WAN", "Datacenter", "Segment", "Keys", "PrimaryKeys", "NumNodes", "Messages",
        "Error"}``; ``Error`` is ``""`` or e.g. ``"1/3 nodes reported failure"``."""
        ...

    async def local(self, op: str, args: dict[str, Any], token: str) -> Any:
        """The agent's own services and checks: ``op`` in services, service, checks,
        service_register, service_deregister, check_register, check_deregister, check_update,
        service_maintenance, node_maintenance. Refusals are :class:`RpcError` with ``.status``."""
        ...

    def report_internal_error(self, where: str, exc: BaseException) -> None:
        """Record an unexpected exception (an event); the client only sees a 500."""
        ...
