"""``assert = { leader_not = "old-leader", term_increased = true, ... }``: conditions on the
cluster's state, polled until they all hold or ``within`` passes. Each key is one :class:`Check`
(registered in ``CHECKS``); problems are reported in the order the table gives the keys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from consim.scenario.actions.base import Action
from consim.scenario.base import ActionArgs, Checker, Step, StepFailed, Target, shown

# "not-leader": running and not leader. A deposed leader cut off in a minority keeps starting
# pre-vote elections (hashicorp/raft stays in the candidate state), so follower and candidate are
# both what Consul shows there; what matters to the learner is that it stopped leading.
SERVER_STATES = ("leader", "follower", "candidate", "not-leader", "down", "paused")

if TYPE_CHECKING:
    from consim.scenario.context import StepContext
    from consim.server.node import ServerNode


class Check:
    """One assertion key's checked value."""

    def shown(self) -> str:
        """The value as the timeline label shows it (as written in TOML)."""
        raise NotImplementedError

    def problems(
        self, ctx: StepContext, step: Step, dc: str, leader: ServerNode | None
    ) -> list[str]:
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class _LeaderVersus(Check):
    """``leader_is`` / ``leader_not``: the datacenter's leader against one resolved target."""

    target: Target

    def shown(self) -> str:
        return shown(self.target)

    def problems(
        self, ctx: StepContext, step: Step, dc: str, leader: ServerNode | None
    ) -> list[str]:
        try:
            name = ctx.resolve(self.target, step)
        except StepFailed as exc:
            return [str(exc)]
        return self.compare(name, dc, leader)

    def compare(self, name: str, dc: str, leader: ServerNode | None) -> list[str]:
        raise NotImplementedError


class LeaderIs(_LeaderVersus):
    def compare(self, name: str, dc: str, leader: ServerNode | None) -> list[str]:
        if leader is None or leader.name != name:
            return [f"leader is {leader.name if leader else 'nobody'}, expected {name}"]
        return []


class LeaderNot(_LeaderVersus):
    def compare(self, name: str, dc: str, leader: ServerNode | None) -> list[str]:
        if leader is None:
            return [f"{dc} has no leader"]
        if leader.name == name:
            return [f"{name} is still the leader"]
        return []


@dataclass(frozen=True, eq=False)
class Flag(Check):
    """A key whose only value is ``true``: the check is its name's."""

    key: str

    def shown(self) -> str:
        return "true"

    def problems(
        self, ctx: StepContext, step: Step, dc: str, leader: ServerNode | None
    ) -> list[str]:
        return _FLAGS[self.key](ctx, dc, leader)


def _no_leader(ctx: StepContext, dc: str, leader: ServerNode | None) -> list[str]:
    if leader is not None:
        return [f"{leader.name} is leader (term {leader.core.term if leader.core else '?'})"]
    return []


def _term_increased(ctx: StepContext, dc: str, leader: ServerNode | None) -> list[str]:
    before = ctx.roles.fault_term.get(dc, 0)
    if leader is None or leader.core is None:
        return [f"{dc} has no leader"]
    if leader.core.term <= before:
        return [f"leader term {leader.core.term} is not above {before}"]
    return []


def _running(ctx: StepContext, dc: str) -> list[Any]:
    return [n for n in ctx.cluster.datacenter_servers(dc) if n.running and n.core is not None]


def _logs_equal(ctx: StepContext, dc: str, leader: ServerNode | None) -> list[str]:
    running = _running(ctx, dc)
    seen = {(n.core.last_index, n.core.last_term) for n in running}
    values = ", ".join(f"{n.name}={n.core.last_index}/{n.core.last_term}" for n in running)
    return [f"last index/term differ: {values}"] if len(seen) > 1 else []


def _commit_converged(ctx: StepContext, dc: str, leader: ServerNode | None) -> list[str]:
    running = _running(ctx, dc)
    seen = {(n.core.commit_index, n.fsm.last_applied) for n in running}
    values = ", ".join(f"{n.name}={n.core.commit_index}/{n.fsm.last_applied}" for n in running)
    return [f"commit/applied index differ: {values}"] if len(seen) > 1 else []


_FLAGS: dict[str, Callable[[StepContext, str, ServerNode | None], list[str]]] = {
    "no_leader": _no_leader,
    "term_increased": _term_increased,
    "logs_equal": _logs_equal,
    "commit_converged": _commit_converged,
}


@dataclass(frozen=True, eq=False)
class States(Check):
    states: dict[Target, str]

    def shown(self) -> str:
        return shown(self.states)

    def problems(
        self, ctx: StepContext, step: Step, dc: str, leader: ServerNode | None
    ) -> list[str]:
        out = []
        for target, expected in self.states.items():
            try:
                name = ctx.resolve(target, step)
            except StepFailed as exc:
                out.append(str(exc))
                continue
            status = ctx.cluster.node(name).status()
            actual = "paused" if status.get("paused") else status["state"]
            if expected == "not-leader":
                if actual in ("leader", "down", "paused"):
                    out.append(f"{name} is {actual}, expected it running and not leader")
            elif actual != expected:
                out.append(f"{name} is {actual}, expected {expected}")
        return out


