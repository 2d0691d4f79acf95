"""The shape of a ``wait`` condition: its own step keys, parse, describe, run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from consim.scenario.base import Checker, Step

if TYPE_CHECKING:
    from consim.scenario.context import StepContext


class ConditionArgs:
    """A condition's checked keys (each condition defines a frozen dataclass of its own)."""

    def describe(self) -> str:
        """What follows the condition's name in the label (``" 3"``, ``" on KEY"``, ...)."""
        return ""


@dataclass(frozen=True, eq=False)
class NoArgs(ConditionArgs):
    pass


P = TypeVar("P", bound=ConditionArgs)


@dataclass(frozen=True, eq=False)
class WaitFor(Generic[P]):
    """What a condition's run gets: its name, how long it may take and its own keys."""

    condition: str
    within: float
    within_text: str
    params: P


class Condition(Generic[P]):
    name: ClassVar[str]
    # Step keys only this condition takes (anything but ``within``), in the order they are
    # checked: a key of another condition is an error ('only allowed with wait = "..."').
    keys: ClassVar[tuple[str, ...]] = ()

    def parse(self, c: Checker, step: dict[str, Any], dc: str | None) -> P:
        raise NotImplementedError

    async def run(self, ctx: StepContext, step: Step, wait: WaitFor[P]) -> str:
        """Wait; return the detail line or raise StepFailed."""
        raise NotImplementedError
