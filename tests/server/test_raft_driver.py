"""The Raft driver's write path (consim.server.raft_driver) and the transport's batch encoding:
the lean ApplyFuture, the leader applying its own command, one encoding per batch."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from consim.cluster import Cluster
from consim.net.network import RpcError
from consim.raft import hashicorp_wire as hw
from consim.raft.config import RaftConfig
from consim.raft.core import Outbound
from consim.raft.messages import AppendEntries
from consim.raft.types import EntryType, LogEntry
from consim.server.fsm import pack_command
from consim.server.raft_driver import ApplyFuture, RaftDriver
from consim.server.raft_transport import RaftTransport
from consim.spec import ClusterSpec
from tests.runtime.helpers import virtual


def test_apply_future_wakes_every_waiter_and_outlives_a_cancelled_one() -> None:
    async def main() -> None:
        future = ApplyFuture(5, 2)
        got: list[Any] = []

        async def waiter() -> None:
            got.append(await future.result())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            nursery.start_soon(waiter)
            with trio.move_on_after(0.01) as scope:  # a third waiter, cancelled while waiting
                await future.result()
            assert scope.cancelled_caught
            future.resolve("applied")
        assert got == ["applied", "applied"]
        future.fail("too late")  # settled once: a later outcome changes nothing
        assert await future.result() == "applied"
        lost = ApplyFuture(6, 2)
        lost.fail("leadership lost while committing log")
        with pytest.raises(RpcError, match="leadership lost"):
            await lost.result()

    trio.run(main)


def kv_set(value: bytes) -> dict[str, Any]:
    return {"Type": "KVS", "Op": "set", "DirEnt": {"Key": "k", "Value": value}}


def test_leader_applies_its_own_command_and_the_bytes_of_any_other_entry() -> None:
    driver = RaftDriver(SimpleNamespace(record_applies=False), RaftConfig(), random.Random(1))
    mine = kv_set(b"mine")
    # Proposed in term 2 at index 1, but a term-3 leader's entry took the index: its bytes are
    # applied, not the dict this server proposed, and the proposer hears leadership was lost.
    stale = driver._applies[1] = ApplyFuture(1, 2, mine)
    driver._apply([LogEntry(1, 3, EntryType.COMMAND, pack_command(kv_set(b"theirs")))])
    assert driver.fsm.kvs.get("k")[1].value == b"theirs"
    with pytest.raises(RpcError, match="leadership lost"):
        trio.run(stale.result)
    # Our own entry (same index, same term) is applied from the command it was encoded from.
    own = driver._applies[2] = ApplyFuture(2, 3, mine)
    driver._apply([LogEntry(2, 3, EntryType.COMMAND, pack_command(mine))])
    entry = driver.fsm.kvs.get("k")[1]
    assert (entry.value, entry.create_index, entry.modify_index) == (b"mine", 1, 2)
    assert trio.run(own.result) is True


class _Conn:
    closed = False

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


class _Net:
    def __init__(self) -> None:
        self.conns: dict[str, _Conn] = {}

    def dial(self, src: str, dst: str, first_byte: int, factory: Any) -> _Conn:
        conn = self.conns[dst] = _Conn()
        factory(conn)
        return conn


def test_a_batch_is_encoded_once_and_never_confused_with_another_terms() -> None:
    net = _Net()
    me = "127.0.0.1:8300"
    transport = RaftTransport(SimpleNamespace(address=me, counters={}), net)  # type: ignore[arg-type]
    first = tuple(LogEntry(i, 2, EntryType.COMMAND, b"a%d" % i) for i in (5, 6))
    # The same indexes in a later term (the log was rewritten there): other bytes.
    later = tuple(LogEntry(i, 3, EntryType.COMMAND, b"b%d" % i) for i in (5, 6))
    sends = [("127.0.0.2:8300", first), ("127.0.0.3:8300", first), ("127.0.0.2:8300", later)]
    for seq, (to, entries) in enumerate(sends, 1):
        transport.send(Outbound(to, to, AppendEntries(3, "s1", me, 4, 2, entries, 4, seq)))
    got = net.conns["127.0.0.2:8300"].written + net.conns["127.0.0.3:8300"].written
    want = [hw.append_entries_request(3, me, 4, 2, e, 4) for e in (first, later, first)]
    assert got == want
    assert got[0] != got[1]


def test_a_lone_write_leaves_at_once_and_writes_that_queue_are_grouped() -> None:
    async def until_idle(core: Any) -> None:
        with trio.fail_after(5):
            while not core.replication_idle():
                await trio.sleep(0.001)

    async def body(cluster: Cluster) -> None:
        leader = await cluster.wait_for_leader(within=10)
        driver, core = leader.raft_driver, leader.core
        assert core is not None
        await until_idle(core)
        # One write on an idle pipeline: its AppendEntries is on the way to every follower when
        # the proposal returns, not one scheduler trip later from the raft timer.
        lone = driver.propose_command(pack_command(kv_set(b"a")), kv_set(b"a"))
        assert not core.replication_idle()
        # Two more while that one is in flight wait for the timer and leave in one batch,
        # whose answer wakes both writers.
        queued = [driver.propose_command(pack_command(kv_set(v)), kv_set(v)) for v in (b"b", b"c")]
        for future in (lone, *queued):
            assert await future.result() is True
        await until_idle(core)
        # Writers are queueing now (the last batch woke two): the next write is grouped with
        # whatever the others propose in this pass, so nothing has left yet.
        grouped = driver.propose_command(pack_command(kv_set(b"d")), kv_set(b"d"))
        assert core.replication_idle()
        assert await grouped.result() is True
        assert leader.fsm.kvs.get("k")[1].value == b"d"

    virtual(ClusterSpec(seed=5, raft_multiplier=1), body)


def test_a_paused_leader_sends_nothing_for_a_write_proposed_while_paused() -> None:
    """A task that checked ``paused`` before it awaited may still propose during a pause
    (reconcile, session TTLs). The lone-write path must not send it: a SIGSTOPped leader is
    silent until resumed, then the write commits."""

    def kv(value: bytes) -> dict[str, Any]:
        return {"Type": "KVS", "Op": "set", "DirEnt": {"Key": "k", "Value": value}}

    async def body(cluster: Cluster) -> tuple[list[int], list[int], Any]:
        leader = await cluster.wait_for_leader(within=10)
        with trio.fail_after(5):
            while not leader.core.replication_idle():
                await trio.sleep(0.001)
        others = [s for s in cluster.servers.values() if s is not leader]
        before = [s.core.last_index for s in others]
        leader.pause()
        future = leader.raft_driver.propose_command(pack_command(kv(b"x")), kv(b"x"))
        await trio.sleep(0.2)
        during = [s.core.last_index for s in others]
        leader.resume()
        return before, during, await future.result()

    (before, during, result), _ = virtual(ClusterSpec(seed=5, raft_multiplier=1), body)
    assert during == before, (before, during)
    assert result is True
