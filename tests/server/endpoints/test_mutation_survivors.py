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
