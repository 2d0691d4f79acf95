"""``wait = "keyring-converged"`` (+ ``key``): every running server's LAN and WAN keyring holds
the same keys with the same primary (and that primary is ``key`` when given)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consim.scenario.actions.waits.base import Condition, ConditionArgs, WaitFor
from consim.scenario.base import Checker, Step, StepFailed, gossip_key

if TYPE_CHECKING:
    from consim.scenario.context import StepContext


@dataclass(frozen=True, eq=False)
class KeyringArgs(ConditionArgs):
    key: str | None

    def describe(self) -> str:
        return f" on {self.key}" if self.key else ""


def keyrings(ctx: StepContext) -> dict[str, tuple[str, ...]]:
    """``"dc1-s1 LAN"`` -> installed keys, primary first, for every running server's pools."""
    out: dict[str, tuple[str, ...]] = {}
    for n in sorted(ctx.cluster.servers.values(), key=lambda n: n.name):
        if not n.running:
            continue
        for label, pool in (("LAN", n.lan_pool), ("WAN", n.wan_pool)):
            keyring = getattr(getattr(pool, "core", None), "keyring", None)
            out[f"{n.name} {label}"] = tuple(keyring.keys_b64()) if keyring else ()
    return out


def _short_key(key: str) -> str:
    return key[:8] + "..." if len(key) > 12 else key


class KeyringConverged(Condition[KeyringArgs]):
    name = "keyring-converged"
    keys = ("key",)

    def parse(self, c: Checker, step: dict[str, Any], dc: str | None) -> KeyringArgs:
        return KeyringArgs(gossip_key(c, "key", step["key"]) if "key" in step else None)

    async def run(self, ctx: StepContext, step: Step, wait: WaitFor[KeyringArgs]) -> str:
        key = wait.params.key
        start = ctx.events.now()

        def check() -> bool:
            rings = keyrings(ctx)
            if not rings:
                return False
            first = next(iter(rings.values()))
            if any(r[:1] != first[:1] or set(r) != set(first) for r in rings.values()):
                return False
            return key is None or first[:1] == (key,)

        if not await ctx.until(check, wait.within):
            rings = keyrings(ctx)
            views = "; ".join(
                f"{k}: " + (", ".join(_short_key(x) for x in r) or "no keyring")
                for k, r in rings.items()
            )
            want = f" with primary {_short_key(key)}" if key else ""
            raise StepFailed(
                f"keyrings did not converge{want} within {wait.within_text} "
                f"(primary first): {views}"
            )
        first = next(iter(keyrings(ctx).values()))
        took = ctx.events.now() - start
        return (
            f"every pool holds {len(first)} key(s), primary {_short_key(first[0]) if first else '-'}"
            f", after {took:.3f}s"
        )


CONDITIONS = (KeyringConverged(),)
