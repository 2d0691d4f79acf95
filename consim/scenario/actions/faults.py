"""The fault verbs on one server (or a group): ``kill``, ``restart``, ``stop``, ``pause``,
``resume``, ``isolate`` = TARGET. They share one shape; each verb's run is its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from consim.scenario.actions.base import Action
from consim.scenario.base import ActionArgs, Checker, Step, Target

if TYPE_CHECKING:
    from consim.scenario.context import StepContext


@dataclass(frozen=True, eq=False)
class FaultArgs(ActionArgs):
    verb: str
    target: Target

    def describe(self) -> str:
        return f"{self.verb} {self.target}"


class _Fault(Action[FaultArgs]):
    # Whether the verb takes a group ("survivors": every running server of the datacenter).
    group: ClassVar[bool] = False

    def parse(self, c: Checker, value: Any, step: dict[str, Any], dc: str | None) -> FaultArgs:
        return FaultArgs(self.name, c.target(self.name, value, dc, group=self.group))


class Kill(_Fault):
    name = "kill"
    group = True

    async def run(self, ctx: StepContext, step: Step, args: FaultArgs) -> str:
        names = ctx.resolve_many(args.target, step)
        ctx.note_fault(names)
        for name in names:
            ctx.cluster.kill(name)
            ctx.roles.last_killed = name
        return ", ".join(names)


class Restart(_Fault):
    name = "restart"
    group = True

    async def run(self, ctx: StepContext, step: Step, args: FaultArgs) -> str:
        names = ctx.resolve_many(args.target, step)
        # Restarting several at once: kill them all first, as an operator stopping every
        # survivor before starting them again would.
        killed = False
        for name in names:
            if ctx.cluster.node(name).running:
                ctx.cluster.kill(name)
                killed = True
        if killed:
            # Let the killed incarnation unwind completely first: ServerNode.run's ``finally``
            # closes ``self.storage``, which a new incarnation started too early has replaced
            # (Cluster.restart's single ``sleep(0)`` is not enough; reported to its owner).
            await ctx.sleep(0.01)
        for name in names:
            await ctx.cluster.restart(name)
        return ", ".join(names)


class Stop(_Fault):
    name = "stop"
    group = True

    async def run(self, ctx: StepContext, step: Step, args: FaultArgs) -> str:
        names = ctx.resolve_many(args.target, step)
        ctx.note_fault(names)
        for name in names:
            await ctx.cluster.stop(name)
            ctx.roles.last_killed = name
        return ", ".join(names)


class Pause(_Fault):
    name = "pause"

    async def run(self, ctx: StepContext, step: Step, args: FaultArgs) -> str:
        name = ctx.resolve(args.target, step)
        ctx.note_fault([name])
        ctx.cluster.pause(name)
        return name


class Resume(_Fault):
    name = "resume"

    async def run(self, ctx: StepContext, step: Step, args: FaultArgs) -> str:
        name = ctx.resolve(args.target, step)
        ctx.cluster.resume(name)
        return name


class Isolate(_Fault):
    name = "isolate"

    async def run(self, ctx: StepContext, step: Step, args: FaultArgs) -> str:
        name = ctx.resolve(args.target, step)
        ctx.note_fault([name])
        ctx.cluster.isolate(name)
        return name


ACTIONS = (Kill(), Restart(), Stop(), Pause(), Resume(), Isolate())
