"""The shape of a scenario action: typed arguments, ``parse``, ``run`` (``describe`` is the
arguments' own method, so a validated step can label itself without the registry)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from consim.scenario.base import ActionArgs, Checker, Step

if TYPE_CHECKING:
    from consim.scenario.context import StepContext

A = TypeVar("A", bound=ActionArgs)


class BackgroundJob:
    """A step that runs while the next steps do (``load`` with ``background = true``)."""

    async def run(self) -> str:
        """The step's detail when it ends; raises StepFailed like ``Action.run``."""
        raise NotImplementedError

    def partial(self) -> str:
        """What it had done when the run ended before it did."""
        raise NotImplementedError


class Action(Generic[A]):
    """One ``[[step]]`` action. Subclasses set ``name`` and ``keys`` and define the methods."""

    name: ClassVar[str]
    # The step keys it accepts besides its own name, ``note`` and ``dc``.
    keys: ClassVar[frozenset[str]] = frozenset()

    def parse(self, c: Checker, value: Any, step: dict[str, Any], dc: str | None) -> A:
        """Check the step's fields; raise ``c.fail(...)``/``c.expected(...)`` at the first error.

        ``value`` is the action key's value, ``step`` the whole table, ``dc`` the step's ``dc``;
        ``c.cluster`` is the file's parsed ``[cluster]``.
        """
        raise NotImplementedError

    async def run(self, ctx: StepContext, step: Step, args: A) -> str:
        """Do the step; return its detail line, or raise StepFailed (or ClusterError)."""
        raise NotImplementedError

    def background(self, args: A) -> bool:
        """Whether the step runs in the background (then :meth:`start` is called, not run)."""
        return False

    def start(self, ctx: StepContext, step: Step, args: A) -> BackgroundJob:
        raise NotImplementedError
