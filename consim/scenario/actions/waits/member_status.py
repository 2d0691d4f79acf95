"""``wait = "member-status"``, ``member``, ``status``, ``pool``: every other running server's
gossip view (LAN or WAN) shows ``member`` with that status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consim.scenario.actions.waits.base import Condition, ConditionArgs, WaitFor
from consim.scenario.base import Checker, Step, StepFailed, Target

if TYPE_CHECKING:
    from consim.scenario.context import StepContext

MEMBER_STATUSES = ("alive", "failed", "left")
GOSSIP_POOLS = ("lan", "wan")


@dataclass(frozen=True, eq=False)
class MemberStatusArgs(ConditionArgs):
    member: Target
    status: str
    pool: str

    def describe(self) -> str:
        return f" {self.member} {self.status} ({self.pool.upper()})"


class MemberStatus(Condition[MemberStatusArgs]):
    name = "member-status"
    keys = ("member", "status", "pool")

    def parse(self, c: Checker, step: dict[str, Any], dc: str | None) -> MemberStatusArgs:
        if "member" not in step:
            raise c.fail("member", 'required with wait = "member-status": the server to watch')
        member = c.target("member", step["member"], dc)
        status = step.get("status")
        if status not in MEMBER_STATUSES:
            raise c.expected("status", '"alive", "failed" or "left"', status)
        pool = step.get("pool", "lan")
        if pool not in GOSSIP_POOLS:
            raise c.expected("pool", '"lan" or "wan"', pool)
        return MemberStatusArgs(member, status, pool)

    async def run(self, ctx: StepContext, step: Step, wait: WaitFor[MemberStatusArgs]) -> str:
        a = wait.params
        member = ctx.resolve(a.member, step)
        node = ctx.cluster.node(member)
        wan = a.pool == "wan"
        name = f"{member}.{node.datacenter}" if wan else member
        start = ctx.events.now()
        seen: dict[str, str] = {}

        def check() -> bool:
            seen.clear()
            for o in sorted(ctx.cluster.servers.values(), key=lambda n: n.name):
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
            return bool(seen) and all(v == a.status for v in seen.values())

        ok = await ctx.until(check, wait.within)
        views = ", ".join(f"{k}: {v}" for k, v in seen.items()) or "no running server to ask"
        if not ok:
            raise StepFailed(
                f"{name} is not {a.status} in every {a.pool.upper()} view within "
                f"{wait.within_text} ({views})"
            )
        took = ctx.events.now() - start
        return f"{name} {a.status} after {took:.3f}s in the view of {', '.join(seen)}"


CONDITIONS = (MemberStatus(),)
