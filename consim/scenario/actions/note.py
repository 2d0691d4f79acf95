"""``note = "..."`` alone: a step that only tells the learner something."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consim.scenario.actions.base import Action
from consim.scenario.base import ActionArgs, Checker, Step

if TYPE_CHECKING:
    from consim.scenario.context import StepContext


@dataclass(frozen=True, eq=False)
class NoteArgs(ActionArgs):
    def describe(self) -> str:
        return "note"


class Note(Action[NoteArgs]):
    name = "note"

    def parse(self, c: Checker, value: Any, step: dict[str, Any], dc: str | None) -> NoteArgs:
        c.string("note", value)
        return NoteArgs()

    async def run(self, ctx: StepContext, step: Step, args: NoteArgs) -> str:
        return ""


ACTIONS = (Note(),)
