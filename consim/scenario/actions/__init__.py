"""Every scenario action, one module each, and the registry the parser and the runner use.

An action module defines a frozen dataclass of checked arguments (with ``describe()``, the
timeline label) and an :class:`~consim.scenario.actions.base.Action` with ``name``, ``keys`` (the
step keys it takes besides its own), ``parse`` and ``run``, and lists it in ``ACTIONS``. Adding an
action: that module and its line below (the order is the one error messages list them in).
"""

from __future__ import annotations

from typing import Any

from consim.scenario.actions import (
    assert_,
    block,
    check,
    consul,
    faults,
    heal,
    http,
    links,
    load,
    note,
    partition,
    peers_json,
    sleep,
    wait,
)
from consim.scenario.actions.base import Action, BackgroundJob

ACTIONS: dict[str, Action[Any]] = {
    a.name: a
    for module in (
        wait,
        faults,  # kill, restart, stop, pause, resume, isolate
        partition,
        block,
        heal,
        links,  # loss, delay
        http,
        consul,
        peers_json,
        load,
        check,
        sleep,
        assert_,
        note,
    )
    for a in module.ACTIONS  # type: ignore[attr-defined]
}

__all__ = ["ACTIONS", "Action", "BackgroundJob"]
