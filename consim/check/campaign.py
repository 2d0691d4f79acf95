"""``consim check``: one seed = a cluster, a workload and a nemesis, a recorded history, the
linearizability checker and the Raft/gossip invariants; many seeds run in parallel processes
(or on a Dask cluster with ``scheduler``), each optionally kept in a store folder.

Virtual time by default: a seed gives one history, byte for byte (``history_hash``), in any
process. ``live=True`` runs the same thing on real sockets and the wall clock (a free
``127.0.N.x`` block), where timing, hence the history, differs from run to run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TextIO

import trio

from consim.check.history import History
from consim.check.nemesis import Nemesis
from consim.check.workload import Workload, WorkloadConfig
from consim.cluster import Cluster, ClusterError
from consim.events import Event, EventLog
from consim.runtime import LIVE, VIRTUAL, Runtime
from consim.spec import ClusterSpec

DEFAULT_NEMESIS = ("partition", "kill", "pause")
EXIT_CODES = {"valid": 0, "invalid": 1, "unknown": 3}


@dataclass(frozen=True)
class CheckConfig:
    clients: int = 5
    keys: int = 3
    rate: float = 10.0  # operations per second, all clients together
    duration: float = 20.0  # seconds of workload and faults (virtual unless live)
    consistency: str = "default"
    nemesis: tuple[str, ...] = DEFAULT_NEMESIS
    interval: float = 5.0  # a fault lasts this long, then this long without one
    quiet: float = 5.0  # after the heal, before the final reads
    # After the final reads, how long servers may take to agree (applied index, gossip, keyring).
    converge_within: float = 90.0
    servers: int = 3
    raft_multiplier: float = 1.0
    timeout: float = 10.0  # a client gives up after this long: outcome unknown
    live: bool = False
    budget: int = 10_000_000  # linearizability search steps per key
    # Restart killed servers from SQLite in a temporary data dir (None: when kill/membership).
    sqlite: bool | None = None
    host_block: int | None = None  # live: None = the first free block from 200
    # Test-only: rules broken on purpose (consim.testing.faults).
    broken: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        WorkloadConfig(
            clients=self.clients, keys=self.keys, rate=self.rate, consistency=self.consistency
        )  # validates
        if self.duration <= 0 or self.interval <= 0 or self.quiet < 0:
            raise ValueError("duration and interval must be > 0, quiet >= 0")
        if self.servers < 1:
            raise ValueError("servers must be at least 1")

    @classmethod
    def from_options(cls, options: object, **overrides: Any) -> CheckConfig:
        """The fields ``options`` carries as attributes (``consim check``'s parsed arguments, a
        scenario step's ``CheckArgs``), lists as tuples, then ``overrides``; defaults for the rest."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if hasattr(options, f.name):
                value = getattr(options, f.name)
                values[f.name] = tuple(value) if isinstance(value, list) else value
        values.update(overrides)
        return cls(**values)

    def uses_sqlite(self) -> bool:
        if self.sqlite is not None:
            return self.sqlite
        return bool({"kill", "membership"} & set(self.nemesis))

    def command(self, seed: int) -> str:
        """The ``consim check`` command line that reproduces ``seed``."""
        parts = [
            "consim check",
            f"--seed {seed}",
            f"--clients {self.clients}",
            f"--keys {self.keys}",
            f"--rate {self.rate:g}",
            f"--duration {self.duration:g}",
            f"--consistency {self.consistency}",
            f"--nemesis {','.join(self.nemesis) or 'none'}",
            f"--interval {self.interval:g}",
        ]
        if self.timeout != CheckConfig.timeout:
            parts.append(f"--timeout {self.timeout:g}")
        if self.quiet != CheckConfig.quiet:
            parts.append(f"--quiet {self.quiet:g}")
        if self.servers != CheckConfig.servers:
            parts.append(f"--servers {self.servers}")
        if self.raft_multiplier != CheckConfig.raft_multiplier:
            parts.append(f"--raft-multiplier {self.raft_multiplier:g}")
        if self.live:
            parts.append("--live")
        for rule in self.broken:
            parts.append(f"--break {rule}")
        return " ".join(parts)


@dataclass
class CheckRun:
    """One seed's outcome: ``result`` is JSON-friendly (what ``--json`` and results.json hold)."""

    seed: int
    history: History
    events: EventLog
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return str(self.result["verdict"])


# ---- one seed -----------------------------------------------------------------------------------
def run_check(config: CheckConfig, seed: int) -> CheckRun:
    """Run one seed and check it (in this process)."""
    from consim.testing import faults as testing_faults

    started = time.perf_counter()
    testing_faults.set_broken(config.broken)
    try:
        with _data_dir(config) as data_dir:
            spec = ClusterSpec(
                datacenters=(("dc1", config.servers),),
                seed=seed,
                raft_multiplier=config.raft_multiplier,
                data_dir=data_dir,
            )
            if config.live:
                history, events, observed = _run_live(config, spec)
            else:
                history, events, observed = _run_virtual(config, spec)
    finally:
        testing_faults.set_broken(())
    result = judge(config, seed, history, events.events, observed)
    result["wall"] = round(time.perf_counter() - started, 3)
    return CheckRun(seed, history, events, result)


@contextlib.contextmanager
def _data_dir(config: CheckConfig) -> Iterator[Path | None]:
    if not config.uses_sqlite():
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="consim-check-") as tmp:
        yield Path(tmp)


