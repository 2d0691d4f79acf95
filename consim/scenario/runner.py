"""Run a validated scenario against a Cluster, in virtual time or live.

Every step is recorded twice, on purpose: as a :class:`StepResult` (what the CLI's summary and the
JSON output need) and as events in the cluster's one event log (``note``, ``step``,
``client_request``, ``consul_command``, ``load_request``), so the timeline, the HTML report and the
trace hash are all views of the same log. A failing step stops the run; later steps are skipped.
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from consim.cluster import Cluster, ClusterError
from consim.events import Event, EventLog
from consim.scenario.model import (
    PARTITION_MEMBER,
    PLACEHOLDER,
    ROLE_TARGETS,
    Scenario,
    Step,
    Target,
)
from consim.server.config import ClusterSpec
from consim.server.node import ServerNode

SCENARIO_NODE = "scenario"


class StepFailed(Exception):
    """A step's expectation did not hold; the message is shown to the learner as is."""


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
        encrypt=c.encrypt,
        snapshot_threshold=c.snapshot_threshold,
        trailing_logs=c.trailing_logs,
    )


class ScenarioRunner:
    """Executes steps; holds the state roles need (old leader, the term before the last fault)."""

    def __init__(self, scenario: Scenario, cluster: Cluster, *, live: bool = False) -> None:
        self.scenario = scenario
        self.cluster = cluster
        self.events = cluster.events
        self.live = live
        self.poll = 0.05 if live else 0.01
        self.default_dc = scenario.cluster.datacenters[0][0]
        self.old_leader: str | None = None
        self.last_killed: str | None = None
        self.last_partition: list[list[str]] = []
        self.fault_term: dict[str, int] = {}
        self.results = [
            StepResult(
                s.number,
                s.action,
                s.describe(),
                note=s.note,
                background=bool(s.action == "load" and s.args.get("background")),
            )
            for s in scenario.steps
        ]
        # Background loads: their nursery lives for the whole run; each has its own cancel scope
        # so a run that stops early can end them (their result then reads "skipped").
        self._nursery: trio.Nursery | None = None
        self._background: list[tuple[trio.CancelScope, StepResult]] = []

    # ---- the run -----------------------------------------------------------------------------
    async def run(self) -> list[StepResult]:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for step, result in zip(self.scenario.steps, self.results, strict=True):
                if not await self._run_step(step, result) or self._background_failed():
                    # Stop: a step failed (later steps are skipped) or a background load did.
                    for scope, _ in self._background:
                        scope.cancel()
                    break
            # Otherwise background loads run to the end of their duration.
        return self.results

    def _background_failed(self) -> bool:
        return any(r.status == "failed" for _, r in self._background)

    async def _run_step(self, step: Step, result: StepResult) -> bool:
        result.started = self.events.now()
        if step.note:
            self.events.emit(
                SCENARIO_NODE, "note", {"step": step.number, "text": step.note}, message=step.note
            )
        if result.background:
            self._start_background_load(step, result)
            return True
        handler: Callable[[Step], Any] = getattr(self, f"_do_{step.action}")
        try:
            detail = await handler(step)
            result.status = "ok"
            result.detail = detail or ""
        except StepFailed as exc:
            result.status = "failed"
            result.detail = str(exc)
        except ClusterError as exc:
            result.status = "failed"
            result.detail = str(exc)
        result.finished = self.events.now()
        self._emit_step(result)
        return result.status == "ok"

    def _start_background_load(self, step: Step, result: StepResult) -> None:
        """Start a ``load`` with ``background = true``: the next steps run while it does; its
        result (and its step event) lands when its duration ends."""
        assert self._nursery is not None
        scope = trio.CancelScope()
        self._background.append((scope, result))
        name = self.resolve(step.args["on"], step)
        self.events.emit(
            SCENARIO_NODE,
            "load_started",
            {"step": step.number, "server": name, "load": result.description},
            message=f"step {step.number}: load started in the background",
        )

        async def background() -> None:
            records: list[tuple[float, int | None, str]] = []
            with scope:
                try:
                    result.detail = await self._load(step, name, records)
                    result.status = "ok"
                except StepFailed as exc:
                    result.status = "failed"
                    result.detail = str(exc)
            if scope.cancelled_caught:
                result.status = "skipped"
                result.detail = "stopped early, the run ended: " + self._load_summary(name, records)
            result.finished = self.events.now()
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

    # ---- targets -----------------------------------------------------------------------------
    def dc_of(self, step: Step, target: Target | None = None) -> str:
        if target is not None and target.dc:
            return target.dc
        if target is not None and not target.is_role:
            return self.cluster.node(target.name).datacenter
        return step.dc or self.default_dc

    def resolve(self, target: Target, step: Step) -> str:
        dc = self.dc_of(step, target)
        name = target.name
        if not target.is_role:
            return name
        servers = sorted(self.cluster.datacenter_servers(dc), key=lambda n: n.name)
        if name == "leader":
            leader = self.cluster.leader(dc)
            if leader is None:
                raise StepFailed(f"target 'leader': {dc} has no leader ({self.describe_dc(dc)})")
            return leader.name
        if name == "follower":
            followers = sorted(self.cluster.followers(dc), key=lambda n: n.name)
            if not followers:
                raise StepFailed(
                    f"target 'follower': {dc} has no follower ({self.describe_dc(dc)})"
                )
            return followers[0].name
        if name == "old-leader":
            if self.old_leader is None:
                raise StepFailed("target 'old-leader': no leader has been killed or cut off yet")
            return self.old_leader
        member = PARTITION_MEMBER.match(name)
        if member is not None:
            g, i = int(member.group(1)), int(member.group(2))
            if g >= len(self.last_partition) or i >= len(self.last_partition[g]):
                raise StepFailed(
                    f"target {name!r}: the last partition was {self.last_partition or 'none'}"
                )
            return self.last_partition[g][i]
        if name == "last-killed":
            if self.last_killed is None:
                raise StepFailed("target 'last-killed': no server has been killed or stopped yet")
            return self.last_killed
        if name == "any":
            for n in servers:
                if n.running and not n.paused:
                    return n.name
            raise StepFailed(f"target 'any': no server of {dc} is running")
        raise StepFailed(f"target {name!r} cannot be used here")

    def resolve_many(self, target: Target, step: Step) -> list[str]:
        """Like :meth:`resolve`, but ``survivors`` names every running server of the datacenter."""
        if target.name != "survivors":
            return [self.resolve(target, step)]
        dc = self.dc_of(step, target)
        names = sorted(n.name for n in self.cluster.datacenter_servers(dc) if n.running)
        if not names:
            raise StepFailed(f"target 'survivors': no server of {dc} is running")
        return names

    def describe_dc(self, dc: str) -> str:
        parts = []
        for n in sorted(self.cluster.datacenter_servers(dc), key=lambda n: n.name):
            s = n.status()
            if s["state"] == "down":
                parts.append(f"{n.name} down")
            else:
                paused = " paused" if s.get("paused") else ""
                parts.append(f"{n.name} {s['state']}{paused} term {s['term']}")
        return ", ".join(parts)

    def _note_fault(self, names: list[str]) -> None:
        """Remember the leader a fault hits (``old-leader``) and the term before it."""
        for name in names:
            node = self.cluster.node(name)
            dc = node.datacenter
            self.fault_term[dc] = self.max_term(dc)
            if node.is_leader():
                self.old_leader = name

    def max_term(self, dc: str) -> int:
        return max(
            (n.core.term for n in self.cluster.datacenter_servers(dc) if n.core is not None),
            default=0,
        )

    async def _until(self, predicate: Callable[[], bool], within: float) -> bool:
        with trio.move_on_after(within):
            while not predicate():
                await trio.sleep(self.poll)
            return True
        return predicate()

    # ---- actions -----------------------------------------------------------------------------
    async def _do_note(self, step: Step) -> str:
        return ""

    async def _do_sleep(self, step: Step) -> str:
        await trio.sleep(step.args["seconds"])
        return ""

    async def _do_wait(self, step: Step) -> str:
        a = step.args
        dc = self.dc_of(step)
        within = a["within"]
        start = self.events.now()
        cond = a["condition"]
        if cond == "leader":
            ok = await self._until(lambda: self._acknowledged_leader(dc) is not None, within)
        elif cond == "new-leader":
            old = self.old_leader
            before = self.fault_term.get(dc, 0)

            def new_leader() -> bool:
                leader = self._acknowledged_leader(dc)
                return (
                    leader is not None
                    and leader.name != old
                    and leader.core is not None
                    and leader.core.term > before
                )

            ok = await self._until(new_leader, within)
        elif cond == "no-leader":
            ok = await self._until(lambda: self.cluster.leader(dc) is None, within)
        elif cond == "voters":
            ok = await self._until(lambda: self._voters(dc) == a["count"], within)
        elif cond == "member-status":
            return await self._wait_member_status(step)
        elif cond == "keyring-converged":
            return await self._wait_keyring(step)
        elif cond == "log":
            return await self._wait_log(step)
        else:  # validated away; kept so a new condition cannot silently pass
            raise StepFailed(f"wait {cond!r} is not supported")
        took = self.events.now() - start
        if not ok:
            extra = f" (voters: {self._voters(dc)})" if cond == "voters" else ""
            raise StepFailed(
                f"no {cond} in {dc} within {a['within_text']}{extra}; now: {self.describe_dc(dc)}"
            )
        leader = self.cluster.leader(dc)
        who = f": {leader.name} term {leader.core.term}" if leader and leader.core else ""
        return f"{cond} after {took:.3f}s{who if cond != 'no-leader' else ''}"

    async def _wait_member_status(self, step: Step) -> str:
        """Every other running server sees ``member`` with ``status`` in its ``pool``."""
        a = step.args
        member = self.resolve(a["member"], step)
        node = self.cluster.node(member)
        wan = a["pool"] == "wan"
        name = f"{member}.{node.datacenter}" if wan else member
        start = self.events.now()
        seen: dict[str, str] = {}

        def check() -> bool:
            seen.clear()
            for o in sorted(self.cluster.servers.values(), key=lambda n: n.name):
                if o.name == member or not o.running or o.paused:
                    continue
                if not wan and o.datacenter != node.datacenter:
                    continue
                pool = o.wan_pool if wan else o.lan_pool
                if pool is None:
                    seen[o.name] = "no pool"
                    continue
                status = next((m.status_name for m in pool.members() if m.name == name), "absent")
                seen[o.name] = status
            return bool(seen) and all(v == a["status"] for v in seen.values())

        ok = await self._until(check, a["within"])
        views = ", ".join(f"{k}: {v}" for k, v in seen.items()) or "no running server to ask"
        if not ok:
            raise StepFailed(
                f"{name} is not {a['status']} in every {a['pool'].upper()} view within "
                f"{a['within_text']} ({views})"
            )
        took = self.events.now() - start
        return f"{name} {a['status']} after {took:.3f}s in the view of {', '.join(seen)}"

    async def _wait_log(self, step: Step) -> str:
        """A server logs a line containing ``contains`` (from this step on)."""
        a = step.args
        text = a["contains"]
        start = self.events.now()
        seen: list[Event] = []

        def watch(event: Event) -> None:
            if not seen and event.node in self.cluster.servers and text in event.message:
                seen.append(event)

        unsubscribe = self.events.subscribe(watch)
        try:
            ok = await self._until(lambda: bool(seen), a["within"])
        finally:
            unsubscribe()
        if not ok:
            raise StepFailed(f"no server logged {text!r} within {a['within_text']}")
        took = self.events.now() - start
        return f"{seen[0].node} after {took:.3f}s: {seen[0].message}"

    def keyrings(self) -> dict[str, tuple[str, ...]]:
        """``"dc1-s1 LAN"`` -> installed keys, primary first, for every running server's pools."""
        out: dict[str, tuple[str, ...]] = {}
        for n in sorted(self.cluster.servers.values(), key=lambda n: n.name):
            if not n.running:
                continue
            for label, pool in (("LAN", n.lan_pool), ("WAN", n.wan_pool)):
                keyring = getattr(getattr(pool, "core", None), "keyring", None)
                out[f"{n.name} {label}"] = tuple(keyring.keys_b64()) if keyring else ()
        return out

    async def _wait_keyring(self, step: Step) -> str:
        """Every running server's LAN and WAN keyring holds the same keys with the same primary
        (and that primary is ``key`` when given)."""
        a = step.args
        start = self.events.now()

        def check() -> bool:
            rings = self.keyrings()
            if not rings:
                return False
            first = next(iter(rings.values()))
            if any(r[:1] != first[:1] or set(r) != set(first) for r in rings.values()):
                return False
            return a["key"] is None or first[:1] == (a["key"],)

        if not await self._until(check, a["within"]):
            rings = self.keyrings()
            views = "; ".join(
                f"{k}: " + (", ".join(_short_key(x) for x in r) or "no keyring")
                for k, r in rings.items()
            )
            want = f" with primary {_short_key(a['key'])}" if a["key"] else ""
            raise StepFailed(
                f"keyrings did not converge{want} within {a['within_text']} "
                f"(primary first): {views}"
            )
        first = next(iter(self.keyrings().values()))
        took = self.events.now() - start
        return (
            f"every pool holds {len(first)} key(s), primary {_short_key(first[0]) if first else '-'}"
            f", after {took:.3f}s"
        )

    def _acknowledged_leader(self, dc: str) -> ServerNode | None:
        leader = self.cluster.leader(dc)
        if leader is not None and self.cluster.acknowledged(leader):
            return leader
        return None

    def _voters(self, dc: str) -> int | None:
        leader = self.cluster.leader(dc)
        if leader is None or leader.core is None:
            return None
        return len(leader.core.latest_configuration.voters())

    async def _do_kill(self, step: Step) -> str:
        names = self.resolve_many(step.args["target"], step)
        self._note_fault(names)
        for name in names:
            self.cluster.kill(name)
            self.last_killed = name
        return ", ".join(names)

    async def _do_restart(self, step: Step) -> str:
        names = self.resolve_many(step.args["target"], step)
        # Restarting several at once: kill them all first, as an operator stopping every
        # survivor before starting them again would.
        killed = False
        for name in names:
            if self.cluster.node(name).running:
                self.cluster.kill(name)
                killed = True
        if killed:
            # Let the killed incarnation unwind completely first: ServerNode.run's ``finally``
            # closes ``self.storage``, which a new incarnation started too early has replaced
            # (Cluster.restart's single ``sleep(0)`` is not enough; reported to its owner).
            await trio.sleep(0.01)
        for name in names:
            await self.cluster.restart(name)
        return ", ".join(names)

    async def _do_stop(self, step: Step) -> str:
        names = self.resolve_many(step.args["target"], step)
        self._note_fault(names)
        for name in names:
            await self.cluster.stop(name)
            self.last_killed = name
        return ", ".join(names)

    async def _do_pause(self, step: Step) -> str:
        name = self.resolve(step.args["target"], step)
        self._note_fault([name])
        self.cluster.pause(name)
        return name

    async def _do_resume(self, step: Step) -> str:
        name = self.resolve(step.args["target"], step)
        self.cluster.resume(name)
        return name

    async def _do_isolate(self, step: Step) -> str:
        name = self.resolve(step.args["target"], step)
        self._note_fault([name])
        self.cluster.isolate(name)
        return name

    async def _do_block(self, step: Step) -> str:
        src = self.resolve(step.args["target"], step)
        dst = self.resolve(step.args["to"], step)
        self.cluster.block(src, dst)
        return f"{src} -> {dst}"

    async def _do_partition(self, step: Step) -> str:
        groups: list[list[str]] = []
        others_at: int | None = None
        for gi, group in enumerate(step.args["groups"]):
            names = []
            for t in group:
                if t.name == "others":
                    others_at = gi
                else:
                    names.append(self.resolve(t, step))
            groups.append(names)
        if others_at is not None:
            taken = {n for g in groups for n in g}
            dcs = {self.cluster.node(n).datacenter for n in taken} or {self.dc_of(step)}
            groups[others_at].extend(
                sorted(
                    n.name
                    for n in self.cluster.servers.values()
                    if n.datacenter in dcs and n.name not in taken
                )
            )
        flat = [n for g in groups for n in g]
        if len(flat) != len(set(flat)):
            raise StepFailed(f"a server is in two groups after resolving roles: {groups}")
        self._note_fault(flat)
        # The old leader is the one cut off from the majority, not one that keeps its quorum.
        self.cluster.partition(groups)
        self.last_partition = groups
        return " | ".join(",".join(g) for g in groups)

    async def _do_heal(self, step: Step) -> str:
        self.cluster.heal()
        return ""

    async def _do_loss(self, step: Step) -> str:
        src, dst = self._link_ends(step)
        self.cluster.set_loss(src, dst, step.args["value"])
        return f"{src} -> {dst}: {step.args['value']:g}"

    async def _do_delay(self, step: Step) -> str:
        src, dst = self._link_ends(step)
        self.cluster.set_delay(src, dst, step.args["value"])
        return f"{src} -> {dst}: {step.args['value']:g}s"

    def _link_ends(self, step: Step) -> tuple[str, str]:
        ends = []
        for key in ("from", "to"):
            t = step.args[key]
            ends.append("*" if t == "*" else self.resolve(t, step))
        return ends[0], ends[1]

    # ---- HTTP --------------------------------------------------------------------------------
    async def request(
        self,
        name: str,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        *,
        kind: str = "client_request",
        step: int | None = None,
    ) -> tuple[int | None, dict[str, str], bytes, str]:
        """One request; connection failures come back as ``(None, {}, b"", reason)``."""
        start = self.events.now()
        error = ""
        try:
            status, out_headers, out_body = await self.cluster.http(
                name, method, path, headers=headers, body=body
            )
        except ClusterError as exc:
            status, out_headers, out_body, error = None, {}, b"", str(exc)
        except Exception as exc:  # httpx errors when live
            if not self.live:
                raise
            status, out_headers, out_body, error = None, {}, b"", f"{type(exc).__name__}: {exc}"
        text = out_body.decode("utf-8", "replace")
        self.events.emit(
            SCENARIO_NODE,
            kind,
            {
                "server": name,
                "method": method,
                "path": path,
                "status": status,
                # A scenario's own requests keep the whole body (the timeline shortens it
                # unless --full; JSON and the report have it all); load requests are many.
                "answer": error or (text if kind == "client_request" else _short(text)),
                "took": round(self.events.now() - start, 6),
                **({"step": step} if step is not None else {}),
            },
            level="INFO" if kind == "client_request" else "DEBUG",
            message=f"{method} {path} -> {status if status is not None else 'connection refused'}",
        )
        return status, {k.lower(): v for k, v in out_headers.items()}, out_body, error

    def fill(self, value: Any, step: Step | None = None) -> Any:
        """Replace ``{rpc:NAME}``, ``{host:NAME}`` and ``{http:NAME}`` with that server's address.
        NAME may be a role (``{rpc:last-killed}``), resolved now as the step's targets are."""
        if isinstance(value, str):

            def address(m: Any) -> str:
                name = m.group(2)
                if name in ROLE_TARGETS and step is not None:
                    name = self.resolve(Target(name, step.dc), step)
                spec = self.cluster.node(name).spec
                kind = m.group(1)
                return {"rpc": spec.rpc_address, "host": spec.host, "http": spec.http_address}[kind]

            return PLACEHOLDER.sub(address, value)
        if isinstance(value, dict):
            return {k: self.fill(v, step) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fill(v, step) for v in value]
        return value

    async def _do_http(self, step: Step) -> str:
        a = self.fill(step.args, step)
        name = self.resolve(a["on"], step)
        headers = dict(a["headers"])
        if a["token"] is not None:
            headers["X-Consul-Token"] = a["token"]
        status, out_headers, body, error = await self.request(
            name, a["method"], a["path"], headers, a["body"].encode(), step=step.number
        )
        text = body.decode("utf-8", "replace")
        shown = f"{name}: {status if status is not None else error} {_short(text, 120)}".rstrip()
        check_http(a["expect"], status, out_headers, text, error)
        return shown

    # ---- consul commands ---------------------------------------------------------------------
    async def _do_consul(self, step: Step) -> str:
        from consim.consulcli import TransportError, run_command

        a = {
            **step.args,
            "argv": self.fill(step.args["argv"], step),
            "expect": self.fill(step.args["expect"], step),
        }
        name = self.resolve(a["on"], step)

        async def transport(
            method: str, path: str, headers: dict[str, str], body: bytes
        ) -> tuple[int, dict[str, str], bytes]:
            status, out_headers, out_body, error = await self.request(
                name, method, path, headers, body, kind="consul_http"
            )
            if status is None:
                address = self.cluster.node(name).spec.http_address
                verb = method[0] + method[1:].lower()
                url = f'{verb} "http://{address}{path}"'
                if "connection refused" in error or "ConnectError" in error:
                    raise TransportError(f"{url}: dial tcp {address}: connect: connection refused")
                raise TransportError(f"{url}: {error}")
            return status, out_headers, out_body

        out = await run_command(list(a["argv"]), transport, env={})
        self.events.emit(
            SCENARIO_NODE,
            "consul_command",
            {
                "server": name,
                "command": "consul " + " ".join(a["argv"]),
                "exit": out.exit_code,
                "stdout": out.stdout,
                "stderr": out.stderr,
                "step": step.number,
            },
            message="consul " + " ".join(a["argv"]),
        )
        problems = []
        e = a["expect"]
        if "exit" in e and out.exit_code != e["exit"]:
            problems.append(f"exit code {out.exit_code}, expected {e['exit']}")
        if "stdout" in e and out.stdout.rstrip("\n") != e["stdout"].rstrip("\n"):
            problems.append(f"stdout differs, expected {e['stdout']!r}")
        for piece in e.get("stdout_contains", []):
            if piece not in out.stdout:
                problems.append(f"stdout lacks {piece!r}")
        for piece in e.get("stdout_lacks", []):
            if piece in out.stdout:
                problems.append(f"stdout contains {piece!r}")
        for piece in e.get("stderr_contains", []):
            if piece not in out.stderr:
                problems.append(f"stderr lacks {piece!r}")
        output = (out.stdout + out.stderr).rstrip("\n")
        if problems:
            raise StepFailed("; ".join(problems) + f"\n{_indent(output)}")
        return f"exit {out.exit_code} on {name}\n{_indent(output)}"

    # ---- peers.json --------------------------------------------------------------------------
    async def _do_peers_json(self, step: Step) -> str:
        a = step.args
        data_dir = self.cluster.spec.data_dir
        if data_dir is None:
            raise StepFailed("peers_json needs a data directory")
        on = [n for t in a["on"] for n in self.resolve_many(t, step)]
        if a["servers"] == "all-running":
            # The survivors: servers still running plus the ones we are writing to (the
            # outage guide stops them before writing peers.json).
            dcs = {self.cluster.node(n).datacenter for n in on}
            names = sorted(
                n.name
                for n in self.cluster.servers.values()
                if n.datacenter in dcs and (n.running or n.name in on)
            )
        else:
            names = [self.resolve(t, step) for t in a["servers"]]
        nodes = [self.cluster.node(n) for n in names]
        if self.cluster.spec.raft_protocol >= 3:
            content: Any = [
                {"id": n.node_id, "address": n.address, "non_voter": False} for n in nodes
            ]
        else:
            content = [n.address for n in nodes]
        text = json.dumps(content, indent=2) + "\n"
        for name in on:
            path = data_dir / name / "raft" / "peers.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.events.emit(
            SCENARIO_NODE,
            "peers_json_written",
            {"on": on, "servers": names},
            level="WARN",
            message="peers.json written",
        )
        return f"on {', '.join(on)}: {', '.join(names)}"

    # ---- load --------------------------------------------------------------------------------
    async def _do_load(self, step: Step) -> str:
        name = self.resolve(step.args["on"], step)
        return await self._load(step, name, [])

    async def _load(
        self, step: Step, name: str, records: list[tuple[float, int | None, str]]
    ) -> str:
        """Requests at ``rate`` for ``duration``; ``records`` collects (time, status, failure)."""
        a = step.args
        count = max(1, int(round(a["rate"] * a["duration"])))
        interval = 1.0 / a["rate"]
        path = "/v1/kv/" + a["key"]
        if a["op"] == "read" and a["consistency"] != "default":
            path += "?" + a["consistency"]

        async def one(i: int) -> None:
            if a["op"] == "write":
                status, _, body, error = await self.request(
                    name, "PUT", path, body=str(i).encode(), kind="load_request"
                )
            else:
                status, _, body, error = await self.request(name, "GET", path, kind="load_request")
            ok = status == 200 or (a["op"] == "read" and status == 404)
            reason = (
                "" if ok else (error or f"{status} {_short(body.decode('utf-8', 'replace'), 60)}")
            )
            records.append((self.events.now(), status, reason))

        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, i)
                await trio.sleep(interval)
        summary = self._load_summary(name, records)
        ok = sum(1 for _, _, reason in records if not reason)
        if a["min_ok"] is not None and ok < a["min_ok"] * len(records):
            raise StepFailed(f"only {summary} (expected at least {a['min_ok']:.0%})")
        return summary

    @staticmethod
    def _load_summary(name: str, records: list[tuple[float, int | None, str]]) -> str:
        ok = sum(1 for _, _, reason in records if not reason)
        failures: dict[str, int] = {}
        for _, _, reason in records:
            if reason:
                failures[reason] = failures.get(reason, 0) + 1
        summary = f"{ok}/{len(records)} answered on {name}"
        if failures:
            summary += "; failures: " + ", ".join(f"{r} x{n}" for r, n in sorted(failures.items()))
        return summary

    # ---- check -------------------------------------------------------------------------------
    async def _do_check(self, step: Step) -> str:
        """A consim check campaign on this cluster; fails unless the verdict is the expected one."""
        from consim.check.campaign import CheckConfig, check_on_cluster

        a = step.args
        config = CheckConfig(
            clients=a["clients"],
            keys=a["keys"],
            rate=a["rate"],
            duration=a["duration"],
            consistency=a["consistency"],
            nemesis=a["nemesis"],
            interval=a["interval"],
            timeout=a["timeout"],
            live=self.live,
        )
        result = await check_on_cluster(self.cluster, config, key_prefix=f"check{step.number}/")
        detail = (
            f"{result['ops']} operations, {result['faults']} faults: {result['verdict']}"
            + "".join(f"; invariant {n} violated" for n in result["invariants_failed"])
        )
        lin = result["linearizability"]
        if lin["verdict"] == "invalid":
            ops = "; ".join(_window_op(op) for op in lin["window"][:4])
            detail += f" (key {lin['failing_key']}: {ops})"
        expected = a["live_verdict"] if self.live else a["verdict"]
        if expected != "any" and result["verdict"] != expected:
            raise StepFailed(f"{detail}; expected {expected}")
        if expected == "any" and result["invariants_failed"]:
            raise StepFailed(f"{detail}; the invariants must hold whatever the verdict")
        return detail

    # ---- assertions --------------------------------------------------------------------------
    async def _do_assert(self, step: Step) -> str:
        a = step.args
        problems: list[str] = []

        def check() -> bool:
            problems.clear()
            problems.extend(self._assert_problems(step))
            return not problems

        if not await self._until(check, a["within"]):
            raise StepFailed("; ".join(problems))
        return "holds"

    def _assert_problems(self, step: Step) -> list[str]:
        checks = step.args["checks"]
        dc = step.dc or self.default_dc
        leader = self.cluster.leader(dc)
        out = []
        for key, want in checks.items():
            if key == "leader":
                try:
                    name = self.resolve(want, step)
                except StepFailed as exc:
                    out.append(str(exc))
                    continue
                if leader is None or leader.name != name:
                    out.append(f"leader is {leader.name if leader else 'nobody'}, expected {name}")
            elif key == "leader_not":
                try:
                    name = self.resolve(want, step)
                except StepFailed as exc:
                    out.append(str(exc))
                    continue
                if leader is None:
                    out.append(f"{dc} has no leader")
                elif leader.name == name:
                    out.append(f"{name} is still the leader")
            elif key == "no_leader" and leader is not None:
                out.append(
                    f"{leader.name} is leader (term {leader.core.term if leader.core else '?'})"
                )
            elif key == "term_increased":
                before = self.fault_term.get(dc, 0)
                if leader is None or leader.core is None:
                    out.append(f"{dc} has no leader")
                elif leader.core.term <= before:
                    out.append(f"leader term {leader.core.term} is not above {before}")
            elif key in ("logs_equal", "commit_converged"):
                running = [
                    n
                    for n in self.cluster.datacenter_servers(dc)
                    if n.running and n.core is not None
                ]
                if key == "logs_equal":
                    seen = {(n.core.last_index, n.core.last_term) for n in running}  # type: ignore[union-attr]
                    what = "last index/term"
                    values = ", ".join(
                        f"{n.name}={n.core.last_index}/{n.core.last_term}"  # type: ignore[union-attr]
                        for n in running
                    )
                else:
                    seen = {(n.core.commit_index, n.fsm.last_applied) for n in running}  # type: ignore[union-attr]
                    what = "commit/applied index"
                    values = ", ".join(
                        f"{n.name}={n.core.commit_index}/{n.fsm.last_applied}"  # type: ignore[union-attr]
                        for n in running
                    )
                if len(seen) > 1:
                    out.append(f"{what} differ: {values}")
            elif key == "state":
                for target, expected in want.items():
                    try:
                        name = self.resolve(target, step)
                    except StepFailed as exc:
                        out.append(str(exc))
                        continue
                    status = self.cluster.node(name).status()
                    actual = "paused" if status.get("paused") else status["state"]
                    if expected == "not-leader":
                        if actual in ("leader", "down", "paused"):
                            out.append(f"{name} is {actual}, expected it running and not leader")
                    elif actual != expected:
                        out.append(f"{name} is {actual}, expected {expected}")
            elif key == "voters":
                voters = self._voters(dc)
                if voters != want:
                    out.append(f"{voters} voters, expected {want}")
            elif key == "kv":
                if want["on"] == "all-running":
                    names = [n.name for n in self.cluster.datacenter_servers(dc) if n.running]
                else:
                    names = [self.resolve(t, step) for t in want["on"]]
                for name in names:
                    _, entry = self.cluster.node(name).fsm.get(want["key"])
                    actual = None if entry is None else (entry.value or b"").decode()
                    if actual != want["value"]:
                        out.append(
                            f"{name} has {want['key']}={actual!r}, expected {want['value']!r}"
                        )
        return out


