"""HTTP tests written for mutants that survived scripts/mutation.py (docs/mutation.md)."""

from __future__ import annotations

from .helpers import http, ready, run


def test_acquire_error_keeps_a_non_ascii_session_id_as_it_is():
    # Consul formats the unknown session with Go's %#v: printable non-ASCII stays as it is,
    # not as a \u escape.
    async def body(c):
        _leader, (f1, _) = await ready(c)
        return await http(c, f1.name, "PUT", "/v1/kv/lock?acquire=%C3%A9t%C3%A9", body=b"x")

    status, _, raw = run(body)
    assert (status, raw.decode()) == (500, 'invalid session "été"')


def test_forwarded_blocking_query_at_index_1_may_wait_past_the_plain_rpc_timeout():
    # A blocking query (any MinQueryIndex > 0, index 1 included) forwarded to the leader gets
    # MaxQueryTime plus headroom, not the plain 10 s RPC timeout: a write 15 s later answers it.
    async def body(c):
        import trio

        leader, (f1, _) = await ready(c)

        async def write_later():
            await trio.sleep(15)
            await http(c, leader.name, "PUT", "/v1/kv/late", body=b"v")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_later)
            started = trio.current_time()
            answer = await http(c, f1.name, "GET", "/v1/kv/late?index=1&wait=30s")
            return answer, trio.current_time() - started

    (status, _, raw), took = run(body)
    assert status == 200, raw
    assert 15 <= took < 17, took