def _record_applies(cluster: Cluster) -> None:
    for node in cluster.servers.values():
        node.record_applies = True


def _run_on(
    runtime: Runtime, config: CheckConfig, spec: ClusterSpec
) -> tuple[History, EventLog, dict[str, Any]]:
    async def body(cluster: Cluster) -> tuple[History, dict[str, Any]]:
        return await campaign_body(cluster, config, spec.seed)

    (history, observed), events = runtime.run_cluster(spec, body, prepare=_record_applies)
    return history, events, observed


def _run_virtual(
    config: CheckConfig, spec: ClusterSpec
) -> tuple[History, EventLog, dict[str, Any]]:
    return _run_on(VIRTUAL, config, spec)


def _run_live(config: CheckConfig, spec: ClusterSpec) -> tuple[History, EventLog, dict[str, Any]]:
    from consim.live import free_host_block

    block = config.host_block
    if block is None:
        block = free_host_block([config.servers], spec.http_port, range(200, 250, 2))
    return _run_on(LIVE, config, replace(spec, host_block=block))


async def campaign_body(
    cluster: Cluster, config: CheckConfig, seed: int, key_prefix: str = ""
) -> tuple[History, dict[str, Any]]:
    """Workload and nemesis for ``config.duration``, heal, quiet period, final reads; returns the
    history and what the invariant checks need from the servers at the end."""
    t0 = trio.current_time()

    def clock() -> float:
        return trio.current_time() - t0

    history = History()
    with contextlib.suppress(ClusterError):  # a leaderless cluster's answers get recorded too
        await cluster.wait_for_leader(within=30)
    workload = Workload(
        cluster,
        history,
        rng=random.Random(seed * 1_000_003 + 1),
        config=WorkloadConfig(
            clients=config.clients,
            keys=config.keys,
            rate=config.rate,
            consistency=config.consistency,
            timeout=config.timeout,
            key_prefix=key_prefix,
        ),
        clock=clock,
    )
    nemesis = Nemesis(
        cluster,
        history,
        kinds=config.nemesis,
        interval=config.interval,
        rng=random.Random(seed * 1_000_003 + 2),
        clock=clock,
    )
    until = clock() + config.duration
    async with trio.open_nursery() as nursery:
        nursery.start_soon(workload.run, until)
        nursery.start_soon(nemesis.run, until)
    await nemesis.heal()
    await trio.sleep(config.quiet)
    with contextlib.suppress(ClusterError):
        await cluster.wait_for_leader(within=30)
    await workload.final_reads()
    # Convergence takes as long as it takes (a server gossip marked failed is contacted again by
    # serf's reconnect, every 30 s; autopilot may have removed it meanwhile): wait for it, bounded.
    converged_after = await wait_converged(cluster, config.converge_within)
    final_local = await workload.local_reads()
    observed = {
        "converged_after": converged_after,
        "faults": nemesis.faults,
        "counts": dict(workload.counts),
        "final_local": final_local,
        "applied_index": {
            n.name: n.fsm.last_applied for n in cluster.servers.values() if n.running
        },
        "views": gossip_views(cluster),
        "keyrings": keyrings(cluster),
        "duration": round(clock(), 6),
    }
    return history, observed


