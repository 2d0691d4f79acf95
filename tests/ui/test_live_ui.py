"""The /ui backend (consim/ui/live.py): routes, snapshots, controls, the client, CORS, and the
pushed stream.

Most checks run in virtual time through the servers' own HTTP apps (the page's requests as a
server receives them); the stream's push latency is measured live, on real sockets.
"""

from __future__ import annotations

import json

import httpx
import trio
from live_hosts import free_host_base

from consim.cluster import Cluster
from consim.live import Controller
from consim.runtime import run_virtual
from consim.spec import ClusterSpec
from consim.ui.live import LiveUI, cluster_tap, describe_message

SPEC = ClusterSpec(datacenters=(("dc1", 3),), seed=5, raft_multiplier=1)
JSON = {"Content-Type": "application/json"}


def _virtual(body, *, ui=True):
    async def main(cluster: Cluster):
        if ui:
            cluster.ui = LiveUI(cluster, Controller(cluster))
        await cluster.wait_for_leader("dc1", within=10)
        return await body(cluster)

    return run_virtual(SPEC, main)[0]


async def _get(cluster, name, path, headers=None):
    return await cluster.http(name, "GET", path, headers=headers)


async def _post(cluster, name, path, body, headers=JSON):
    status, _, answer = await cluster.http(
        name, "POST", path, headers=headers, body=json.dumps(body).encode()
    )
    return status, json.loads(answer) if answer.startswith(b"{") else answer


def test_every_server_serves_the_page_and_its_assets():
    async def body(cluster):
        out = {}
        for name in cluster.servers:
            status, headers, page = await _get(cluster, name, "/ui/")
            out[name] = (status, headers["content-type"], page)
        redirect = await _get(cluster, "dc1-s1", "/ui")
        js = await _get(cluster, "dc1-s2", "/ui/static/ui.js")
        css = await _get(cluster, "dc1-s2", "/ui/static/ui.css")
        missing = await _get(cluster, "dc1-s2", "/ui/static/../live.py")
        return out, redirect, js, css, missing

    pages, redirect, js, css, missing = _virtual(body)
    for name, (status, kind, page) in pages.items():
        assert status == 200 and kind == "text/html; charset=utf-8"
        assert f'"server": "{name}"' in page.decode()  # the page knows which server served it
        assert b'src="static/ui.js"' in page and b"http" not in page.replace(b"http-equiv", b"")
    assert redirect[0] == 301 and redirect[1]["location"] == "/ui/"
    assert js[0] == 200 and js[1]["content-type"].startswith("text/javascript")
    assert b"data-action" in js[2] and b"EventSource" in js[2]
    assert css[0] == 200 and css[1]["content-type"].startswith("text/css")
    assert missing[0] == 404


def test_consul_404s_stay_for_every_path_outside_ui():
    async def body(cluster):
        return [
            await _get(cluster, "dc1-s1", path) for path in ("/uix", "/v1/nope", "/ui-x/", "/nope")
        ] + [await _get(cluster, "dc1-s1", "/ui/nope")]

    with_ui = _virtual(body)
    without_ui = _virtual(body, ui=False)
    assert [a[2] for a in with_ui[:4]] == [a[2] for a in without_ui[:4]]
    assert with_ui[1][2] == b"Invalid URL path: not a recognized HTTP API endpoint\n"
    assert with_ui[0][2].startswith(b"Invalid URL path: if attempting to use the HTTP API")
    assert with_ui[4][0] == 404 and with_ui[4][2] == b"not found in consim's UI\n"
    # Without the UI (virtual runs, an agent built without it) /ui/ is Consul's 404.
    assert without_ui[4][0] == 404 and without_ui[4][2].startswith(b"Invalid URL path")


def test_state_shows_roles_terms_indexes_voters_gossip_and_keyrings():
    async def body(cluster):
        _, _, raw = await _get(cluster, "dc1-s2", "/ui/api/state")
        return json.loads(raw), cluster.leader("dc1").name

    state, leader = _virtual(body)
    servers = {s["name"]: s for s in state["servers"]}
    assert set(servers) == {"dc1-s1", "dc1-s2", "dc1-s3"}
    assert state["leaders"] == {"dc1": leader}
    assert [s["name"] for s in servers.values() if s["role"] == "leader"] == [leader]
    for s in servers.values():
        assert s["state"] == "up" and s["voter"] is True and s["datacenter"] == "dc1"
        assert s["term"] >= 1 and s["commit_index"] >= 1 and s["applied_index"] >= 1
        assert [m["status"] for m in s["lan"]] == ["alive"] * 3
        assert s["keyring"] == {"lan": None, "wan": None}  # no --encrypt
        if s["role"] == "leader":
            assert s["timer"] is None
        else:
            assert s["leader"] == leader and 0 <= s["timer"]["remaining"] <= s["timer"]["max"]
            assert s["last_contact"] is not None


