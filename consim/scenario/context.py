"""What a scenario action may use when it runs: :class:`StepContext`.

The runner owns the sequence of steps, their results and the background jobs; an action gets only
this: the cluster, the event log, the roles earlier steps left behind (:class:`Roles`), and the
helpers every action shares (resolving a target, polling a condition, an HTTP request that is
logged as an event, filling ``{rpc:NAME}`` placeholders).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import trio

from consim.events import EventLog
from consim.scenario.base import (
    PARTITION_MEMBER,
    PLACEHOLDER,
    ROLE_TARGETS,
    SCENARIO_NODE,
    Step,
    StepFailed,
    Target,
    short,
)

if TYPE_CHECKING:
    from consim.spec import ClusterSpec

__all__ = [
    "SCENARIO_NODE",
    "Roles",
    "ScenarioCluster",
    "StepContext",
    "StepFailed",
    "role_server",
    "short",
]


class ScenarioCluster(Protocol):
    """What a step uses of a cluster: ``consim.cluster.Cluster`` (one process, virtual or live)
    and ``consim.agent.remote.ProcessScenarioCluster`` (a ``consim agent`` process per server)
    both have it. A server (``node``, ``servers``) has a ServerNode's ``name``, ``datacenter``,
    ``spec``, ``address``, ``node_id``, ``server_id``, ``running``, ``paused``, ``status()``,
    ``is_leader()``, ``core`` (term, indexes, leader_id, configurations' ``voters()``), ``fsm``
    (``last_applied``, ``get``) and ``lan_pool``/``wan_pool`` (``members()``, the keyring)."""

    spec: ClusterSpec
    events: EventLog
    servers: dict[str, Any]

    def node(self, name: str) -> Any: ...
    def datacenter_servers(self, datacenter: str) -> list[Any]: ...
    def leader(self, datacenter: str = "dc1") -> Any: ...
    def followers(self, datacenter: str = "dc1") -> list[Any]: ...
    def acknowledged(self, leader: Any) -> bool: ...
    def kill(self, name: str) -> None: ...
    async def restart(self, name: str) -> None: ...
    async def stop(self, name: str) -> None: ...
    def pause(self, name: str) -> None: ...
    def resume(self, name: str) -> None: ...
    def partition(self, groups: list[list[str]]) -> None: ...
    def isolate(self, name: str) -> None: ...
    def block(self, src: str, dst: str) -> None: ...
    def heal(self, all: bool = False) -> None: ...  # noqa: A002 - FaultModel.heal's name
    def set_loss(self, src: str, dst: str, probability: float) -> None: ...
    def set_delay(self, src: str, dst: str, seconds: float) -> None: ...

    # (name, method, path, *, headers=None, body=b"") -> (status, headers, body), as Cluster.http
    http: Callable[..., Awaitable[tuple[int, dict[str, str], bytes]]]

    async def sync(self, kv: Collection[str] = ()) -> None:
        """Bring what steps read up to date (faults sent, servers read; ``kv``: keys of the
        servers' state machines to read too). The in-process cluster has nothing to do."""


def role_server(cluster: ScenarioCluster, role: str, dc: str) -> str | None:
    """The server ``leader``, ``follower`` or ``any`` (running, not paused) stands for in ``dc``
    right now, the first by name where several do; None where none does. Scenario steps and
    ``consim ctl`` say so each in their own words."""
    if role == "leader":
        leader = cluster.leader(dc)
        return None if leader is None else str(leader.name)
    if role == "follower":
        candidates = cluster.followers(dc)
    else:
        candidates = [n for n in cluster.datacenter_servers(dc) if n.running and not n.paused]
    return min((str(n.name) for n in candidates), default=None)


@dataclass
class Roles:
    """What roles mean now, as earlier steps left it."""

    # The leader a fault hit last (``old-leader``).
    old_leader: str | None = None
    # The server a kill or stop hit last (``last-killed``).
    last_killed: str | None = None
    # The groups of the last partition, as resolved then (``partition[G][N]``).
    last_partition: list[list[str]] = field(default_factory=list)
    # Per datacenter, the highest term before the last fault (``new-leader``, ``term_increased``).
    fault_term: dict[str, int] = field(default_factory=dict)


class StepContext:
    """The narrow interface an action runs against (see the module docstring)."""

    def __init__(self, cluster: ScenarioCluster, *, default_dc: str, live: bool = False) -> None:
        self.cluster = cluster
        self.events: EventLog = cluster.events
        self.live = live
        self.roles = Roles()
        self.default_dc = default_dc
        self._poll = 0.05 if live else 0.01
        # Measurements a step leaves for the results (the load step's latencies), by step number.
        self.measurements: dict[int, dict[str, Any]] = {}
        # What http steps saved (save = { NAME = "json.path" }), for {var:NAME} placeholders.
        self.variables: dict[str, str] = {}
        # The log's event count when the previous step ended (set by the runner): a cluster of
        # processes hands a server's lines over a look later, in the sync before this step.
        self.events_mark = 0

    def events_since_mark(self) -> list[Any]:
        """The events logged since the previous step ended (those the log still keeps)."""
        kept = list(self.events.events)
        first = self.events.emitted - len(kept)
        return kept[max(0, self.events_mark - first) :]

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
        roles = self.roles
        if name in ("leader", "follower", "any"):
            server = role_server(self.cluster, name, dc)
            if server is not None:
                return server
            if name == "any":
                raise StepFailed(f"target 'any': no server of {dc} is running")
            raise StepFailed(f"target {name!r}: {dc} has no {name} ({self.describe_dc(dc)})")
        if name == "old-leader":
            if roles.old_leader is None:
                raise StepFailed("target 'old-leader': no leader has been killed or cut off yet")
            return roles.old_leader
        member = PARTITION_MEMBER.match(name)
        if member is not None:
            g, i = int(member.group(1)), int(member.group(2))
            if g >= len(roles.last_partition) or i >= len(roles.last_partition[g]):
                raise StepFailed(
                    f"target {name!r}: the last partition was {roles.last_partition or 'none'}"
                )
            return roles.last_partition[g][i]
        if name == "last-killed":
            if roles.last_killed is None:
                raise StepFailed("target 'last-killed': no server has been killed or stopped yet")
            return roles.last_killed
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

    def note_fault(self, names: list[str]) -> None:
        """Remember the leader a fault hits (``old-leader``) and the term before it."""
        for name in names:
            node = self.cluster.node(name)
            dc = node.datacenter
            self.roles.fault_term[dc] = self.max_term(dc)
            if node.is_leader():
                self.roles.old_leader = name

    def max_term(self, dc: str) -> int:
        return max(
            (n.core.term for n in self.cluster.datacenter_servers(dc) if n.core is not None),
            default=0,
        )

    def voters(self, dc: str) -> int | None:
        """Voters in the leader's latest configuration (None without a leader)."""
        leader = self.cluster.leader(dc)
        if leader is None or leader.core is None:
            return None
        return len(leader.core.latest_configuration.voters())

    async def sleep(self, seconds: float) -> None:
        """Let (virtual or real) time pass."""
        await trio.sleep(seconds)

    def open_nursery(self) -> trio.Nursery:
        """For a step's own concurrent tasks (a load's requests); it ends with them."""
        return trio.open_nursery()  # type: ignore[return-value]

    async def until(
        self, predicate: Callable[[], bool], within: float, *, kv: Collection[str] = ()
    ) -> bool:
        """Poll ``predicate`` until it holds or ``within`` seconds pass; its last answer.
        ``kv``: keys the predicate reads from the servers' state machines."""
        await self.cluster.sync(kv)
        with trio.move_on_after(within):
            while not predicate():
                await trio.sleep(self._poll)
                await self.cluster.sync(kv)
            return True
        return predicate()

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
        # Imported here: consim.cluster brings the servers and the HTTP stack, which validating
        # a file (``consim validate``, the model importing every action) must not load.
        from consim.cluster import ClusterError

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
                "answer": error or (text if kind == "client_request" else short(text)),
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
                if m.group(1) == "var":
                    return self.variables[name]
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
