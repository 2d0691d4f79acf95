"""Faults on a link, one shape: ``loss = { from, to, probability }`` and
``delay = { from, to, seconds }`` (``from``/``to`` default to ``"*"``, every server; a
datacenter's name means every server of that datacenter)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from consim.scenario.actions.base import Action
from consim.scenario.base import ActionArgs, Checker, Step, Target

if TYPE_CHECKING:
    from consim.scenario.context import StepContext


@dataclass(frozen=True, eq=False)
class LinkArgs(ActionArgs):
    kind: str  # loss | delay
    source: Target | str  # "*", a datacenter's name or a target
    to: Target | str
    value: float  # a probability, or seconds

    def describe(self) -> str:
        return f"{self.kind} {self.source} -> {self.to} {self.value}"


class _Link(Action[LinkArgs]):
    amount: ClassVar[str]  # the amount's key

    def parse(self, c: Checker, value: Any, step: dict[str, Any], dc: str | None) -> LinkArgs:
        kind, key = self.name, self.amount
        example = f'{{ from = "dc1-s1", to = "*", {key} = ... }}'
        value = c.table(kind, value, example, ("from", "to", key))
        ends: dict[str, Target | str] = {}
        for end in ("from", "to"):
            v = value.get(end, "*")
            if v == "*" or (isinstance(v, str) and v in c.datacenters and v not in c.servers):
                ends[end] = v
            else:
                ends[end] = c.target(f"{kind}.{end}", v, dc)
        if key not in value:
            raise c.fail(f"{kind}.{key}", "required")
        return LinkArgs(kind, ends["from"], ends["to"], self.parse_amount(c, value[key]))

    def parse_amount(self, c: Checker, value: Any) -> float:
        raise NotImplementedError

    def ends(self, ctx: StepContext, step: Step, args: LinkArgs) -> tuple[str, str]:
        out = []
        for t in (args.source, args.to):
            out.append(t if isinstance(t, str) else ctx.resolve(t, step))
        return out[0], out[1]


class Loss(_Link):
    name = "loss"
    amount = "probability"

    def parse_amount(self, c: Checker, value: Any) -> float:
        return c.number("loss.probability", value, 0.0, 1.0)

    async def run(self, ctx: StepContext, step: Step, args: LinkArgs) -> str:
        src, dst = self.ends(ctx, step, args)
        ctx.cluster.set_loss(src, dst, args.value)
        return f"{src} -> {dst}: {args.value:g}"


class Delay(_Link):
    name = "delay"
    amount = "seconds"

    def parse_amount(self, c: Checker, value: Any) -> float:
        if isinstance(value, str):
            return c.duration("delay.seconds", value)[0]
        return c.number("delay.seconds", value, 0.0)

    async def run(self, ctx: StepContext, step: Step, args: LinkArgs) -> str:
        src, dst = self.ends(ctx, step, args)
        ctx.cluster.set_delay(src, dst, args.value)
        return f"{src} -> {dst}: {args.value:g}s"


ACTIONS = (Loss(), Delay())
