"""``wait = "log"``, ``contains``: a server logs a line with that text (from the end of the
previous step on)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consim.scenario.actions.waits.base import Condition, ConditionArgs, WaitFor
from consim.scenario.base import Checker, Step, StepFailed

if TYPE_CHECKING:
    from consim.events import Event
    from consim.scenario.context import StepContext


@dataclass(frozen=True, eq=False)
class LogArgs(ConditionArgs):
    contains: str

    def describe(self) -> str:
        return f" {self.contains!r}"


class Log(Condition[LogArgs]):
    name = "log"
    keys = ("contains",)

    def parse(self, c: Checker, step: dict[str, Any], dc: str | None) -> LogArgs:
        if "contains" not in step:
            raise c.fail("contains", 'required with wait = "log": the text of a log line')
        contains = c.string("contains", step["contains"])
        if not contains:
            raise c.expected("contains", "a non-empty string", "")
        return LogArgs(contains)

    async def run(self, ctx: StepContext, step: Step, wait: WaitFor[LogArgs]) -> str:
        text = wait.params.contains
        start = ctx.events.now()
        seen: list[Event] = []

        def watch(event: Event) -> None:
            if not seen and event.node in ctx.cluster.servers and text in event.message:
                seen.append(event)

        # Lines since the previous step ended count too: a server's own process hands them over
        # a look later (in one process, the runner emits only its own events in between).
        for event in ctx.events_since_mark():
            watch(event)
        unsubscribe = ctx.events.subscribe(watch)
        try:
            ok = await ctx.until(lambda: bool(seen), wait.within)
        finally:
            unsubscribe()
        if not ok:
            raise StepFailed(f"no server logged {text!r} within {wait.within_text}")
        took = ctx.events.now() - start
        return f"{seen[0].node} after {took:.3f}s: {seen[0].message}"


CONDITIONS = (Log(),)