def converged(cluster: Cluster) -> bool:
    running = [n for n in cluster.servers.values() if n.running]
    if len({n.fsm.last_applied for n in running}) > 1:
        return False
    names = {n.name for n in running}
    for view in gossip_views(cluster).values():
        if any(view.get(name) != "alive" for name in names):
            return False
    rings = keyrings(cluster)
    return len({json.dumps(r, sort_keys=True) for r in rings.values()}) <= 1


async def wait_converged(cluster: Cluster, within: float) -> float | None:
    """Seconds until every running server has the same applied index, sees every other as alive
    and holds the same keyrings; None if that did not happen ``within`` seconds."""
    start = trio.current_time()
    while True:
        if converged(cluster):
            return round(trio.current_time() - start, 6)
        if trio.current_time() - start >= within:
            return None
        await trio.sleep(0.25)


async def check_on_cluster(
    cluster: Cluster, config: CheckConfig, *, key_prefix: str = ""
) -> dict[str, Any]:
    """A check inside a running cluster (a scenario's ``check`` step): record from now on, run
    the workload and nemesis, judge. Keys get ``key_prefix`` so earlier writes do not count.

    A cluster of ``consim agent`` processes (``consim.agent.remote``) has ``start_recording``:
    each child records and reports its own events, and the judge reads those; what the children
    could not report is under ``unjudged`` (sentences; the step says them)."""
    start_recording = getattr(cluster, "start_recording", None)
    if start_recording is not None:
        await start_recording()
        history, observed = await campaign_body(cluster, config, cluster.spec.seed, key_prefix)
        events, unjudged = await cluster.stop_recording()  # type: ignore[attr-defined]
        result = judge(config, cluster.spec.seed, history, events, observed)
        result["unjudged"] = unjudged
        result["judged_events"] = len(events)
        return result
    for node in cluster.servers.values():
        node.record_applies = True
    start = len(cluster.events.events)
    history, observed = await campaign_body(cluster, config, cluster.spec.seed, key_prefix)
    for node in cluster.servers.values():
        node.record_applies = False

    events = cluster.events.events[start:]  # this check's events only
    return judge(config, cluster.spec.seed, history, events, observed)


def gossip_views(cluster: Cluster) -> dict[str, dict[str, str]]:
    views: dict[str, dict[str, str]] = {}
    for node in cluster.servers.values():
        if node.running and node.lan_pool is not None:
            views[node.name] = {m.name: m.status_name for m in node.lan_pool.members()}
    return views


def keyrings(cluster: Cluster) -> dict[str, dict[str, Any]]:
    from consim.gossip.keyring import fingerprint

    out: dict[str, dict[str, Any]] = {}
    for node in cluster.servers.values():
        if not node.running:
            continue
        rings: dict[str, Any] = {}
        for name, pool in (("lan", node.lan_pool), ("wan", node.wan_pool)):
            core = pool.core if pool is not None else None
            ring = getattr(core, "keyring", None)
            if ring is None:
                rings[name] = {"keys": [], "primary": None}
            else:
                primary = ring.primary_key
                rings[name] = {
                    "keys": sorted(fingerprint(k) for k in ring.keys),
                    "primary": fingerprint(primary) if primary else None,
                }
        out[node.name] = rings
    return out


