"""The /ui of a ``consim agent`` process (consim/ui/agent.py), on two real agents started by hand
(no supervisor): each serves the page; its stream shows the whole cluster, the peer's state as the
peer itself reports it (followed through the peer's ``?scope=self`` stream); events of either
process reach the page pushed within 200 ms; the controls a lone agent cannot perform are refused
with the reason the page shows, ``stop`` is a graceful leave of the chosen server, and reads and
writes go to the chosen server's HTTP API.

(``consim up --processes``, where the controls go to the supervisor, is driven in Chromium by
``tests/ui/test_browser.py``.)
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from live_hosts import free_host_base

from tests.agent.helpers import AgentProc, until

HTTP_PORT = 28652
NAMES = ["a1", "a2"]


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AgentProc]]:
    root = tmp_path_factory.mktemp("agents")
    block = free_host_base([2], HTTP_PORT, range(171, 199, 3))
    hosts = [f"127.0.{block}.{k}" for k in (1, 2)]
    procs = []
    for name, host in zip(NAMES, hosts, strict=True):
        other = next(h for h in hosts if h != host)
        extra = ["-bootstrap-expect=2", f"-retry-join={other}", f"-http-port={HTTP_PORT}"]
        procs.append(AgentProc(name, host, root, extra))
    for p in procs:
        p.start()
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


def url(agent: AgentProc, path: str) -> str:
    return f"http://{agent.host}:{HTTP_PORT}{path}"


class Stream:
    """A page's ``/ui/api/stream`` read in a thread: (arrival wall time, kind, data) each."""

    def __init__(self, address: str) -> None:
        self.frames: list[tuple[float, str, Any]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, args=(address,), daemon=True)
        self._thread.start()

    def _read(self, address: str) -> None:
        with httpx.stream("GET", address, timeout=30) as r:
            self.headers = r.headers
            kind = ""
            for line in r.iter_lines():
                if self._stop:
                    return
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.frames.append((time.time(), kind, json.loads(line[6:])))

    def states(self) -> list[dict[str, Any]]:
        return [d for _, k, d in list(self.frames) if k == "state"]

    def close(self) -> None:
        self._stop = True


def _wall(line: str) -> float:
    """The wall time an hclog line was written (its ISO timestamp, in ms)."""
    stamp = line.split(" ", 1)[0]
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _whole(state: dict[str, Any]) -> bool:
    """Both servers, one leader, and the follower knows it (heard from it)."""
    roles = sorted(s["role"] for s in state["servers"])
    leader = state["leaders"]["dc1"]
    followers = [s for s in state["servers"] if s["role"] == "follower"]
    return roles == ["follower", "leader"] and all(f["leader"] == leader for f in followers)


def test_every_agent_serves_the_page_and_sees_the_whole_cluster(agents: list[AgentProc]) -> None:
    a1, a2 = agents
    for agent in agents:
        page = until("the page", lambda a=agent: httpx.get(url(a, "/ui/"), timeout=5))
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert f'"server": "{agent.name}"' in page.text  # the page knows which agent served it
        js = httpx.get(url(agent, "/ui/static/ui.js"), timeout=5)
        assert js.status_code == 200 and b"EventSource" in js.content
    stream = Stream(url(a1, "/ui/api/stream"))
    try:
        # Its own server at once; the other one as that one reports itself (role, term, timer).
        until("a stream", stream.states, within=10)
        assert stream.states()[0]["servers"][0]["name"] == "a1"
        whole = until(
            "both servers and one leader on a1's page",
            lambda: next((s for s in stream.states() if _whole(s)), None),
            within=40,
        )
        servers = {s["name"]: s for s in whole["servers"]}
        assert set(servers) == {"a1", "a2"}
        for s in servers.values():
            assert s["state"] == "up" and s["term"] >= 1 and s["voter"] is True
            assert s["http"] == f"127.0.{a1.host.split('.')[2]}.{s['name'][-1]}:{HTTP_PORT}"
            assert sorted(m["name"] for m in s["lan"]) == ["a1", "a2"]
        follower = next(s for s in servers.values() if s["role"] == "follower")
        assert follower["timer"] is not None and follower["leader"] == whole["leaders"]["dc1"]
        # No supervisor: the page's controls that need one are disabled, each with its reason.
        assert whole["ctl"]["url"] is None and whole["supervisor"] is None
        disabled = whole["ctl"]["disabled"]
        assert set(disabled) >= {"kill", "restart", "pause", "resume", "isolate", "partition"}
        assert {"stop", "read", "write"}.isdisjoint(disabled)
        assert "cannot kill another server's process" in disabled["kill"]
        # a2's own stream (what a1 follows) holds a2 only.
        own = httpx.get(url(a2, "/ui/api/state?scope=self"), timeout=5).json()
        assert [s["name"] for s in own["servers"]] == ["a2"]
        assert httpx.get(url(a2, "/ui/api/state?scope=x"), timeout=5).status_code == 400

        # An event in either process reaches a1's page pushed within 200 ms: move the
        # leadership; both log it, and a1's page shows the new leader.
        leader = whole["leaders"]["dc1"]
        leader_agent = next(a for a in agents if a.name == leader)
        start = len(stream.frames)
        r = httpx.post(url(leader_agent, "/v1/operator/raft/transfer-leader"), timeout=10)
        assert r.status_code == 200, r.text
        new = next(n for n in NAMES if n != leader)

        def shown() -> Any:
            frames = stream.frames[start:]
            won = [
                (at, d)
                for at, k, d in frames
                if k == "log" and d["node"] == new and "entering leader state" in d["line"]
            ]
            states = [(at, d) for at, k, d in frames if k == "state" and d["leaders"]["dc1"] == new]
            return (won[0], states[0]) if won and states else None

        (line_at, line), (state_at, _) = until("the new leader on a1's page", shown, within=15)
        written = _wall(line["line"])
        lag_line, lag_state = line_at - written, state_at - written
        relayed = [at - _wall(d["line"]) for at, k, d in stream.frames[start:] if k == "log"]
        print(
            f"{new}'s 'entering leader state' on {a1.name}'s page after {lag_line * 1000:.0f} ms, "
            f"its role after {lag_state * 1000:.0f} ms; slowest of {len(relayed)} lines "
            f"{max(relayed) * 1000:.0f} ms"
        )
        # hclog stamps are whole milliseconds: one more is allowed for the rounding.
        assert -0.002 < lag_line < 0.2 and lag_state < 0.2, (lag_line, lag_state)
        assert max(relayed) < 0.2, relayed
    finally:
        stream.close()


