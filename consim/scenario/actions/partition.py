"""``partition = [["leader"], ["others"]]``: split the network into groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consim.scenario.actions.base import Action
from consim.scenario.base import ActionArgs, Checker, Step, StepFailed, Target

if TYPE_CHECKING:
    from consim.scenario.context import StepContext


@dataclass(frozen=True, eq=False)
class PartitionArgs(ActionArgs):
    groups: list[list[Target]]

    def describe(self) -> str:
        return "partition " + " | ".join(",".join(str(t) for t in group) for group in self.groups)


class Partition(Action[PartitionArgs]):
    name = "partition"

    def parse(self, c: Checker, value: Any, step: dict[str, Any], dc: str | None) -> PartitionArgs:
        if (
            not isinstance(value, list)
            or len(value) < 2
            or not all(isinstance(g, list) for g in value)
        ):
            raise c.expected(
                "partition", 'at least two groups like [["dc1-s1"], ["dc1-s2", "dc1-s3"]]', value
            )
        groups = []
        for gi, group in enumerate(value):
            if not group:
                raise c.fail(f"partition[{gi}]", "expected a non-empty group")
            groups.append([c.target(f"partition[{gi}]", t, dc, others=True) for t in group])
        named = [t.name for g in groups for t in g if not t.is_role]
        if len(named) != len(set(named)):
            raise c.fail("partition", "a server appears in more than one group")
        if sum(1 for g in groups for t in g if t.name == "others") > 1:
            raise c.fail("partition", '"others" may appear only once')
        return PartitionArgs(groups)

    async def run(self, ctx: StepContext, step: Step, args: PartitionArgs) -> str:
        groups: list[list[str]] = []
        others_at: int | None = None
        for gi, group in enumerate(args.groups):
            names = []
            for t in group:
                if t.name == "others":
                    others_at = gi
                else:
                    names.append(ctx.resolve(t, step))
            groups.append(names)
        if others_at is not None:
            taken = {n for g in groups for n in g}
            dcs = {ctx.cluster.node(n).datacenter for n in taken} or {ctx.dc_of(step)}
            groups[others_at].extend(
                sorted(
                    n.name
                    for n in ctx.cluster.servers.values()
                    if n.datacenter in dcs and n.name not in taken
                )
            )
        flat = [n for g in groups for n in g]
        if len(flat) != len(set(flat)):
            raise StepFailed(f"a server is in two groups after resolving roles: {groups}")
        ctx.note_fault(flat)
        # The old leader is the one cut off from the majority, not one that keeps its quorum.
        ctx.cluster.partition(groups)
        ctx.roles.last_partition = groups
        return " | ".join(",".join(g) for g in groups)


ACTIONS = (Partition(),)
