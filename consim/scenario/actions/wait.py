"""``wait = "leader" | "new-leader" | ...`` with ``within``: one action over the condition
registry in ``consim.scenario.actions.waits`` (each condition parses its own keys and runs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consim.scenario.actions.base import Action
from consim.scenario.actions.waits import CONDITIONS, ConditionArgs, WaitFor
from consim.scenario.base import ActionArgs, Checker, Step

if TYPE_CHECKING:
    from consim.scenario.context import StepContext


@dataclass(frozen=True, eq=False)
class WaitArgs(ActionArgs):
    condition: str
    within: float
    within_text: str
    params: ConditionArgs

    def describe(self) -> str:
        return f"wait {self.condition}{self.params.describe()} within {self.within_text}"


class Wait(Action[WaitArgs]):
    name = "wait"
    keys = frozenset({"within", *(k for c in CONDITIONS.values() for k in c.keys)})

    def parse(self, c: Checker, value: Any, step: dict[str, Any], dc: str | None) -> WaitArgs:
        if value not in CONDITIONS:
            raise c.expected("wait", "one of " + ", ".join(f'"{w}"' for w in CONDITIONS), value)
        within, within_text = c.duration("within", step.get("within", "10s"))
        params: ConditionArgs | None = None
        # In registry order: the chosen condition checks its keys; another's key is an error.
        for cond in CONDITIONS.values():
            if cond.name == value:
                params = cond.parse(c, step, dc)
                continue
            for k in cond.keys:
                if k in step:
                    raise c.fail(k, f'only allowed with wait = "{cond.name}"')
        assert params is not None
        return WaitArgs(value, within, within_text, params)

    async def run(self, ctx: StepContext, step: Step, args: WaitArgs) -> str:
        wait = WaitFor(args.condition, args.within, args.within_text, args.params)
        return await CONDITIONS[args.condition].run(ctx, step, wait)


ACTIONS = (Wait(),)
