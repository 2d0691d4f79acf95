"""Autopilot's configuration (Consul's ``autopilot-config`` table)."""

from __future__ import annotations

from typing import Any

from consim.server.state.base import Table
from consim.structs import DEFAULT_AUTOPILOT


class AutopilotTable(Table):
    name = "autopilot"
    commands = {"Autopilot": "apply"}

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.config: dict[str, Any] = dict(DEFAULT_AUTOPILOT)
        self.create_index = 0
        self.modify_index = 0

    def apply(self, index: int, command: dict[str, Any]) -> bool:
        cas = command.get("CAS")
        if cas is not None and int(cas) != self.modify_index:
            return False
        config = dict(DEFAULT_AUTOPILOT)
        config.update(command.get("Config") or {})
        self.config = config
        if self.create_index == 0:
            self.create_index = index
        self.modify_index = index
        return True

    def snapshot(self) -> Any:
        return {
            "config": self.config,
            "create_index": self.create_index,
            "modify_index": self.modify_index,
        }

    def restore(self, obj: Any) -> None:
        self.config = obj.get("config") or dict(DEFAULT_AUTOPILOT)
        self.create_index = int(obj.get("create_index", 0))
        self.modify_index = int(obj.get("modify_index", 0))
