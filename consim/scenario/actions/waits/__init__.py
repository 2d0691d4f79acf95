"""The conditions ``wait`` knows, in the order error messages list them. Adding one: a module
with a :class:`~consim.scenario.actions.waits.base.Condition` and a line here."""

from __future__ import annotations

from typing import Any

from consim.scenario.actions.waits import keyring, leader, log, member_status
from consim.scenario.actions.waits.base import Condition, ConditionArgs, NoArgs, WaitFor

CONDITIONS: dict[str, Condition[Any]] = {
    c.name: c
    for module in (leader, member_status, keyring, log)
    for c in module.CONDITIONS  # type: ignore[attr-defined]
}

__all__ = ["CONDITIONS", "Condition", "ConditionArgs", "NoArgs", "WaitFor"]