def check_http(
    expect: dict[str, Any],
    status: int | None,
    headers: dict[str, str],
    text: str,
    error: str = "",
) -> None:
    """Raise :class:`StepFailed` listing every expectation that does not hold."""
    problems = []
    if status is None:
        if expect:
            raise StepFailed(f"no answer: {error}")
        return
    if "status" in expect and status != expect["status"]:
        problems.append(f"status {status}, expected {expect['status']}")
    if "body" in expect and text != expect["body"]:
        problems.append(f"body {_short(text, 200)!r}, expected {expect['body']!r}")
    if "body_contains" in expect and expect["body_contains"] not in text:
        problems.append(f"body {_short(text, 200)!r} lacks {expect['body_contains']!r}")
    for name, value in expect.get("headers", {}).items():
        actual = headers.get(name.lower())
        if actual != str(value):
            problems.append(f"header {name}: {actual!r}, expected {value!r}")
    parsed: Any = None
    if "json" in expect or "leaders" in expect:
        try:
            parsed = json.loads(text)
        except ValueError:
            problems.append(f"body is not JSON: {_short(text, 120)!r}")
    if parsed is not None:
        for key, value in expect.get("json", {}).items():
            problems.extend(_json_subset(parsed, key, value))
        if "leaders" in expect:
            servers = parsed.get("Servers", []) if isinstance(parsed, dict) else []
            leaders = sum(1 for s in servers if isinstance(s, dict) and s.get("Leader") is True)
            if leaders != expect["leaders"]:
                problems.append(f"{leaders} servers with Leader=true, expected {expect['leaders']}")
    if problems:
        raise StepFailed("; ".join(problems))