def test_controls_act_through_consim_ctls_controller():
    async def body(cluster):
        leader = cluster.leader("dc1").name
        kill = await _post(
            cluster,
            "dc1-s1" if leader != "dc1-s1" else "dc1-s2",
            "/ui/api/ctl/kill",
            {"node": "leader"},
        )
        survivor = next(n for n in cluster.servers if n != leader)
        await cluster.wait_for_leader("dc1", within=10, exclude={leader})
        pause = await _post(cluster, survivor, "/ui/api/ctl/pause", {"node": "follower"})
        resume = await _post(cluster, survivor, "/ui/api/ctl/resume", {"node": _paused(pause)})
        part = await _post(
            cluster, survivor, "/ui/api/ctl/partition", {"groups": [["leader"], ["others"]]}
        )
        heal = await _post(cluster, survivor, "/ui/api/ctl/heal", {})
        delay = await _post(
            cluster, survivor, "/ui/api/ctl/delay", {"src": "*", "dst": "*", "seconds": 0.2}
        )
        bad = await _post(cluster, survivor, "/ui/api/ctl/kill", {"node": "dc9-s9"})
        restart = await _post(cluster, survivor, "/ui/api/ctl/restart", {"node": "last-killed"})
        return (
            leader,
            kill,
            pause,
            resume,
            part,
            heal,
            delay,
            bad,
            restart,
            cluster.node(leader).running,
        )

    leader, kill, pause, resume, part, heal, delay, bad, restart, back = _virtual(body)
    assert kill[0] == 200 and _by_name(kill)[leader]["state"] == "killed"
    assert _by_name(kill)[leader]["role"] == "down"
    assert pause[0] == 200 and _paused(pause)
    assert resume[0] == 200 and not any(
        s["state"] == "paused" for s in resume[1]["state"]["servers"]
    )
    # The new leader alone on one side: cut off from the majority; the survivor with the killed
    # server is on the majority side of the network, so not cut off.
    cut = [s["name"] for s in part[1]["state"]["servers"] if s["state"] == "cut off"]
    assert cut == [part[1]["state"]["faults"]["partition"][0][0]]
    assert part[1]["state"]["faults"]["partition"]
    assert heal[1]["state"]["faults"]["partition"] == []
    assert delay[1]["state"]["faults"]["delay"] == [["*", "*", 0.2]]
    assert bad[0] == 400 and "no server named 'dc9-s9'" in bad[1]["error"]
    # last-killed: the page and consim ctl share what the controller remembers.
    assert restart[0] == 200 and back


def _by_name(answer):
    return {s["name"]: s for s in answer[1]["state"]["servers"]}


def _paused(answer):
    names = [s["name"] for s in answer[1]["state"]["servers"] if s["state"] == "paused"]
    return names[0] if names else None


def test_client_reads_and_writes_show_the_servers_answer():
    async def body(cluster):
        follower = cluster.followers("dc1")[0].name
        write = await _post(
            cluster,
            follower,
            "/ui/api/client",
            {"server": follower, "op": "write", "key": "k", "value": "v1"},
        )
        reads = {}
        for mode in ("default", "consistent", "stale"):
            reads[mode] = await _post(
                cluster,
                follower,
                "/ui/api/client",
                {"server": "leader", "op": "read", "key": "k", "consistency": mode},
            )
        bad = await _post(cluster, follower, "/ui/api/client", {"server": follower, "op": "delete"})
        return follower, write, reads, bad

    follower, write, reads, bad = _virtual(body)
    assert (
        write[1]["server"] == follower and write[1]["status"] == 200 and write[1]["body"] == "true"
    )
    assert write[1]["request"] == "PUT /v1/kv/k"
    for mode, (status, answer) in reads.items():
        assert status == 200 and answer["status"] == 200
        assert json.loads(answer["body"])[0]["Value"] == "djE="  # "v1"
        assert answer["request"] == "GET /v1/kv/k" + ("" if mode == "default" else f"?{mode}")
        expected = {"default": "leader", "consistent": "consistent", "stale": "stale"}[mode]
        assert answer["headers"]["x-consul-effective-consistency"] == expected
    assert "op must be read or write" in bad[1]["error"]


def test_posts_need_json_and_cors_answers_only_the_clusters_own_origins():
    async def body(cluster):
        own = f"http://{cluster.node('dc1-s2').spec.http_address}"
        text = await cluster.http(
            "dc1-s1", "POST", "/ui/api/ctl/heal", headers={"Content-Type": "text/plain"}, body=b"{}"
        )
        get_ctl = await _get(cluster, "dc1-s1", "/ui/api/ctl/kill")
        ours = await _get(cluster, "dc1-s1", "/ui/api/state", headers={"Origin": own})
        theirs = await _get(
            cluster, "dc1-s1", "/ui/api/state", headers={"Origin": "http://evil.example"}
        )
        preflight = await cluster.http(
            "dc1-s1", "OPTIONS", "/ui/api/ctl/kill", headers={"Origin": own}
        )
        return own, text, get_ctl, ours, theirs, preflight

    own, text, get_ctl, ours, theirs, preflight = _virtual(body)
    assert text[0] == 415  # a cross-origin form post cannot kill a server
    assert get_ctl[0] == 405 and get_ctl[1]["allow"] == "POST"
    assert ours[1]["access-control-allow-origin"] == own
    assert "access-control-allow-origin" not in theirs[1]
    assert preflight[0] == 204 and preflight[1]["access-control-allow-origin"] == own


