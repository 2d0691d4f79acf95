"""``peers_json = { on = ..., servers = ... }``: write Consul's outage-recovery file
(``<data-dir>/<server>/raft/peers.json``) on stopped servers, read when they start."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from consim.scenario.actions.base import Action
from consim.scenario.base import (
    GROUP_TARGET,
    SCENARIO_NODE,
    ActionArgs,
    Checker,
    Step,
    StepFailed,
    Target,
)

if TYPE_CHECKING:
    from consim.scenario.context import StepContext


@dataclass(frozen=True, eq=False)
class PeersJsonArgs(ActionArgs):
    on: list[Target]
    # "all-running": the survivors (running servers plus the ones written to).
    servers: list[Target] | Literal["all-running"]

    def describe(self) -> str:
        return f"write peers.json on {', '.join(str(t) for t in self.on)}"


class PeersJson(Action[PeersJsonArgs]):
    name = "peers_json"

    def parse(self, c: Checker, value: Any, step: dict[str, Any], dc: str | None) -> PeersJsonArgs:
        if c.cluster.data_dir is None:
            raise c.fail("peers_json", 'needs a data directory: set [cluster] data_dir = "tmp"')
        example = '{ on = "dc1-s1", servers = ["dc1-s1"] }'
        value = c.table("peers_json", value, example, ("on", "servers"))
        on = value.get("on")
        on_list = on if isinstance(on, list) else [on]
        targets = [c.target("peers_json.on", t, dc, group=True) for t in on_list]
        servers = value.get("servers")
        server_list: list[Target] | Literal["all-running"]
        if servers in ("all-running", GROUP_TARGET):
            server_list = "all-running"
        elif isinstance(servers, list) and servers:
            server_list = [c.target("peers_json.servers", s, dc) for s in servers]
        else:
            raise c.expected(
                "peers_json.servers", 'a list of servers, "survivors" or "all-running"', servers
            )
        return PeersJsonArgs(targets, server_list)

    async def run(self, ctx: StepContext, step: Step, args: PeersJsonArgs) -> str:
        cluster = ctx.cluster
        data_dir = cluster.spec.data_dir
        if data_dir is None:
            raise StepFailed("peers_json needs a data directory")
        on = [n for t in args.on for n in ctx.resolve_many(t, step)]
        if args.servers == "all-running":
            # The survivors: servers still running plus the ones we are writing to (the
            # outage guide stops them before writing peers.json).
            dcs = {cluster.node(n).datacenter for n in on}
            names = sorted(
                n.name
                for n in cluster.servers.values()
                if n.datacenter in dcs and (n.running or n.name in on)
            )
        else:
            names = [ctx.resolve(t, step) for t in args.servers]
        nodes = [cluster.node(n) for n in names]
        if cluster.spec.raft_protocol >= 3:
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
        ctx.events.emit(
            SCENARIO_NODE,
            "peers_json_written",
            {"on": on, "servers": names},
            level="WARN",
            message="peers.json written",
        )
        return f"on {', '.join(on)}: {', '.join(names)}"


ACTIONS = (PeersJson(),)
