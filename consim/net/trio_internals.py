"""The one place that reads trio's private run-loop state, each read with its fallback.

Virtual time needs two things trio does not offer publicly: a deterministic scheduler (the switch
trio keeps for Hypothesis) and cheap probes of the run loop (runnable tasks, the next deadline,
tasks in ``wait_all_tasks_blocked``) that the clock asks after every virtual instant. Should a trio
release move these, only this module changes: the scheduler stays random (runs still work, only
the trace hash is no longer reproducible) and the probes fall back to ``current_statistics``.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

Probes = tuple[Callable[[], int], Callable[[], float], Callable[[], bool]]


def make_trio_deterministic(seed: int) -> None:
    """Seed trio's scheduler and make it order each run batch by task creation, then shuffle.

    trio exposes this switch for Hypothesis (``_ALLOW_DETERMINISTIC_SCHEDULING``); without it the
    order in which simultaneously-ready tasks run is random per process.
    """
    try:
        import trio._core._run as trio_run
    except ImportError:  # pragma: no cover - a trio without the module: runs stay random
        return
    trio_run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    trio_run._r.seed(seed)


def scheduler_probes() -> Probes:
    """(runnable task count, trio's next deadline, is a task in ``wait_all_tasks_blocked``): what
    ``current_statistics()`` reports, read straight from the run loop when this trio exposes it
    (``current_statistics`` also polls the I/O manager, and the clock asks after every virtual
    instant). Without the run loop's internals, idle waiters cannot be seen and are not served
    before a jump. Call inside ``trio.run``."""
    try:
        from trio._core._run import GLOBAL_RUN_CONTEXT

        runner = GLOBAL_RUN_CONTEXT.runner
        runq, idle = runner.runq, runner.waiting_for_idle
        runq.__len__  # noqa: B018 - fail here, not later, if the layout differs
        return runq.__len__, runner.deadlines.next_deadline, idle.__len__
    except (ImportError, AttributeError):
        stats = trio.lowlevel.current_statistics
        return (
            lambda: stats().tasks_runnable,
            lambda: trio.current_time() + stats().seconds_to_next_deadline,
            lambda: False,
        )
