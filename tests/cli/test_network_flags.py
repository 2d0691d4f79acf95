"""The network model's flags on ``consim up`` and link faults on a whole datacenter through
``consim ctl``'s controller."""

from __future__ import annotations

from consim.cli import _cluster_spec, build_parser
from consim.live import Controller
from consim.runtime import run_virtual
from consim.spec import ClusterSpec


def test_up_takes_the_network_model():
    args = build_parser().parse_args(
        ["up", "--datacenters", "dc1=3,dc2=3", "--lan-latency", "2ms", "--wan-latency", "40ms"]
    )
    net = _cluster_spec(args).network
    assert net is not None and (net.lan_latency, net.wan_latency, net.loss) == (0.002, 0.04, 0.0)
    assert _cluster_spec(build_parser().parse_args(["up"])).network is None  # as before


def test_ctl_delay_and_loss_take_a_datacenter():
    async def body(cluster):
        await cluster.wait_for_leader("dc1", within=30)
        ctl = Controller(cluster)
        faults, host = cluster.net.faults, cluster.host
        await ctl.apply("delay", {"src": "dc1", "dst": "dc2", "seconds": 0.1})
        await ctl.apply("loss", {"src": "dc2", "dst": "*", "probability": 0.2})
        for a in ("dc1-s1", "dc1-s2"):
            assert faults.extra_delay(host(a), host("dc2-s1")) == 0.1
            assert faults.extra_delay(host("dc2-s1"), host(a)) == 0.0  # one way
            assert faults.loss_probability(host("dc2-s2"), host(a)) == 0.2
        assert faults.extra_delay(host("dc1-s1"), host("dc1-s2")) == 0.0  # not inside dc1
        await ctl.apply("heal", {})
        return faults.clear()

    spec = ClusterSpec(datacenters=(("dc1", 2), ("dc2", 2)), seed=1, raft_multiplier=1)
    assert run_virtual(spec, body)[0]
