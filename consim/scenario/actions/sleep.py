"""``sleep = "1s"``: let (virtual or real) time pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consim.scenario.actions.base import Action
from consim.scenario.base import ActionArgs, Checker, Step

if TYPE_CHECKING:
    from consim.scenario.context import StepContext


@dataclass(frozen=True, eq=False)
class SleepArgs(ActionArgs):
    seconds: float
    text: str

    def describe(self) -> str:
        return f"sleep {self.text}"


class Sleep(Action[SleepArgs]):
    name = "sleep"

    def parse(self, c: Checker, value: Any, step: dict[str, Any], dc: str | None) -> SleepArgs:
        seconds, text = c.duration("sleep", value)
        return SleepArgs(seconds, text)

    async def run(self, ctx: StepContext, step: Step, args: SleepArgs) -> str:
        await ctx.sleep(args.seconds)
        return ""


ACTIONS = (Sleep(),)