def judge(
    config: CheckConfig,
    seed: int,
    history: History,
    events: list[Event],
    observed: dict[str, Any],
) -> dict[str, Any]:
    """The verdict of one run: linearizability and every invariant (``events``: the run's)."""
    from consim.check.invariants import check_all
    from consim.check.linearizability import check_linearizable

    operations = history.operations()
    lin = check_linearizable(history, budget=config.budget)
    invariants = check_all(
        events,
        operations,
        final_local=observed["final_local"],
        applied_index=observed["applied_index"],
        views=observed["views"],
        keyrings=observed["keyrings"],
    )
    broken = [r.name for r in invariants if not r.ok]
    if lin.verdict == "invalid" or broken:
        verdict = "invalid"
    elif lin.verdict == "unknown":
        verdict = "unknown"
    else:
        verdict = "valid"
    return {
        "seed": seed,
        "verdict": verdict,
        "ops": len(operations),
        "faults": observed["faults"],
        "counts": observed["counts"],
        "linearizability": lin.to_json(),
        "linearizability_text": lin.describe(),
        "invariants": {r.name: r.to_json() for r in invariants},
        "invariants_failed": broken,
        "history_hash": history.hash(),
        "trace_hash": EventLog(time.time).trace_hash(events) if not config.live else None,
        "virtual_seconds": observed["duration"] if not config.live else None,
        "final_local": observed["final_local"],
        "converged_after": observed["converged_after"],
        "command": config.command(seed),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
    }


def describe(result: dict[str, Any]) -> str:
    """Human text for one seed: verdict, what failed, how to reproduce."""
    lines = [f"seed {result['seed']}: {result['verdict']}"]
    lin = result["linearizability"]
    if lin["verdict"] != "valid":
        lines.append(result["linearizability_text"])
    for name in result["invariants_failed"]:
        inv = result["invariants"][name]
        lines.append(f"invariant {name} violated:")
        lines.extend(f"  {v}" for v in inv["violations"])
    if result["verdict"] != "valid":
        lines.append(f"reproduce: {result['command']}")
    return "\n".join(lines)


# ---- many seeds -----------------------------------------------------------------------------
def run_seed(config: CheckConfig, seed: int) -> dict[str, Any]:
    """A worker's job (picklable in and out): the result plus the history's JSON lines."""
    run = run_check(config, seed)
    return {"result": run.result, "history": run.history.to_jsonl()}


