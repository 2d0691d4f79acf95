"""Facts of the run in a step's note: ``{leader}``, ``{term}``, ``{role:dc1-s5}``...

A note is shown when its step starts, so a placeholder is filled from the cluster as it is then
(before the step's action runs), in the step's datacenter:

=================  ==========================================================================
``{leader}``       the leader's name (``no leader`` when there is none)
``{term}``         the leader's term (the highest term of the datacenter when it has no leader)
``{voters}``       how many voters the leader's Raft configuration has (``?`` with no leader)
``{name:T}``       the server target ``T`` names now (``{name:follower}``, ``{name:last-killed}``)
``{role:T}``       ``leader``, ``follower``, ``candidate``, ``down`` or ``paused``
``{term:T}``       the term of ``T``; ``{commit:T}`` its commit index; ``{index:T}`` its last
                   log index (what ``list-peers`` prints as Commit Index)
=================  ==========================================================================

``T`` is a server name or a role, as in a step's ``on``. A role that names nobody now fills in as
``(none)`` rather than failing the step: a note explains, it does not test. ``{rpc:NAME}``,
``{host:NAME}`` and ``{http:NAME}`` are left as written in a note (a note may explain them).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from consim.scenario.base import ROLE_TARGETS, Step, StepFailed, Target

if TYPE_CHECKING:
    from consim.scenario.base import Checker
    from consim.scenario.context import StepContext

NOTE_PLACEHOLDER = re.compile(r"\{([a-z]+)(?::([^{}]+))?\}")
BARE = ("leader", "term", "voters")
WITH_TARGET = ("name", "role", "term", "commit", "index")
LEFT_AS_WRITTEN = ("rpc", "host", "http")


def check_note(c: Checker, text: str) -> None:
    """Validation: every placeholder is one of the facts above, naming a server or a role."""
    for m in NOTE_PLACEHOLDER.finditer(text):
        fact, target = m.group(1), m.group(2)
        if fact in LEFT_AS_WRITTEN:
            continue
        if target is None and fact in BARE:
            continue
        if target is not None and fact in WITH_TARGET:
            if target not in c.servers and target not in ROLE_TARGETS:
                raise c.fail(
                    "note",
                    f"{m.group(0)} names no server (expected one of {', '.join(c.servers)} "
                    f"or a role: {', '.join(ROLE_TARGETS)})",
                )
            continue
        raise c.fail(
            "note",
            f"unknown placeholder {m.group(0)} (expected {{leader}}, {{term}}, {{voters}}, "
            "{name:T}, {role:T}, {term:T}, {commit:T} or {index:T} with T a server or a role)",
        )


def fill_note(ctx: StepContext, step: Step, text: str) -> str:
    """The note with its placeholders filled from the cluster now."""

    def fact(m: re.Match[str]) -> str:
        what, target = m.group(1), m.group(2)
        if what in LEFT_AS_WRITTEN:
            return m.group(0)
        dc = step.dc or ctx.default_dc
        if target is None:
            leader = ctx.cluster.leader(dc)
            if what == "leader":
                return leader.name if leader is not None else "no leader"
            if what == "term":
                if leader is not None and leader.core is not None:
                    return str(leader.core.term)
                return str(ctx.max_term(dc))
            voters = ctx.voters(dc)
            return "?" if voters is None else str(voters)
        try:
            name = ctx.resolve(Target(target, step.dc), step)
        except StepFailed:
            return "(none)"
        if what == "name":
            return name
        node = ctx.cluster.node(name)
        status = node.status()
        if what == "role":
            if status["state"] == "down":
                return "down"
            return "paused" if status.get("paused") else str(status["state"])
        if status["state"] == "down":
            return "(down)"
        key = {"term": "term", "commit": "commit_index", "index": "last_index"}[what]
        return str(status[key])

    return NOTE_PLACEHOLDER.sub(fact, text)