@dataclass(frozen=True, eq=False)
class Voters(Check):
    count: int

    def shown(self) -> str:
        return shown(self.count)

    def problems(
        self, ctx: StepContext, step: Step, dc: str, leader: ServerNode | None
    ) -> list[str]:
        voters = ctx.voters(dc)
        return [f"{voters} voters, expected {self.count}"] if voters != self.count else []


@dataclass(frozen=True, eq=False)
class Kv(Check):
    """Read straight from each server's state machine (no request)."""

    key: str
    value: str | None
    on: list[Target] | Literal["all-running"]

    def shown(self) -> str:
        return shown({"key": self.key, "value": self.value, "on": self.on})

    def problems(
        self, ctx: StepContext, step: Step, dc: str, leader: ServerNode | None
    ) -> list[str]:
        if self.on == "all-running":
            names = [n.name for n in ctx.cluster.datacenter_servers(dc) if n.running]
        else:
            names = [ctx.resolve(t, step) for t in self.on]
        out = []
        for name in names:
            _, entry = ctx.cluster.node(name).fsm.get(self.key)
            actual = None if entry is None else (entry.value or b"").decode()
            if actual != self.value:
                out.append(f"{name} has {self.key}={actual!r}, expected {self.value!r}")
        return out


def _p_target(cls: type[LeaderIs] | type[LeaderNot]) -> Callable[..., Check]:
    return lambda c, f, v, dc: cls(c.target(f, v, dc))


def _p_flag(key: str) -> Callable[..., Check]:
    def parse(c: Checker, f: str, v: Any, dc: str | None) -> Check:
        if v is not True:
            raise c.expected(f, "true", v)
        return Flag(key)

    return parse


def _p_state(c: Checker, f: str, v: Any, dc: str | None) -> Check:
    if not isinstance(v, dict) or not v:
        raise c.expected(f, 'a table like { "dc1-s1" = "leader" }', v)
    states = {}
    for name, state in v.items():
        target = c.target(f"{f}.{name}", name, dc)
        if state not in SERVER_STATES:
            raise c.expected(f"{f}.{name}", "one of " + ", ".join(SERVER_STATES), state)
        states[target] = state
    return States(states)


def _p_kv(c: Checker, f: str, v: Any, dc: str | None) -> Check:
    # { key = "x", value = "y", on = [...] }
    if not isinstance(v, dict) or "key" not in v:
        raise c.expected(f, 'a table like { key = "k", value = "v" }', v)
    on = v.get("on", "all-running")
    key = c.string(f"{f}.key", v["key"])
    value = None if "value" not in v else c.string(f"{f}.value", v["value"])
    return Kv(
        key,
        value,
        on
        if on == "all-running"
        else [c.target(f"{f}.on", t, dc) for t in (on if isinstance(on, list) else [on])],
    )


# Each key and its parser: (checker, field name, value, the step's dc) -> Check.
CHECKS: dict[str, Callable[[Checker, str, Any, str | None], Check]] = {
    "leader": _p_target(LeaderIs),
    "leader_not": _p_target(LeaderNot),
    "no_leader": _p_flag("no_leader"),
    "term_increased": _p_flag("term_increased"),
    "logs_equal": _p_flag("logs_equal"),
    "commit_converged": _p_flag("commit_converged"),
    "state": _p_state,
    "voters": lambda c, f, v, dc: Voters(c.integer(f, v, 0)),
    "kv": _p_kv,
}


@dataclass(frozen=True, eq=False)
class AssertArgs(ActionArgs):
    checks: dict[str, Check]
    within: float
    within_text: str

    def describe(self) -> str:
        return "assert " + ", ".join(f"{k}={v.shown()}" for k, v in self.checks.items())


class Assert(Action[AssertArgs]):
    name = "assert"
    keys = frozenset({"within"})

    def parse(self, c: Checker, value: Any, step: dict[str, Any], dc: str | None) -> AssertArgs:
        if not isinstance(value, dict) or not value:
            raise c.expected("assert", 'a table like { leader = "dc1-s2" }', value)
        checks: dict[str, Check] = {}
        for k, v in value.items():
            f = f"assert.{k}"
            if k not in CHECKS:
                raise c.fail(f, f"unknown assertion (expected one of {', '.join(sorted(CHECKS))})")
            checks[k] = CHECKS[k](c, f, v, dc)
        within, within_text = c.duration("within", step.get("within", "0s"))
        return AssertArgs(checks, within, within_text)

    async def run(self, ctx: StepContext, step: Step, args: AssertArgs) -> str:
        problems: list[str] = []
        dc = step.dc or ctx.default_dc

        def check() -> bool:
            leader = ctx.cluster.leader(dc)
            problems.clear()
            for c in args.checks.values():
                problems.extend(c.problems(ctx, step, dc, leader))
            return not problems

        keys = [c.key for c in args.checks.values() if isinstance(c, Kv)]
        if not await ctx.until(check, args.within, kv=keys):
            raise StepFailed("; ".join(problems))
        return "holds"


ACTIONS = (Assert(),)