_MISSING = object()


def _lookup(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(doc, list) and part.lstrip("-").isdigit():
            i = int(part)
            if -len(doc) <= i < len(doc):
                doc = doc[i]
                continue
            return _MISSING
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
            continue
        return _MISSING
    return doc


def _json_subset(doc: Any, path: str, want: Any) -> list[str]:
    """``want`` must match the value at the dotted ``path``; tables match as subsets.

    A ``Value`` field (KV's base64) also matches its decoded text, so a scenario can say
    ``json = { "0.Value" = "v2" }``.
    """
    actual = _lookup(doc, path)
    if actual is _MISSING:
        return [f"JSON has no {path}"]
    if isinstance(want, dict):
        out = []
        for k, v in want.items():
            out.extend(_json_subset(actual, k, v))
        return [p.replace("JSON has no ", f"JSON has no {path}.") for p in out]
    if actual == want:
        return []
    if path.split(".")[-1] == "Value" and isinstance(actual, str) and isinstance(want, str):
        try:
            if base64.b64decode(actual).decode() == want:
                return []
        except ValueError:
            pass
    return [f"JSON {path} = {json.dumps(actual)}, expected {json.dumps(want)}"]


def short(text: str, limit: int = 160) -> str:
    """One line of at most ``limit`` characters (``...`` marks a cut)."""
    return _short(text, limit)


def _short(text: str, limit: int = 160) -> str:
    text = text.strip().replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_key(key: str) -> str:
    return key[:8] + "..." if len(key) > 12 else key


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


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


def _window_op(op: dict[str, Any]) -> str:
    what = {"read": "read", "write": "write", "cas": "cas"}[op["f"]]
    value = op["output"] if op["f"] == "read" else op["value"]
    end = "..." if op["complete_time"] is None else f"{op['complete_time']:.3f}"
    return (
        f"p{op['process']} {what} {json.dumps(value)} {op['type']} [{op['invoke_time']:.3f}, {end}]"
    )


def run_scenario(
    scenario: Scenario,
    *,
    seed: int | None = None,
    live: bool = False,
    http_port: int = 8500,
    host_block: int = 0,
) -> RunResult:
    """Run one scenario to completion and return its results (events included)."""
    seed = scenario.seed if seed is None else seed
    with _DataDir(scenario) as data_dir:
        spec = cluster_spec(scenario, seed, data_dir, http_port, host_block)
        if live:
            return _run_live(scenario, spec)
        return _run_virtual(scenario, spec)


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


def _run_virtual(scenario: Scenario, spec: ClusterSpec) -> RunResult:
    from consim.runtime import run_virtual

    holder: list[ScenarioRunner] = []

    async def body(cluster: Cluster) -> list[StepResult]:
        runner = ScenarioRunner(scenario, cluster)
        holder.append(runner)
        return await runner.run()

    steps, events = run_virtual(spec, body)
    return _make_result(scenario, spec, "virtual", steps, events)


def _run_live(scenario: Scenario, spec: ClusterSpec) -> RunResult:
    from consim.live import start_live_cluster_parts

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


def percent(n: int, total: int) -> str:
    return "0%" if total == 0 else f"{math.floor(100 * n / total)}%"
