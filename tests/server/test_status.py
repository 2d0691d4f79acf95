"""What a server reports about itself (``Cluster.status()``, the rows of ``consim ctl status``)."""

from __future__ import annotations

from tests.server.endpoints.helpers import ready, run


def test_every_server_names_the_leader_and_a_killed_one_is_down():
    async def body(c):
        leader, followers = await ready(c)
        c.kill(followers[0].name)
        return leader.address, {row["name"]: row for row in c.status()}, followers[0].name

    leader_address, rows, killed = run(body)
    up = {name: row for name, row in rows.items() if name != killed}
    assert {row["leader"] for row in up.values()} == {leader_address}
    assert sorted(row["state"] for row in up.values()) == ["follower", "leader"]
    assert rows[killed]["state"] == "down" and "leader" not in rows[killed]
