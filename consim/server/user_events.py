"""Consul's user events (``agent/user_event.go``): fired as serf user events named
``consul:event:<name>`` whose payload is the msgpack'd ``UserEvent``; every agent that receives
one keeps it in a ring of the last 256, which ``/v1/event/list`` shows.

An event with a node filter is kept only by agents whose name matches it (a regular
expression); a service or tag filter needs a local service that matches, which a server agent
without services never has (as in Consul).
"""

from __future__ import annotations

import re
from typing import Any

import msgpack
import trio

EVENT_PREFIX = "consul:event:"
RING_SIZE = 256  # Consul's maxUserEvents
USER_EVENT_VERSION = 1
# serf's UserEventSizeLimit default: name + payload of the serf event.
USER_EVENT_SIZE_LIMIT = 512


def encode(event: dict[str, Any]) -> bytes:
    return msgpack.packb(event, use_bin_type=True)


def decode(payload: bytes) -> dict[str, Any] | None:
    try:
        obj = msgpack.unpackb(payload, raw=False)
    except Exception:
        return None
    return obj if isinstance(obj, dict) else None


def uuid_to_uint64(uuid: str) -> int:
    """Consul's uuidToUint64: the event list's X-Consul-Index from the last event's ID."""
    hex_digits = uuid.replace("-", "")
    try:
        return int(hex_digits[:16], 16) ^ int(hex_digits[16:32], 16)
    except ValueError:
        return 0


class UserEventLog:
    """One agent's ring of received events, with a wakeup for blocking lists."""

    def __init__(self, node_name: str) -> None:
        self.node_name = node_name
        self.events: list[dict[str, Any]] = []
        self._changed = trio.Event()

    def receive(self, serf_name: str, payload: bytes, ltime: int) -> bool:
        """A serf user event arrived; True when it was kept."""
        if not serf_name.startswith(EVENT_PREFIX):
            return False
        event = decode(payload)
        if event is None:
            return False
        if not self._accepts(event):
            return False
        event["LTime"] = ltime
        self.events.append(event)
        del self.events[:-RING_SIZE]
        self._changed.set()
        self._changed = trio.Event()
        return True

    def _accepts(self, event: dict[str, Any]) -> bool:
        node_filter = str(event.get("NodeFilter") or "")
        if node_filter:
            try:
                if not re.search(node_filter, self.node_name):
                    return False
            except re.error:
                return False
        # No local services on a server agent: a service (or tag) filter never matches.
        return not event.get("ServiceFilter")

    def index(self) -> int:
        return uuid_to_uint64(str(self.events[-1].get("ID", ""))) if self.events else 0

    def listing(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if not name or e.get("Name") == name]

    async def wait_change(self) -> None:
        await self._changed.wait()
