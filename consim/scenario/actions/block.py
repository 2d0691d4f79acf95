"""``block = "a"``, ``to = "b"``: drop a's traffic to b (one way)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consim.scenario.actions.base import Action
from consim.scenario.base import ActionArgs, Checker, Step, Target

if TYPE_CHECKING:
    from consim.scenario.context import StepContext


@dataclass(frozen=True, eq=False)
class BlockArgs(ActionArgs):
    target: Target
    to: Target

    def describe(self) -> str:
        return f"block {self.target} -> {self.to}"


class Block(Action[BlockArgs]):
    name = "block"
    keys = frozenset({"to"})

    def parse(self, c: Checker, value: Any, step: dict[str, Any], dc: str | None) -> BlockArgs:
        if "to" not in step:
            raise c.fail(
                "to", "required: the server whose incoming traffic from 'block' is dropped"
            )
        return BlockArgs(c.target("block", value, dc), c.target("to", step["to"], dc))

    async def run(self, ctx: StepContext, step: Step, args: BlockArgs) -> str:
        src = ctx.resolve(args.target, step)
        dst = ctx.resolve(args.to, step)
        ctx.cluster.block(src, dst)
        return f"{src} -> {dst}"


ACTIONS = (Block(),)
