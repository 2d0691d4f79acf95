"""``heal = true``: undo every network fault (partitions, isolation, blocks, loss, delay)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consim.scenario.actions.base import Action
from consim.scenario.base import ActionArgs, Checker, Step

if TYPE_CHECKING:
    from consim.scenario.context import StepContext


@dataclass(frozen=True, eq=False)
class HealArgs(ActionArgs):
    def describe(self) -> str:
        return "heal"


class Heal(Action[HealArgs]):
    name = "heal"

    def parse(self, c: Checker, value: Any, step: dict[str, Any], dc: str | None) -> HealArgs:
        if value is not True:
            raise c.expected("heal", "true", value)
        return HealArgs()

    async def run(self, ctx: StepContext, step: Step, args: HealArgs) -> str:
        ctx.cluster.heal()
        return ""


ACTIONS = (Heal(),)
