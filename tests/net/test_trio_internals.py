"""consim.net.trio_internals: the run-loop probes agree with trio's public statistics, and the
fallback (a trio whose internals moved) gives the same answers."""

from __future__ import annotations

import types

import pytest
import trio

from consim.net import trio_internals


def _probe_run(fallback: bool, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float, bool]]:
    seen: list[tuple[int, float, bool]] = []

    async def main() -> None:
        if fallback:
            import trio._core._run as run

            real = run.GLOBAL_RUN_CONTEXT
            # No awaits while patched: trio itself reads the run context.
            monkeypatch.setattr(run, "GLOBAL_RUN_CONTEXT", types.SimpleNamespace())
            probes = trio_internals.scheduler_probes()
            monkeypatch.setattr(run, "GLOBAL_RUN_CONTEXT", real)
        else:
            probes = trio_internals.scheduler_probes()
        runnable, next_deadline, idle = probes
        assert (getattr(idle, "__name__", "") == "<lambda>") is fallback  # which path answered
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, 5)
            nursery.start_soon(trio.sleep, 7)
            seen.append((runnable(), next_deadline() - trio.current_time(), idle()))
            await trio.sleep(0.1)  # both sleepers parked: none runnable, next deadline ~4.9s away
            seen.append((runnable(), round(next_deadline() - trio.current_time(), 6), idle()))
            stats = trio.lowlevel.current_statistics()
            seen.append((stats.tasks_runnable, round(stats.seconds_to_next_deadline, 6), False))
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return seen


@pytest.mark.parametrize("fallback", [False, True], ids=["run loop", "fallback"])
def test_probes_match_public_statistics(fallback: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _probe_run(fallback, monkeypatch)
    assert seen[0][0] == 2  # the two children, started but not yet run
    assert seen[1] == seen[2] == (0, 4.9, False)


def test_deterministic_scheduler_is_seeded() -> None:
    def order(seed: int) -> list[int]:
        out: list[int] = []

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                for i in range(8):
                    nursery.start_soon(lambda i=i: _append(out, i))

        trio_internals.make_trio_deterministic(seed)
        trio.run(main)
        return out

    assert order(1) == order(1)
    assert len({tuple(order(s)) for s in range(6)}) > 1  # the seed matters


async def _append(out: list[int], i: int) -> None:
    out.append(i)
