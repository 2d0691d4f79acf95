"""A FakeAgent that records what the HTTP layer asks and answers what each test sets up."""

from __future__ import annotations

from typing import Any

import pytest

from consim.http.agent import RpcError
from consim.http.app import create_app
from consim.http.inprocess import request


class FakeAgent:
    node_name = "alice"
    datacenter = "dc1"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.replies: dict[str, Any] = {}
        self.internal_errors: list[tuple[str, BaseException]] = []
        self.self_body: dict[str, Any] = {"Config": {"Datacenter": "dc1", "NodeName": "alice"}}
        self.members_body: list[dict[str, Any]] = []

    def _answer(self, name: str) -> Any:
        reply = self.replies.get(name)
        if isinstance(reply, BaseException):
            raise reply
        if callable(reply):
            return reply()
        return reply

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        self.calls.append((method, args))
        return self._answer(method)

    def agent_self(self, token: str = "") -> dict[str, Any]:
        self.calls.append(("agent_self", {"token": token}))
        self._answer("agent_self")
        return self.self_body

    def members(self, wan: bool, token: str = "") -> tuple[list[dict[str, Any]], bool]:
        self.calls.append(("members", {"wan": wan, "token": token}))
        self._answer("members")
        return self.members_body, bool(self.replies.get("members_filtered"))

    async def force_leave(self, node: str, prune: bool, token: str) -> None:
        self.calls.append(("force_leave", {"node": node, "prune": prune, "token": token}))
        self._answer("force_leave")

    async def join(self, address: str, wan: bool, token: str) -> None:
        self.calls.append(("join", {"address": address, "wan": wan, "token": token}))
        self._answer("join")

    async def leave(self, token: str) -> None:
        self.calls.append(("leave", {"token": token}))
        self._answer("leave")

    async def keyring_operation(
        self, op: str, key: str | None, relay_factor: int, local_only: bool, token: str
    ) -> list[dict[str, Any]]:
        self.calls.append(
            (
                "keyring",
                {
                    "op": op,
                    "key": key,
                    "relay_factor": relay_factor,
                    "local_only": local_only,
                    "token": token,
                },
            )
        )
        return self._answer("keyring") or []

    def report_internal_error(self, where: str, exc: BaseException) -> None:
        self.internal_errors.append((where, exc))

    @property
    def last_args(self) -> Any:
        return self.calls[-1][1]


class Client:
    def __init__(self, agent: FakeAgent) -> None:
        self.agent = agent
        self.app = create_app(agent)

    async def __call__(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        return await request(self.app, method, path, headers, body)


@pytest.fixture
def agent() -> FakeAgent:
    return FakeAgent()


@pytest.fixture
def client(agent: FakeAgent) -> Client:
    return Client(agent)


__all__ = ["FakeAgent", "Client", "RpcError"]
