"""``check = { clients, keys, rate, duration, consistency, nemesis, interval, timeout }``: a
consim check campaign on the scenario's cluster (``consim.check.campaign``);
``expect = { verdict = "valid" | "invalid" | "any", live = ... }`` (``live``, default the
verdict: what a live run requires)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consim.scenario.actions.base import Action
from consim.scenario.base import ActionArgs, Checker, Step, StepFailed

if TYPE_CHECKING:
    from consim.scenario.context import StepContext

_KNOWN = ("clients", "keys", "rate", "duration", "consistency", "nemesis", "interval", "timeout")


@dataclass(frozen=True, eq=False)
class CheckArgs(ActionArgs):
    clients: int
    keys: int
    rate: float
    duration: float
    duration_text: str
    consistency: str  # default | stale | consistent
    nemesis: tuple[str, ...]
    interval: float
    timeout: float
    verdict: str  # valid | invalid | any
    live_verdict: str  # the same, for a live run

    def describe(self) -> str:
        return (
            f"check {self.consistency} reads, {self.clients} clients, nemesis "
            f"{','.join(self.nemesis) or 'none'} for {self.duration_text}"
        )


class Check(Action[CheckArgs]):
    name = "check"
    keys = frozenset({"expect"})

    def parse(self, c: Checker, value: Any, step: dict[str, Any], dc: str | None) -> CheckArgs:
        # Imported here: the checker is not needed to validate files without a check step.
        from consim.check.nemesis import parse_nemesis

        value = c.table("check", value, '{ duration = "20s", nemesis = "partition,kill" }', _KNOWN)
        consistency = value.get("consistency", "default")
        if consistency not in ("default", "stale", "consistent"):
            raise c.expected("check.consistency", '"default", "stale" or "consistent"', consistency)
        nemesis_text = value.get("nemesis", "partition,kill,pause")
        if not isinstance(nemesis_text, str):
            raise c.expected("check.nemesis", 'a string like "partition,kill"', nemesis_text)
        try:
            nemesis = parse_nemesis(nemesis_text)
        except ValueError as exc:
            raise c.fail("check.nemesis", str(exc)) from None
        duration, duration_text = c.duration("check.duration", value.get("duration", "20s"))
        interval, _ = c.duration("check.interval", value.get("interval", "5s"))
        timeout, _ = c.duration("check.timeout", value.get("timeout", "10s"))
        expect = step.get("expect", {})
        if not isinstance(expect, dict) or any(k not in ("verdict", "live") for k in expect):
            raise c.expected("expect", 'a table like { verdict = "valid" }', expect)
        verdict = expect.get("verdict", "valid")
        if verdict not in ("valid", "invalid", "any"):
            raise c.expected("expect.verdict", '"valid", "invalid" or "any"', verdict)
        # Live, whether a window shows depends on real timing: `live = "any"` reports the verdict
        # without failing the step (the Raft and gossip invariants must still hold).
        live_verdict = expect.get("live", verdict)
        if live_verdict not in ("valid", "invalid", "any"):
            raise c.expected("expect.live", '"valid", "invalid" or "any"', live_verdict)
        if duration <= 0 or interval <= 0 or timeout <= 0:
            raise c.fail("check", "duration, interval and timeout must be more than 0s")
        return CheckArgs(
            clients=c.integer("check.clients", value.get("clients", 5), 1),
            keys=c.integer("check.keys", value.get("keys", 3), 1),
            rate=c.number("check.rate", value.get("rate", 10), 0.1, 1000),
            duration=duration,
            duration_text=duration_text,
            consistency=consistency,
            nemesis=nemesis,
            interval=interval,
            timeout=timeout,
            verdict=verdict,
            live_verdict=live_verdict,
        )

    async def run(self, ctx: StepContext, step: Step, args: CheckArgs) -> str:
        """Fails unless the verdict is the expected one."""
        from consim.check.campaign import CheckConfig, check_on_cluster

        config = CheckConfig.from_options(args, live=ctx.live)
        result = await check_on_cluster(ctx.cluster, config, key_prefix=f"check{step.number}/")
        detail = (
            f"{result['ops']} operations, {result['faults']} faults: {result['verdict']}"
            + "".join(f"; invariant {n} violated" for n in result["invariants_failed"])
        )
        lin = result["linearizability"]
        if lin["verdict"] == "invalid":
            ops = "; ".join(_window_op(op) for op in lin["window"][:4])
            detail += f" (key {lin['failing_key']}: {ops})"
        if "judged_events" in result:  # agent processes: the judge read their own reports
            detail += (
                f"; invariants judged from {result['judged_events']} events the agents reported"
            )
        if result.get("unjudged"):
            # A gap in what the children reported would read as a broken invariant: said instead.
            raise StepFailed(
                f"{detail}; the invariants cannot be judged: " + "; ".join(result["unjudged"])
            )
        expected = args.live_verdict if ctx.live else args.verdict
        if expected != "any" and result["verdict"] != expected:
            raise StepFailed(f"{detail}; expected {expected}")
        if expected == "any" and result["invariants_failed"]:
            raise StepFailed(f"{detail}; the invariants must hold whatever the verdict")
        return detail


def _window_op(op: dict[str, Any]) -> str:
    what = {"read": "read", "write": "write", "cas": "cas"}[op["f"]]
    value = op["output"] if op["f"] == "read" else op["value"]
    end = "..." if op["complete_time"] is None else f"{op['complete_time']:.3f}"
    return (
        f"p{op['process']} {what} {json.dumps(value)} {op['type']} [{op['invoke_time']:.3f}, {end}]"
    )


ACTIONS = (Check(),)
