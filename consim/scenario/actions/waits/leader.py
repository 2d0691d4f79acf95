"""Leadership conditions, one shape (poll a predicate on the step's datacenter): ``leader``,
``new-leader`` (not the old leader, in a term above the last fault's), ``no-leader``,
``voters`` (+ ``count``: voters in the leader's latest configuration)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consim.scenario.actions.waits.base import Condition, ConditionArgs, NoArgs, P, WaitFor
from consim.scenario.base import Checker, Step, StepFailed

if TYPE_CHECKING:
    from consim.scenario.context import StepContext
    from consim.server.node import ServerNode


def acknowledged_leader(ctx: StepContext, dc: str) -> ServerNode | None:
    """The leader, once a majority of voters follows it in its term."""
    leader = ctx.cluster.leader(dc)
    if leader is not None and ctx.cluster.acknowledged(leader):
        return leader
    return None


class _Polled(Condition[P]):
    def predicate(self, ctx: StepContext, dc: str, wait: WaitFor[P]) -> Callable[[], bool]:
        raise NotImplementedError

    def failure_extra(self, ctx: StepContext, dc: str) -> str:
        return ""

    async def run(self, ctx: StepContext, step: Step, wait: WaitFor[P]) -> str:
        dc = ctx.dc_of(step)
        start = ctx.events.now()
        ok = await ctx.until(self.predicate(ctx, dc, wait), wait.within)
        took = ctx.events.now() - start
        if not ok:
            raise StepFailed(
                f"no {self.name} in {dc} within {wait.within_text}{self.failure_extra(ctx, dc)}; "
                f"now: {ctx.describe_dc(dc)}"
            )
        leader = ctx.cluster.leader(dc)
        who = f": {leader.name} term {leader.core.term}" if leader and leader.core else ""
        return f"{self.name} after {took:.3f}s{who if self.name != 'no-leader' else ''}"


class Leader(_Polled[NoArgs]):
    name = "leader"

    def parse(self, c: Checker, step: dict[str, Any], dc: str | None) -> NoArgs:
        return NoArgs()

    def predicate(self, ctx: StepContext, dc: str, wait: WaitFor[NoArgs]) -> Callable[[], bool]:
        return lambda: acknowledged_leader(ctx, dc) is not None


class NewLeader(_Polled[NoArgs]):
    name = "new-leader"

    def parse(self, c: Checker, step: dict[str, Any], dc: str | None) -> NoArgs:
        return NoArgs()

    def predicate(self, ctx: StepContext, dc: str, wait: WaitFor[NoArgs]) -> Callable[[], bool]:
        old = ctx.roles.old_leader
        before = ctx.roles.fault_term.get(dc, 0)

        def new_leader() -> bool:
            leader = acknowledged_leader(ctx, dc)
            return (
                leader is not None
                and leader.name != old
                and leader.core is not None
                and leader.core.term > before
            )

        return new_leader


class NoLeader(_Polled[NoArgs]):
    name = "no-leader"

    def parse(self, c: Checker, step: dict[str, Any], dc: str | None) -> NoArgs:
        return NoArgs()

    def predicate(self, ctx: StepContext, dc: str, wait: WaitFor[NoArgs]) -> Callable[[], bool]:
        return lambda: ctx.cluster.leader(dc) is None


@dataclass(frozen=True, eq=False)
class VotersArgs(ConditionArgs):
    count: int

    def describe(self) -> str:
        return f" {self.count}"


class Voters(_Polled[VotersArgs]):
    name = "voters"
    keys = ("count",)

    def parse(self, c: Checker, step: dict[str, Any], dc: str | None) -> VotersArgs:
        if "count" not in step:
            raise c.fail("count", 'required with wait = "voters"')
        return VotersArgs(c.integer("count", step["count"], 1))

    def predicate(self, ctx: StepContext, dc: str, wait: WaitFor[VotersArgs]) -> Callable[[], bool]:
        return lambda: ctx.voters(dc) == wait.params.count

    def failure_extra(self, ctx: StepContext, dc: str) -> str:
        return f" (voters: {ctx.voters(dc)})"


CONDITIONS = (Leader(), NewLeader(), NoLeader(), Voters())
