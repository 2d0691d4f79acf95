"""``wait = "log"`` counts a server's line from the end of the previous step: a cluster of agent
processes (``consim run --processes``) hands the children's lines over in the look before the next
step starts, so a line logged between two steps must still satisfy the wait that follows."""

from __future__ import annotations

from consim.cluster import Cluster
from consim.runtime import VirtualRuntime
from consim.scenario.actions.waits import CONDITIONS, WaitFor
from consim.scenario.actions.waits.log import LogArgs
from consim.scenario.base import ActionArgs, Step, StepFailed
from consim.scenario.context import StepContext
from consim.spec import ClusterSpec


def test_a_line_logged_after_the_previous_step_satisfies_the_wait() -> None:
    spec = ClusterSpec(datacenters=(("dc1", 1),), seed=3)

    async def body(cluster: Cluster) -> tuple[str, str]:
        ctx = StepContext(cluster, default_dc="dc1")
        condition = CONDITIONS["log"]
        step = Step(2, "wait", ActionArgs())  # the log condition reads only its own keys
        cluster.events.emit("dc1-s1", "x", message="a line before the mark")
        ctx.events_mark = cluster.events.emitted
        cluster.events.emit("dc1-s1", "x", message="a line between the steps")
        seen = await condition.run(ctx, step, WaitFor("log", 0.0, "0s", LogArgs("between")))
        try:
            await condition.run(ctx, step, WaitFor("log", 0.0, "0s", LogArgs("before the mark")))
            missed = "found"
        except StepFailed as exc:
            missed = str(exc)
        return seen, missed

    (seen, missed), _ = VirtualRuntime().run_cluster(spec, body)
    assert seen.startswith("dc1-s1 after ") and seen.endswith(": a line between the steps")
    assert missed == "no server logged 'before the mark' within 0s"
