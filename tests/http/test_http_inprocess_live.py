"""The two ways of reaching the app: in process in virtual time, and live through hypercorn."""

from __future__ import annotations

import time

import consul
import httpx
import trio

from consim.http.app import create_app
from consim.http.inprocess import request, serving_in_process
from consim.http.serve import serve_http

META = {"Index": 7, "LastContact": 0, "KnownLeader": True, "ConsistencyLevel": "leader"}


async def test_in_process_runs_in_virtual_time(autojump_clock, agent):
    async def slow_leader():
        await trio.sleep(42)  # a blocking query waiting in virtual time
        return "127.0.0.1:8300"

    class SlowAgent(type(agent)):
        async def rpc(self, method, args):
            self.calls.append((method, args))
            return await slow_leader()

    slow = SlowAgent()
    app = create_app(slow)
    tasks_before = trio.lowlevel.current_statistics().tasks_living
    start_wall, start = time.monotonic(), trio.current_time()
    status, headers, body = await request(app, "GET", "/v1/status/leader?index=3&wait=1m")
    assert (status, body) == (200, b'"127.0.0.1:8300"')
    assert trio.current_time() - start == 42
    assert time.monotonic() - start_wall < 5
    assert slow.last_args["MaxQueryTime"] == 60.0
    # Nothing outlives the call.
    assert trio.lowlevel.current_statistics().tasks_living == tasks_before


async def test_in_process_body_and_headers(autojump_clock, agent):
    agent.replies["KVS.Apply"] = {"Result": True, "Index": 3}
    async with serving_in_process(create_app(agent)) as app:
        status, _, body = await request(
            app, "PUT", "/v1/kv/a%20b?cas=0", {"Authorization": "Bearer x"}, b"v"
        )
    assert (status, body) == (200, b"true")
    assert agent.last_args["DirEnt"] == {"Key": "a b", "Value": b"v", "Flags": 0, "ModifyIndex": 0}
    assert agent.last_args["Token"] == "x"


async def test_live_with_py_consul_and_httpx(agent):
    agent.replies["Status.Leader"] = "127.0.0.1:8300"
    agent.replies["KVS.Get"] = {
        "Entries": [
            {
                "LockIndex": 0,
                "Key": "foo",
                "Flags": 0,
                "Value": b"bar",
                "CreateIndex": 7,
                "ModifyIndex": 7,
            }
        ],
        "QueryMeta": META,
    }
    app = create_app(agent)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_http, app, "127.0.0.1:0")
        host, port = binds[0].removeprefix("http://").rsplit(":", 1)

        def with_clients():
            c = consul.Consul(host=host, port=int(port))
            leader = c.status.leader()
            index, data = c.kv.get("foo")
            r = httpx.patch(f"http://{host}:{port}/v1/kv/foo")
            return leader, index, data, r.status_code, r.headers.get("allow"), r.text

        leader, index, data, code, allow, text = await trio.to_thread.run_sync(with_clients)
        nursery.cancel_scope.cancel()
    assert leader == "127.0.0.1:8300"
    assert index == "7" and data["Value"] == b"bar"
    assert (code, allow, text) == (405, "OPTIONS,GET,PUT,DELETE", "method PATCH not allowed")