def test_a_lone_agent_refuses_what_it_cannot_do_and_reads_and_writes_anywhere(
    agents: list[AgentProc],
) -> None:
    a1, a2 = agents
    until("a leader on a1's page", lambda: _whole(httpx.get(url(a1, "/ui/api/state")).json()))
    kill = httpx.post(url(a1, "/ui/api/ctl/kill"), json={"node": "a2"}, timeout=10)
    assert (
        kill.status_code == 400 and "cannot kill another server's process" in kill.json()["error"]
    )
    part = httpx.post(url(a1, "/ui/api/ctl/partition"), json={"groups": [["a1"], ["a2"]]})
    assert part.status_code == 400 and "cannot partition the network" in part.json()["error"]
    write = httpx.post(
        url(a1, "/ui/api/client"),
        json={"server": "a2", "op": "write", "key": "ui/k", "value": "v"},
        timeout=30,
    ).json()
    assert write["server"] == "a2" and write["status"] == 200 and write["body"] == "true"
    read = httpx.post(
        url(a1, "/ui/api/client"),
        json={"server": "leader", "op": "read", "key": "ui/k", "consistency": "consistent"},
        timeout=30,
    ).json()
    assert read["status"] == 200 and json.loads(read["body"])[0]["Value"] == "dg=="  # "v"
    assert read["headers"]["x-consul-effective-consistency"] == "consistent"
    bad = httpx.post(url(a1, "/ui/api/client"), json={"server": "zz", "op": "read"}).json()
    assert bad["error"] == "no server named 'zz'; known: a1, a2"
    # CORS: a2's page may call a1 (its fallback when a2 goes away); another origin may not.
    own = httpx.get(url(a1, "/ui/api/state"), headers={"Origin": f"http://{a2.host}:{HTTP_PORT}"})
    assert own.headers["access-control-allow-origin"] == f"http://{a2.host}:{HTTP_PORT}"
    evil = httpx.get(url(a1, "/ui/api/state"), headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in evil.headers
    text = httpx.post(
        url(a1, "/ui/api/ctl/stop"), content=b"{}", headers={"Content-Type": "text/plain"}
    )
    assert text.status_code == 415


def test_stop_from_a_lone_agents_page_is_a_graceful_leave(agents: list[AgentProc]) -> None:
    a1, a2 = agents
    r = httpx.post(url(a1, "/ui/api/ctl/stop"), json={"node": "a2"}, timeout=60)
    assert r.status_code == 200, r.text
    assert a2.wait(timeout=30) == 0  # Consul's exit code after a graceful leave
    assert "Graceful exit completed" in a2.output()

    def a2_stopped() -> Any:
        servers = {s["name"]: s for s in httpx.get(url(a1, "/ui/api/state")).json()["servers"]}
        return servers["a2"]["role"] == "down" and servers["a2"]["state"] == "stopped"

    until("a2 shown stopped (gossip: left) on a1's page", a2_stopped, within=15)
