"""The keyring rotation through py-consul's keyring calls against a LIVE cluster (sockets, real
clock, hypercorn): three datacenters, one server each."""

from __future__ import annotations

import trio

from consim.runtime import start_live_cluster_parts

from .helpers import K1, K2, all_alive, spec

HTTP_PORT = 48500


async def test_live_three_datacenter_rotation_with_py_consul():
    import consul
    from live_hosts import free_host_base

    # Not 127.0.0.x: the py-consul judges keep a dev agent there and restart it per test, so a
    # free check between two of their tests would take it from under them (a CI run failed so).
    base = free_host_base([1, 1, 1], HTTP_PORT, bases=range(140, 250, 3))
    cluster, _events = start_live_cluster_parts(
        spec(
            datacenters=(("dc1", 1), ("dc2", 1), ("dc3", 1)),
            http_port=HTTP_PORT,
            seed=9,
            host_block=base,
        )
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(cluster.net.run)
        await nursery.start(cluster.run)
        with trio.fail_after(30):
            for dc in ("dc1", "dc2", "dc3"):
                await cluster.wait_for_leader(dc, within=30)
            while not all_alive(cluster):
                await trio.sleep(0.05)

        host, port = cluster.node("dc2-s1").spec.http_address.split(":")
        client = consul.Consul(host=host, port=int(port))
        op = client.operator

        async def sync(fn, *args, **kw):
            return await trio.to_thread.run_sync(lambda: fn(*args, **kw))

        def check(listing, keys, primary):
            # WAN entry first (dc2 answers), then every datacenter's LAN entry.
            assert [(e["WAN"], e["Datacenter"]) for e in listing] == [
                (True, "dc2"), (False, "dc1"), (False, "dc2"), (False, "dc3"),
            ]  # fmt: skip
            assert [e["NumNodes"] for e in listing] == [3, 1, 1, 1]
            for e in listing:
                n = e["NumNodes"]
                assert e["Keys"] == dict.fromkeys(keys, n)
                assert e["PrimaryKeys"] == {primary: n}
                assert e["Segment"] == "" and "Messages" not in e

        with trio.fail_after(60):
            check(await sync(op.keyring_list), [K1], K1)
            assert await sync(op.keyring_install, K2) is True
            check(await sync(op.keyring_list), [K1, K2], K1)
            assert await sync(op.keyring_use, K2) is True
            check(await sync(op.keyring_list), [K1, K2], K2)
            assert await sync(op.keyring_remove, K1) is True
            check(await sync(op.keyring_list), [K2], K2)
            local = await sync(op.keyring_list, local_only=True)
            assert local == [
                {
                    "WAN": False,
                    "Datacenter": "dc2",
                    "Segment": "",
                    "Keys": {K2: 1},
                    "PrimaryKeys": {K2: 1},
                    "NumNodes": 1,
                }
            ]
            # A rule violation comes back as py-consul's error carrying the 500 body.
            try:
                await sync(op.keyring_remove, K2)
            except consul.ConsulException as exc:
                assert "Removing the primary key is not allowed" in str(exc)
            else:
                raise AssertionError("removing the primary key succeeded")
        nursery.cancel_scope.cancel()