def store_seed(store: Path, outcome: dict[str, Any]) -> Path:
    """Jepsen's store: ``DIR/seed-N/`` with history.jsonl, results.json and report.html."""
    result = outcome["result"]
    folder = Path(store) / f"seed-{result['seed']}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "history.jsonl").write_text(outcome["history"], encoding="utf-8")
    (folder / "results.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (folder / "report.html").write_text(render_report(outcome), encoding="utf-8")
    return folder


def render_report(outcome: dict[str, Any]) -> str:
    """The HTML report of one seed's outcome (``run_seed``'s result and history)."""
    from consim.check.report import render_check_report

    result = outcome["result"]
    history = History.from_jsonl(outcome["history"])
    title = f"consim check, seed {result['seed']}: {result['verdict']}"
    return render_check_report(history, result, title=title)


def run_campaign(
    config: CheckConfig,
    seeds: Iterable[int],
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    store: Path | None = None,
    on_result: Callable[[dict[str, Any], int, int], None] | None = None,
    keep: dict[int, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Run ``seeds``: in this process (jobs 1), in ``jobs`` local processes, or on the Dask
    cluster at ``scheduler`` (``tcp://host:port``). Results come back in seed order; ``keep``
    (a dict) receives every seed's full outcome (result and history) by seed."""
    seeds = list(seeds)
    outcomes: dict[int, dict[str, Any]] = {}

    def collect(outcome: dict[str, Any]) -> None:
        seed = outcome["result"]["seed"]
        outcomes[seed] = outcome
        if keep is not None:
            keep[seed] = outcome
        if store is not None:
            store_seed(store, outcome)
        if on_result is not None:
            on_result(outcome["result"], len(outcomes), len(seeds))

    if scheduler is not None:
        _run_dask(config, seeds, scheduler, collect)
    elif jobs <= 1 or len(seeds) <= 1:
        for seed in seeds:
            collect(run_seed(config, seed))
    else:
        import concurrent.futures
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=min(jobs, len(seeds)), mp_context=context
        ) as pool:
            futures = [pool.submit(run_seed, config, seed) for seed in seeds]
            for future in concurrent.futures.as_completed(futures):
                collect(future.result())
    return [outcomes[s]["result"] for s in seeds]


def _run_dask(
    config: CheckConfig,
    seeds: list[int],
    scheduler: str,
    collect: Callable[[dict[str, Any]], None],
) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise RuntimeError(
            "--scheduler needs Dask distributed: pip install 'consim[dask]'"
        ) from None
    with Client(scheduler) as client:
        # pure=False: every seed is its own task even if Dask would hash the arguments equal.
        futures = [client.submit(run_seed, config, seed, pure=False) for seed in seeds]
        for future in as_completed(futures):
            collect(future.result())


def overall_verdict(results: list[dict[str, Any]]) -> str:
    verdicts = {r["verdict"] for r in results}
    if "invalid" in verdicts:
        return "invalid"
    if "unknown" in verdicts:
        return "unknown"
    return "valid"


def summary_table(results: list[dict[str, Any]]) -> str:
    rows = [("seed", "ops", "faults", "verdict", "wall")]
    for r in results:
        rows.append(
            (str(r["seed"]), str(r["ops"]), str(r["faults"]), r["verdict"], f"{r['wall']:.1f}s")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            c.rjust(w) if i != 3 else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    )


def progress_printer(err: TextIO) -> Callable[[dict[str, Any], int, int], None] | None:
    """A progress bar on ``err`` when it is a terminal; None otherwise (logs stay clean)."""
    if not err.isatty():
        return None
    failed = [0]

    def show(result: dict[str, Any], done: int, total: int) -> None:
        if result["verdict"] != "valid":
            failed[0] += 1
        width = 30
        filled = int(width * done / total)
        end = "\n" if done == total else ""
        print(
            f"\rconsim check [{'#' * filled}{'.' * (width - filled)}] {done}/{total} seeds, "
            f"{failed[0]} not valid",
            end=end,
            file=err,
            flush=True,
        )

    return show


# ---- benchmarks/check.py ------------------------------------------------------------------
def campaign_throughput(seeds: int = 4, jobs: int = 2, duration: float = 60.0) -> dict[str, Any]:
    """Seeds per minute of wall time: ``seeds`` seeds of ``duration`` virtual seconds each,
    default workload and nemesis, over ``jobs`` processes (for benchmarks/check.py)."""
    config = CheckConfig(duration=duration)
    started = time.perf_counter()
    results = run_campaign(config, range(1, seeds + 1), jobs=jobs)
    wall = time.perf_counter() - started
    verdicts: dict[str, int] = {}
    for r in results:
        verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
    return {
        "seeds": seeds,
        "jobs": jobs,
        "virtual_seconds_per_seed": duration,
        "wall_seconds": round(wall, 2),
        "seeds_per_minute": round(seeds * 60.0 / wall, 2),
        "ops_per_seed": round(sum(r["ops"] for r in results) / max(1, len(results)), 1),
        "verdicts": verdicts,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
