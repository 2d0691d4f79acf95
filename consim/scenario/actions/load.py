"""``load = { op, rate, duration, consistency, on, key, background }``: requests at a steady
rate; ``expect = { min_ok = 0.9 }`` is the fraction that must be answered.

Each request's latency (sent to answered, in the run's clock) is recorded: the step's detail gives
the answered rate and p50/p90/p99/max of the answered requests (``consim.bench.stats``), the
results JSON has them as numbers (``load``) and the HTML report charts them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consim.bench.stats import format_summary, summarize
from consim.scenario.actions.base import Action, BackgroundJob
from consim.scenario.base import SCENARIO_NODE, ActionArgs, Checker, Step, StepFailed, Target, short

if TYPE_CHECKING:
    from consim.scenario.context import StepContext

_KNOWN = ("rate", "duration", "op", "consistency", "on", "key", "background")

# (answered at, status, failure reason or "", sent at) per request.
Records = list[tuple[float, int | None, str, float]]


@dataclass(frozen=True, eq=False)
class LoadArgs(ActionArgs):
    rate: float
    duration: float
    duration_text: str
    op: str  # write | read
    consistency: str  # default | stale | consistent
    on: Target
    key: str
    min_ok: float | None
    background: bool

    def describe(self) -> str:
        bg = " in the background" if self.background else ""
        return (
            f"load {self.op} {self.consistency} {self.rate:g}/s for {self.duration_text} "
            f"on {self.on}{bg}"
        )


class Load(Action[LoadArgs]):
    name = "load"
    keys = frozenset({"expect"})

    def parse(self, c: Checker, value: Any, step: dict[str, Any], dc: str | None) -> LoadArgs:
        value = c.table("load", value, '{ rate = 50, duration = "5s", op = "write" }', _KNOWN)
        rate = c.number("load.rate", value.get("rate", 10), 0.1, 1000)
        duration, duration_text = c.duration("load.duration", value.get("duration", "1s"))
        op = value.get("op", "write")
        if op not in ("write", "read"):
            raise c.expected("load.op", '"write" or "read"', op)
        consistency = value.get("consistency", "default")
        if consistency not in ("default", "stale", "consistent"):
            raise c.expected("load.consistency", '"default", "stale" or "consistent"', consistency)
        if op == "write" and consistency != "default":
            raise c.fail(
                "load.consistency", "writes always go to the leader; only reads take a consistency"
            )
        key = c.string("load.key", value.get("key", "load"))
        background = value.get("background", False)
        if not isinstance(background, bool):
            raise c.expected("load.background", "true or false", background)
        expect = step.get("expect", {})
        if not isinstance(expect, dict) or any(k != "min_ok" for k in expect):
            raise c.expected(
                "expect",
                "a table like { min_ok = 0.9 } (fraction of requests answered 200)",
                expect,
            )
        min_ok = (
            c.number("expect.min_ok", expect["min_ok"], 0.0, 1.0) if "min_ok" in expect else None
        )
        return LoadArgs(
            rate=rate,
            duration=duration,
            duration_text=duration_text,
            op=op,
            consistency=consistency,
            on=c.target("load.on", value.get("on", "any"), dc),
            key=key,
            min_ok=min_ok,
            background=background,
        )

    async def run(self, ctx: StepContext, step: Step, args: LoadArgs) -> str:
        name = ctx.resolve(args.on, step)
        return await _load(ctx, args, name, [], step.number)

    def background(self, args: LoadArgs) -> bool:
        return args.background

    def start(self, ctx: StepContext, step: Step, args: LoadArgs) -> BackgroundJob:
        name = ctx.resolve(args.on, step)
        ctx.events.emit(
            SCENARIO_NODE,
            "load_started",
            {"step": step.number, "server": name, "load": args.describe()},
            message=f"step {step.number}: load started in the background",
        )
        return _BackgroundLoad(ctx, args, name, step.number)


class _BackgroundLoad(BackgroundJob):
    def __init__(self, ctx: StepContext, args: LoadArgs, name: str, number: int) -> None:
        self.ctx, self.args, self.name, self.number = ctx, args, name, number
        self.records: Records = []
        self.started = ctx.events.now()

    async def run(self) -> str:
        return await _load(self.ctx, self.args, self.name, self.records, self.number)

    def partial(self) -> str:
        return _summary(self.ctx, self.number, self.name, self.records, self.started)


async def _load(ctx: StepContext, a: LoadArgs, name: str, records: Records, number: int) -> str:
    """Requests at ``rate`` for ``duration``; ``records`` collects (answered, status, failure,
    sent)."""
    started = ctx.events.now()
    count = max(1, int(round(a.rate * a.duration)))
    interval = 1.0 / a.rate
    path = "/v1/kv/" + a.key
    if a.op == "read" and a.consistency != "default":
        path += "?" + a.consistency

    async def one(i: int) -> None:
        sent = ctx.events.now()
        if a.op == "write":
            status, _, body, error = await ctx.request(
                name, "PUT", path, body=str(i).encode(), kind="load_request"
            )
        else:
            status, _, body, error = await ctx.request(name, "GET", path, kind="load_request")
        ok = status == 200 or (a.op == "read" and status == 404)
        reason = "" if ok else (error or f"{status} {short(body.decode('utf-8', 'replace'), 60)}")
        records.append((ctx.events.now(), status, reason, sent))

    async with ctx.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(one, i)
            await ctx.sleep(interval)
    summary = _summary(ctx, number, name, records, started)
    ok = sum(1 for _, _, reason, _ in records if not reason)
    if a.min_ok is not None and ok < a.min_ok * len(records):
        raise StepFailed(f"only {summary} (expected at least {a.min_ok:.0%})")
    return summary


def _summary(ctx: StepContext, number: int, name: str, records: Records, started: float) -> str:
    """The detail line; the figures go to ``ctx.measurements`` for the step's result too.
    Latency and rate count the requests answered (200, or 404 for a read of a missing key)."""
    answered = [(sent, done - sent) for done, _, reason, sent in records if not reason]
    last = max((done for done, _, _, _ in records), default=started)
    figures = summarize([lat for _, lat in answered], last - started)
    figures["samples"] = answered  # (sent at, in the event log's clock; latency)
    ctx.measurements[number] = figures
    ok = len(answered)
    failures: dict[str, int] = {}
    for _, _, reason, _ in records:
        if reason:
            failures[reason] = failures.get(reason, 0) + 1
    summary = f"{ok}/{len(records)} answered on {name}"
    if ok:
        summary += "; " + format_summary(figures)
    if failures:
        summary += "; failures: " + ", ".join(f"{r} x{n}" for r, n in sorted(failures.items()))
    return summary


ACTIONS = (Load(),)