def test_messages_are_labelled_as_the_page_shows_them():
    ae = {"type": "AppendEntries", "term": 3, "entries": [], "leader_commit": 7}
    assert describe_message("Raft.Message", {"msg": ae}) == ("Heartbeat", "term 3, commit 7")
    ae["entries"] = [{}, {}]
    assert describe_message("Raft.Message", {"msg": ae})[0] == "AppendEntries"
    vote = {"type": "RequestVote", "term": 4, "pre_vote": True}
    assert describe_message("Raft.Message", {"msg": vote}) == ("PreRequestVote", "term 4")
    assert describe_message("KVS.Apply", {"Op": "set"}) == ("KVS.Apply", "")


def test_forwarded_requests_are_drawn_between_the_servers():
    """A write sent to a follower travels to the leader as a Consul RPC (KVS.Apply, byte 4):
    the page draws it from the follower to the leader, beside Raft's own messages."""

    async def body(cluster: Cluster):
        seen: list[dict] = []
        cluster_tap(cluster, seen.append, trio.current_time)
        leader = cluster.leader("dc1")
        follower = cluster.followers("dc1")[0]
        status, _, answer = await cluster.http(follower.name, "PUT", "/v1/kv/drawn", body=b"yes")
        assert (status, answer.strip()) == (200, b"true")
        await trio.sleep(1)
        return leader.name, follower.name, seen

    leader, follower, seen = _virtual(body, ui=False)
    forwarded = [m for m in seen if m["type"] == "KVS.Apply"]
    assert forwarded and forwarded[0]["from"] == follower and forwarded[0]["to"] == leader, seen
    assert any(m["type"] == "Heartbeat" and m["from"] == leader for m in seen)


async def test_stream_pushes_state_logs_and_messages_within_200ms():
    """Live: the page's stream carries sampled messages and log lines, and a kill shows in a
    pushed snapshot well within 200 ms."""
    from consim.runtime import start_live_cluster_parts

    port = 28578
    block = free_host_base([3], port)
    spec = ClusterSpec(
        datacenters=(("dc1", 3),), http_port=port, host_block=block, raft_multiplier=1
    )
    cluster, _ = start_live_cluster_parts(spec)
    controller = Controller(cluster)
    ui = LiveUI(cluster, controller)
    cluster.ui = ui
    seen: dict[str, list] = {"state": [], "log": [], "msg": []}
    async with trio.open_nursery() as nursery:
        await nursery.start(ui.run)
        await nursery.start(cluster.net.run)
        await nursery.start(cluster.run)
        leader = await cluster.wait_for_leader("dc1", within=10)
        victim = cluster.followers("dc1")[0].name
        assert ui.tap.seen == 0  # no page open: messages are not even looked at
        url = f"http://{leader.spec.http_address}/ui/api/stream"
        latency = None
        with trio.fail_after(20):
            async with httpx.AsyncClient(timeout=10) as client, client.stream("GET", url) as r:
                assert r.headers["content-type"] == "text/event-stream"
                kind = None
                killed_at = None
                async for line in r.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                        continue
                    if not line.startswith("data: "):
                        continue
                    data = json.loads(line[6:])
                    seen[kind].append(data)
                    if killed_at is None and seen["msg"] and len(seen["state"]) >= 2:
                        killed_at = trio.current_time()
                        await controller.apply("kill", {"node": victim})
                    elif killed_at is not None and kind == "state":
                        states = {s["name"]: s["state"] for s in data["servers"]}
                        if states[victim] == "killed":
                            latency = trio.current_time() - killed_at
                            break
        nursery.cancel_scope.cancel()
    print(f"kill of {victim} pushed to the page after {latency * 1000:.1f} ms")
    assert latency is not None and latency < 0.2, latency
    # The leader's replication traffic reaches the page (heartbeats, or AppendEntries with entries
    # while its first writes, the catalog registrations, are still going out).
    assert any(
        m["type"] in ("Heartbeat", "AppendEntries") and m["from"] == leader.name
        for m in seen["msg"]
    ), [m["type"] for m in seen["msg"]]
    assert any(entry["kind"] == "election_won" for entry in seen["log"])  # the backlog
    assert any(
        entry["kind"] == "kill" and "server killed" in entry["line"] for entry in seen["log"]
    )
    assert ui.tap.shown <= ui.tap.seen


def test_the_pages_files_ship_as_package_data():
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["consim.ui"]
    files = sorted(p.name for p in (root / "consim" / "ui" / "static").iterdir())
    assert {"index.html", "ui.css", "ui.js"} <= set(files)
    for name in files:
        assert any(fnmatch.fnmatch(f"static/{name}", p) for p in patterns), name
