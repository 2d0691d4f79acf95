"""Run a validated scenario against a Cluster, in virtual time or live.

The runner owns the sequence: each step's action (``consim.scenario.actions``) runs against a
:class:`~consim.scenario.context.StepContext` (the cluster, the event log, the roles), never the
runner itself. Every step is recorded twice, on purpose: as a :class:`StepResult` (what the CLI's
summary and the JSON output need) and as events in the cluster's one event log (``note``,
``step``, ``client_request``, ``consul_command``, ``load_request``), so the timeline, the HTML
report and the trace hash are all views of the same log. A failing step stops the run; later
steps are skipped.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from consim.cluster import Cluster, ClusterError
from consim.events import EventLog
from consim.scenario.actions import ACTIONS, BackgroundJob
from consim.scenario.actions.http import check_http
from consim.scenario.context import SCENARIO_NODE, StepContext, StepFailed, short
from consim.scenario.model import Scenario, Step
from consim.scenario.notes import fill_note
from consim.scenario.recorder import RunRecorder
from consim.spec import ClusterSpec

__all__ = [
    "SCENARIO_NODE",
    "RunResult",
    "ScenarioRunner",
    "StepFailed",
    "StepResult",
    "check_http",
    "cluster_spec",
    "percent",
    "run_scenario",
    "short",
]


@dataclass
class StepResult:
    number: int
    action: str
    description: str
    status: str = "skipped"  # ok | failed | skipped
    detail: str = ""
    started: float = 0.0
    finished: float = 0.0
    note: str | None = None
    background: bool = False
    # A load step's figures: requests, rps, p50/p90/p99/max_ms, and "samples" [(sent, latency)]
    # (seconds, in the event log's clock; for the report's charts, left out of the JSON).
    load: dict[str, Any] | None = None

    @property
    def took(self) -> float:
        return max(0.0, self.finished - self.started)

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.number,
            "action": self.action,
            "description": self.description,
            "status": self.status,
            "detail": self.detail,
            "started": round(self.started, 6),
            "took": round(self.took, 6),
            "note": self.note,
            **({"background": True} if self.background else {}),
            **(
                {"load": {k: v for k, v in self.load.items() if k != "samples"}}
                if self.load is not None
                else {}
            ),
        }


@dataclass
class RunResult:
    scenario: Scenario
    seed: int
    mode: str  # virtual | live
    steps: list[StepResult]
    events: EventLog
    start_time: float = 0.0
    end_time: float = 0.0
    servers: list[str] = field(default_factory=list)
    error: str | None = None  # an unexpected crash of the run itself
    # Messages and commit indexes seen from outside the event log (``record=True``, virtual).
    recorder: RunRecorder | None = None
    # Live, one ``consim agent`` process per server (``--processes``).
    processes: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and all(s.status == "ok" for s in self.steps)

    @property
    def failure(self) -> str | None:
        if self.error:
            return self.error
        for s in self.steps:
            if s.status == "failed":
                return f"step {s.number} ({s.description}): {s.detail}"
        return None

    @property
    def trace_hash(self) -> str:
        return self.events.trace_hash()

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "file": str(self.scenario.path),
            "seed": self.seed,
            "mode": self.mode,
            **({"processes": True} if self.processes else {}),
            "ok": self.ok,
            "failure": self.failure,
            "trace_hash": self.trace_hash if self.mode == "virtual" else None,
            "duration": round(self.end_time - self.start_time, 6),
            "steps": [s.to_json() for s in self.steps],
            # Every request a step made, with the whole answer.
            "requests": [
                {"time": round(e.time - self.start_time, 6), **e.fields}
                for e in self.events.events
                if e.node == SCENARIO_NODE and e.kind == "client_request"
            ],
        }


def cluster_spec(
    scenario: Scenario, seed: int, data_dir: Path | None, http_port: int, host_block: int = 0
) -> ClusterSpec:
    c = scenario.cluster
    return ClusterSpec(
        datacenters=c.datacenters,
        seed=seed,
        raft_multiplier=c.raft_multiplier,
        raft_protocol=c.raft_protocol,
        rpc_hold_timeout=c.rpc_hold_timeout,
        data_dir=data_dir,
        http_port=http_port,
        host_block=host_block,
        acl=c.acl,
        tls=c.tls,
        encrypt=c.encrypt,
        snapshot_threshold=c.snapshot_threshold,
        snapshot_interval=c.snapshot_interval,
        trailing_logs=c.trailing_logs,
        network=c.network,
        pre_vote=c.pre_vote,
        raft_peers=c.raft_peers,
    )


class ScenarioRunner:
    """Executes steps in order against one :class:`StepContext`; keeps their results and the
    background jobs."""

    def __init__(self, scenario: Scenario, cluster: Cluster, *, live: bool = False) -> None:
        self.scenario = scenario
        self.events = cluster.events
        self.ctx = StepContext(cluster, default_dc=scenario.cluster.datacenters[0][0], live=live)
        self.results = [
            StepResult(
                s.number,
                s.action,
                s.describe(),
                note=s.note,
                background=ACTIONS[s.action].background(s.args),
            )
            for s in scenario.steps
        ]
        # Background jobs: their nursery lives for the whole run; each has its own cancel scope
        # so a run that stops early can end them (their result then reads "skipped").
        self._nursery: trio.Nursery | None = None
        self._background: list[tuple[trio.CancelScope, StepResult]] = []

    # ---- the run -----------------------------------------------------------------------------
    async def run(self) -> list[StepResult]:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for step, result in zip(self.scenario.steps, self.results, strict=True):
                if not await self._run_step(step, result) or self._background_failed():
                    # Stop: a step failed (later steps are skipped) or a background job did.
                    for scope, _ in self._background:
                        scope.cancel()
                    break
            # Otherwise background jobs run to the end of their duration.
        return self.results

    def _background_failed(self) -> bool:
        return any(r.status == "failed" for _, r in self._background)

    async def _run_step(self, step: Step, result: StepResult) -> bool:
        self.ctx.events_mark = self.events.emitted
        # A cluster of processes is read now (roles, notes) and gets this step's faults after it.
        await self.ctx.cluster.sync()
        result.started = self.events.now()
        if step.note:
            # Facts of the run ({leader}, {term}, ...) as they are when the step starts.
            note = fill_note(self.ctx, step, step.note)
            result.note = note
            self.events.emit(
                SCENARIO_NODE, "note", {"step": step.number, "text": note}, message=note
            )
        action = ACTIONS[step.action]
        try:
            if result.background:
                # Its target is resolved now: a role that names nobody fails the step here.
                self._start_background(step, result, action.start(self.ctx, step, step.args))
                return True
            detail = await action.run(self.ctx, step, step.args)
            await self.ctx.cluster.sync()  # inside: a fault a process did not take fails the step
            result.status = "ok"
            result.detail = detail or ""
        except StepFailed as exc:
            result.status = "failed"
            result.detail = str(exc)
        except ClusterError as exc:
            result.status = "failed"
            result.detail = str(exc)
        result.finished = self.events.now()
        result.load = self.ctx.measurements.pop(step.number, None)
        self._emit_step(result)
        return result.status == "ok"

    def _start_background(self, step: Step, result: StepResult, job: BackgroundJob) -> None:
        """Run a background step (``load`` with ``background = true``): the next steps run
        while it does; its result (and its step event) lands when it ends."""
        assert self._nursery is not None
        scope = trio.CancelScope()
        self._background.append((scope, result))

        async def background() -> None:
            with scope:
                try:
                    result.detail = await job.run()
                    result.status = "ok"
                except StepFailed as exc:
                    result.status = "failed"
                    result.detail = str(exc)
            if scope.cancelled_caught:
                result.status = "skipped"
                result.detail = "stopped early, the run ended: " + job.partial()
            result.finished = self.events.now()
            result.load = self.ctx.measurements.pop(step.number, None)
            self._emit_step(result)

        self._nursery.start_soon(background)

    def _emit_step(self, result: StepResult) -> None:
        self.events.emit(
            SCENARIO_NODE,
            "step",
            {
                "step": result.number,
                "action": result.action,
                "description": result.description,
                "status": result.status,
                "detail": result.detail,
                "took": round(result.took, 6),
            },
            level="INFO" if result.status == "ok" else "ERROR",
            message=f"step {result.number} {result.status}",
        )


# ---- running ---------------------------------------------------------------------------------
class _DataDir:
    """``data_dir = "tmp"``: a fresh temporary directory for one run, removed afterwards."""

    def __init__(self, scenario: Scenario) -> None:
        self.path: Path | None = None
        if scenario.cluster.data_dir == "tmp":
            self.path = Path(tempfile.mkdtemp(prefix="consim-scenario-"))

    def __enter__(self) -> Path | None:
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)


def run_scenario(
    scenario: Scenario,
    *,
    seed: int | None = None,
    live: bool = False,
    processes: bool = False,
    http_port: int = 8500,
    host_block: int = 0,
    record: bool = False,
    observe: Callable[[Cluster], None] | None = None,
) -> RunResult:
    """Run one scenario to completion and return its results (events included). ``record``
    (virtual time only) also keeps the messages between servers and their commit indexes for
    the report (:class:`RunRecorder`); the trace hash is the same either way. ``observe``
    (virtual runs) is called with the cluster before its servers start (the replay recorder).
    ``processes``: live, one ``consim agent`` process per server (consim.agent.remote)."""
    seed = scenario.seed if seed is None else seed
    with _DataDir(scenario) as data_dir:
        spec = cluster_spec(scenario, seed, data_dir, http_port, host_block)
        if processes:
            return _run_processes(scenario, spec)
        if live:
            return _run_live(scenario, spec)
        return _run_virtual(scenario, spec, record=record, observe=observe)


def _make_result(
    scenario: Scenario, spec: ClusterSpec, mode: str, steps: list[StepResult], events: EventLog
) -> RunResult:
    start = events.events[0].time if events.events else 0.0
    end = events.events[-1].time if events.events else 0.0
    if mode == "virtual":
        start = 0.0
    return RunResult(
        scenario,
        spec.seed,
        mode,
        steps,
        events,
        start_time=start,
        end_time=end,
        servers=[s.name for s in spec.servers()],
    )


def _run_virtual(
    scenario: Scenario,
    spec: ClusterSpec,
    *,
    record: bool = False,
    observe: Callable[[Cluster], None] | None = None,
) -> RunResult:
    from consim.runtime import VirtualRuntime

    recorders: list[RunRecorder] = []

    def attach(cluster: Cluster) -> None:  # before any server starts: every message is seen
        recorder = RunRecorder(cluster)
        recorder.attach()
        recorders.append(recorder)

    async def body(cluster: Cluster) -> list[StepResult]:
        return await ScenarioRunner(scenario, cluster).run()

    def prepare(cluster: Cluster) -> None:
        if record:
            attach(cluster)
        if observe is not None:
            observe(cluster)

    steps, events = VirtualRuntime().run_cluster(
        spec, body, prepare=prepare if record or observe is not None else None
    )
    result = _make_result(scenario, spec, "virtual", steps, events)
    result.recorder = recorders[0] if recorders else None
    return result


def _run_live(scenario: Scenario, spec: ClusterSpec) -> RunResult:
    from consim.runtime import start_live_cluster_parts

    box: list[Any] = []

    async def main() -> None:
        cluster, events = start_live_cluster_parts(spec)
        box.append(events)
        async with trio.open_nursery() as nursery:
            await nursery.start(cluster.net.run)
            await nursery.start(cluster.run)
            runner = ScenarioRunner(scenario, cluster, live=True)
            box.append(await runner.run())
            nursery.cancel_scope.cancel()

    trio.run(main)
    events, steps = box
    return _make_result(scenario, spec, "live", steps, events)


def _run_processes(scenario: Scenario, spec: ClusterSpec) -> RunResult:
    from consim.agent.remote import ProcessScenarioCluster

    box: list[Any] = []

    async def main() -> None:
        events = EventLog(trio.current_time)
        box.append(events)
        own = None
        data_dir = spec.data_dir
        if data_dir is None:  # the children need data dirs even when the file asks for none
            own = data_dir = Path(tempfile.mkdtemp(prefix="consim-processes-"))
        try:
            cluster = ProcessScenarioCluster(spec, data_dir, events)
            async with trio.open_nursery() as nursery:
                # Ctrl-C or SIGTERM: stop the children (cluster.run's finally), then exit 130.
                nursery.start_soon(_stop_on_signal, nursery.cancel_scope, box)
                try:
                    await nursery.start(cluster.run)
                except ClusterError as exc:  # a child that cannot start: said, no traceback
                    box.append(str(exc))
                    nursery.cancel_scope.cancel()
                    return
                runner = ScenarioRunner(scenario, cluster, live=True)  # type: ignore[arg-type]
                box.append(await runner.run())
                nursery.cancel_scope.cancel()
        finally:
            if own is not None:
                shutil.rmtree(own, ignore_errors=True)

    trio.run(main)
    if "signal" in box:
        raise SystemExit(130)
    events, outcome = box
    if isinstance(outcome, str):
        steps = [StepResult(s.number, s.action, s.describe(), note=s.note) for s in scenario.steps]
        result = _make_result(scenario, spec, "live", steps, events)
        result.error = f"the agent processes did not start: {outcome}"
    else:
        result = _make_result(scenario, spec, "live", outcome, events)
    result.processes = True
    return result


async def _stop_on_signal(scope: trio.CancelScope, box: list[Any]) -> None:
    import signal
    import sys

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            print("==> Caught signal, stopping the agent processes", file=sys.stderr, flush=True)
            box.append("signal")
            scope.cancel()
            return


def percent(n: int, total: int) -> str:
    return "0%" if total == 0 else f"{math.floor(100 * n / total)}%"
