"""The ``/ui`` of one ``consim agent`` process (each server of ``consim up --processes``, or an
agent started by hand): the same page as ``consim up``'s, showing the whole cluster.

An agent knows its own server fully and the others only through gossip (the LAN and WAN pools:
names, addresses, datacenters, alive/failed/left) and the Raft configuration. The rest of each
peer's state (role, term, indexes, timers, its gossip view and keyring, its log lines and
messages) comes from that peer itself: while a page is open here, this agent follows every peer's
``/ui/api/stream?scope=self`` (server-sent events from the peer's own AgentUI: its own server,
its own lines and messages, nothing relayed) and pushes what arrives to the page at once, merged
with its own. The browser talks to one agent only; it needs no CORS to the others (it keeps them
as fallbacks when this agent goes away, and they allow each other's origins). A peer's HTTP
address is what the supervisor reports, else ``<its gossip address>:<this agent's -http-port>``
(how ``consim up --processes`` and ``scripts/netns-lab.sh`` lay agents out). Peers are followed
only while a page watches (and :data:`LINGER` after), so an agent nobody looks at does no work.

Controls: under ``consim up --processes`` the supervisor passes its control address in
``$CONSIM_SUPERVISOR``; the page sends its controls there (``POST /ui/api/ctl/<action>`` on the
supervisor: the same ``Controller`` as ``consim ctl``) and the agent asks it (``GET /ctl/status``)
why a peer is down (killed, stopped) or paused. A standalone agent cannot kill, pause or cut off
other processes: the page shows those controls disabled with the reason; ``stop`` is a graceful
leave of the chosen server (``PUT /v1/agent/leave`` on its HTTP API, as ``consul leave
-http-addr`` does), and reads and writes go to the chosen server's HTTP API.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import deque
from typing import Any

import trio

from consim.cluster import ClusterError
from consim.gossip.types import STATUS_NAMES
from consim.ui.live import STATE_COALESCE, MessageTap, PageBackend
from consim.ui.snapshot import cut_off, down_server, faults_view, node_snapshot

SUPERVISOR_ENV = "CONSIM_SUPERVISOR"
# A peer that sent no snapshot for this long does not answer (paused, or gone): it pushes one
# every STATE_INTERVAL (0.25 s) while followed.
STALE = 1.0
# Peers are still followed this long after the last page here closed (a reload keeps them).
LINGER = 5.0
# The longest a page's first snapshot waits for the peers' first answers.
FIRST_STATE_WAIT = 0.5
# How often the supervisor is asked about its children while a page watches.
SUPERVISOR_POLL = 0.25
# How long a read of the gossip pools and the Raft configuration is reused.
MEMBERS_TTL = 0.05
# Log lines relayed from peers, remembered so a reconnection's backlog is not shown twice.
SEEN_LINES = 2000

# What a standalone agent cannot do, and why (the page shows the controls disabled with it).
_NOT_A_PROCESS = (
    "a consim agent started on its own cannot {0} another server's process; run the cluster "
    "with consim up --processes for this control"
)
_NOT_THE_NETWORK = (
    "a server cannot {0} the network between others; consim up --processes (consim's network "
    "layer) or scripts/netns-lab.sh (nftables) can"
)
STANDALONE_DISABLED = {
    "kill": _NOT_A_PROCESS.format("kill"),
    "restart": _NOT_A_PROCESS.format("restart"),
    "pause": _NOT_A_PROCESS.format("pause (SIGSTOP)"),
    "resume": _NOT_A_PROCESS.format("resume (SIGCONT)"),
    "isolate": _NOT_THE_NETWORK.format("isolate a server from"),
    "partition": _NOT_THE_NETWORK.format("partition"),
    "block": _NOT_THE_NETWORK.format("block links of"),
    "heal": _NOT_THE_NETWORK.format("heal"),
    "delay": _NOT_THE_NETWORK.format("delay"),
    "loss": _NOT_THE_NETWORK.format("drop packets of"),
}


class Peer:
    """Another server as this agent knows it, and what its own stream last said."""

    def __init__(self, name: str, datacenter: str, address: str, http: str) -> None:
        self.name = name
        self.datacenter = datacenter
        self.address = address  # its Raft/RPC address
        self.http = http
        self.gossip = "unknown"  # alive | failed | left (this agent's LAN/WAN view)
        self.server: dict[str, Any] | None = None  # its last self-snapshot
        self.at = -math.inf  # trio time of that snapshot
        self.connected = False
        self.attempts = 0  # streams opened (or tried) since it is followed
        self.scope: trio.CancelScope | None = None  # set while it is followed


class AgentUI(PageBackend):
    """The ``/ui`` of one ``consim agent``: its own server first-hand, its peers through theirs."""

    # A peer's change waits for its snapshot and then for this agent's: two hops, half as long
    # each as one process's (both well within the page's 200 ms).
    coalesce = STATE_COALESCE / 2

    def __init__(self, agent: Any, *, supervisor: str | None = None) -> None:
        self.agent = agent
        self.node = agent.node
        self.supervisor = supervisor
        self.peers: dict[str, Peer] = {}
        self.supervised: dict[str, dict[str, Any]] = {}  # the supervisor's /ctl/status by name
        self._seen: deque[str] = deque(maxlen=SEEN_LINES)
        self._seen_set: set[str] = set()
        self._watched_until = -math.inf
        self._wake = trio.Event()
        self._members_at = -math.inf
        self._members_list: list[tuple[str, str, str, str, str]] = []
        super().__init__(agent.events, error_node=agent.node.name)
        self.tap = MessageTap(
            self.name_of_address, self._on_message, trio.current_time, self.watched
        )
        self.tap.install([agent.node])

    # ---- who is who ---------------------------------------------------------------------------
    @property
    def own_http(self) -> str:
        cfg = self.agent.cfg
        client = cfg.client_addr
        if client in ("0.0.0.0", "::", ""):
            client = self.node.spec.host
        return f"{client}:{cfg.http_port}"

    def _members(self) -> list[tuple[str, str, str, str, str]]:
        """(name, datacenter, rpc address, host, gossip status) of every server in this agent's
        pools (LAN first: a WAN member is ``<node>.<dc>``), itself left out. Read at most every
        :data:`MEMBERS_TTL` (every sampled message asks for names)."""
        now = trio.current_time()
        if now - self._members_at > MEMBERS_TTL:
            self._members_at, self._members_list = now, self._read_members()
        return self._members_list

    def _read_members(self) -> list[tuple[str, str, str, str, str]]:
        node = self.node
        out: dict[str, tuple[str, str, str, str, str]] = {}
        for wan, pool in ((False, node.lan_pool), (True, node.wan_pool)):
            if pool is None:
                continue
            for m in pool.members():
                if m.tags.get("role") != "consul":
                    continue
                dc = m.tags.get("dc", "")
                name = m.name
                if wan and name.endswith(f".{dc}"):
                    name = name[: -len(dc) - 1]
                if name == node.name or name in out:
                    continue
                rpc = f"{m.addr}:{m.tags.get('port', '8300')}"
                out[name] = (name, dc, rpc, m.addr, STATUS_NAMES.get(m.status, str(m.status)))
        # Raft's configuration may name a server gossip does not know (yet, or any more).
        core = node.core
        if core is not None:
            known = {v[2] for v in out.values()} | {node.address}
            for server in core.latest_configuration.servers:
                if server.address not in known:
                    host = server.address.rsplit(":", 1)[0]
                    out[server.address] = (
                        server.address,
                        node.datacenter,
                        server.address,
                        host,
                        "unknown",
                    )
        return list(out.values())

    def name_of_host(self, host: str) -> str:
        if host == self.node.spec.host:
            return str(self.node.name)
        for name, _, _, member_host, _ in self._members():
            if member_host == host:
                return name
        return host

    def name_of_address(self, address: str) -> str:
        return self.name_of_host(address.rsplit(":", 1)[0])

    def _refresh_peers(self) -> None:
        port = self.agent.cfg.http_port
        for name, dc, rpc, host, status in self._members():
            http = self.supervised.get(name, {}).get("http") or f"{host}:{port}"
            peer = self.peers.get(name)
            if peer is None:
                peer = self.peers[name] = Peer(name, dc, rpc, http)
            peer.datacenter, peer.address, peer.gossip = dc, rpc, status
            if peer.http != http:
                peer.http = http
                if peer.scope is not None:
                    peer.scope.cancel()  # followed at the wrong address: start over

    # ---- what the page is told ----------------------------------------------------------------
    def _own(self, now: float) -> dict[str, Any]:
        node = self.node
        dc_hosts = [node.spec.host] + [
            h for _, dc, _, h, _ in self._members() if dc == node.datacenter
        ]
        out = node_snapshot(
            node,
            now,
            name_of=self.name_of_address,
            down_state="stopped",
            cut_off=cut_off(self.agent.net.faults, node.spec.host, dc_hosts),
        )
        out["http"] = self.own_http
        return out

    def _peer_view(self, peer: Peer, now: float) -> dict[str, Any]:
        sup = self.supervised.get(peer.name)
        paused = bool(sup and sup.get("paused") and sup.get("state") != "down")
        if peer.server is not None and peer.connected and now - peer.at <= STALE and not paused:
            return {**peer.server, "http": peer.http}
        if paused and peer.server is not None:
            # SIGSTOPped: what it last said, frozen (the page stops its timer).
            return {**peer.server, "http": peer.http, "state": "paused"}
        out = down_server(peer.name, peer.datacenter, peer.address, peer.http, "unreachable")
        if paused:
            out["state"] = "paused"
        elif sup is not None and sup.get("state") == "down":
            out["state"] = sup.get("down_reason") or "killed"
        elif sup is not None and sup.get("state") == "starting":
            out["state"] = "starting"
        elif peer.gossip == "failed":
            out["state"] = "failed"
        elif peer.gossip == "left":
            out["state"] = "stopped"
        return out

    def controls(self) -> dict[str, Any]:
        """Where the page sends its controls, and which it cannot use (with the reason)."""
        if self.supervisor:
            return {"url": f"http://{self.supervisor}/ui/api/ctl/", "disabled": {}}
        return {"url": None, "disabled": dict(STANDALONE_DISABLED)}

    def snapshot(self, scope: str = "all") -> dict[str, Any]:
        now = trio.current_time()
        servers = [self._own(now)]
        if scope == "all":
            self._refresh_peers()
            servers += [self._peer_view(p, now) for p in self.peers.values()]
        order = sorted({s["datacenter"] for s in servers})
        servers.sort(key=lambda s: (order.index(s["datacenter"]), s["name"]))
        leaders: dict[str, str | None] = {}
        for dc in order:
            running = [
                s
                for s in servers
                if s["datacenter"] == dc and s["role"] == "leader" and s["state"] != "paused"
            ]
            best = max(running, key=lambda s: s["term"] or 0, default=None)
            leaders[dc] = best["name"] if best is not None else None
        return {
            "time": self.page_time(),
            "datacenters": order,
            "servers": servers,
            "leaders": leaders,
            "faults": faults_view(self.agent.net.faults, self.name_of_host),
            "control": None,  # no address serves this whole API but the agents themselves
            "ctl": self.controls(),
            "supervisor": self.supervisor,
            "served_by": self.node.name,
            "messages": {"seen": self.tap.seen, "shown": self.tap.shown},
            "ui": {"dropped": self.dropped, "errors": self.errors},
        }

    def allowed_origins(self) -> set[str]:
        # A page of a peer (one this agent never followed, say) falls back to this agent when its
        # own goes away: every server known by gossip or Raft may ask.
        self._refresh_peers()
        origins = {f"http://{self.own_http}"} | {f"http://{p.http}" for p in self.peers.values()}
        if self.supervisor:
            origins.add(f"http://{self.supervisor}")
        return origins

    # ---- controls and the client --------------------------------------------------------------
    def resolve(self, server: Any) -> str:
        if not isinstance(server, str) or not server:
            raise ClusterError(f"expected a server name or a role, got {server!r}")
        snap = self.snapshot()
        role, _, dc = server.partition("@")
        dc = dc or self.node.datacenter
        if role == "leader":
            leader = snap["leaders"].get(dc)
            if leader is None:
                raise ClusterError(f"{dc} has no leader right now")
            return str(leader)
        if role == "follower":
            for s in snap["servers"]:
                if s["datacenter"] == dc and s["role"] == "follower":
                    return str(s["name"])
            raise ClusterError(f"{dc} has no follower right now")
        names = [s["name"] for s in snap["servers"]]
        if server not in names:
            raise ClusterError(f"no server named {server!r}; known: {', '.join(names)}")
        return server

    def http_of(self, name: str) -> str:
        if name == self.node.name:
            return self.own_http
        return self.peers[name].http

    async def server_http(
        self, name: str, method: str, path: str, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        from consim.http.client import request

        return await request(self.http_of(name), method, path, body=body, timeout=30)

    async def control(self, action: str, body: dict[str, Any]) -> None:
        from consim.http.client import request

        if self.supervisor:
            # The page sends its controls to the supervisor itself; a script may send them here.
            status, _, answer = await request(
                self.supervisor, "POST", f"/ctl/{action}", body=json.dumps(body).encode()
            )
            if status != 200:
                raise ClusterError(answer.decode("utf-8", "replace"))
            return
        if action in STANDALONE_DISABLED:
            raise ClusterError(STANDALONE_DISABLED[action])
        # stop: a graceful leave, asked of that server's own HTTP API.
        name = self.resolve(body.get("node"))
        try:
            status, _, answer = await request(
                self.http_of(name), "PUT", "/v1/agent/leave", timeout=30
            )
        except Exception as exc:  # noqa: BLE001 - said as the control's error
            raise ClusterError(f"{name}: PUT /v1/agent/leave failed: {exc}") from None
        if status != 200:
            raise ClusterError(f"{name}: {answer.decode('utf-8', 'replace')}")

    # ---- following the peers ------------------------------------------------------------------
    async def first_state_ready(self, scope: str) -> None:
        # A page opened while no peer was followed would first show every peer unreachable:
        # wait until each has answered or failed once (a few ms; at most FIRST_STATE_WAIT).
        if scope != "all":
            return
        self._refresh_peers()
        with trio.move_on_after(FIRST_STATE_WAIT):
            while not all(p.connected or p.attempts for p in self.peers.values()):
                await trio.sleep(0.01)

    def looked_at(self, scope: str) -> None:
        if scope == "all":
            self._watched_until = max(self._watched_until, trio.current_time() + LINGER)
            self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(super().run)
            nursery.start_soon(self._follow_peers, nursery)
            if self.supervisor:
                nursery.start_soon(self._poll_supervisor)
            task_status.started()

    def _following(self) -> bool:
        now = trio.current_time()
        if self.pages():
            self._watched_until = now + LINGER
        return now < self._watched_until

    async def _follow_peers(self, nursery: trio.Nursery) -> None:
        while True:
            try:
                self._start_or_stop_following(nursery)
            except Exception as exc:  # a view's bug must not end the agent
                self._emit_error("ui peers", "ui following peers", exc)
            with trio.move_on_after(0.2):
                await self._wake.wait()
            self._wake = trio.Event()

    def _start_or_stop_following(self, nursery: trio.Nursery) -> None:
        if self._following():
            self._refresh_peers()
            for peer in self.peers.values():
                if peer.scope is None:
                    peer.scope = trio.CancelScope()
                    nursery.start_soon(self._follow, peer, peer.scope)
        else:
            for peer in self.peers.values():
                if peer.scope is not None:
                    peer.scope.cancel()

    async def _follow(self, peer: Peer, scope: trio.CancelScope) -> None:
        with scope:
            try:
                while True:
                    # Gone, paused, not started yet: try again.
                    with contextlib.suppress(Exception):
                        await self._read_stream(peer)
                    peer.attempts += 1
                    if peer.connected:
                        peer.connected = False
                        self.mark_dirty()
                    await trio.sleep(0.3)
            finally:
                if peer.scope is scope:
                    peer.scope = None
                peer.connected = False
                peer.attempts = 0

    async def _read_stream(self, peer: Peer) -> None:
        import httpx

        url = f"http://{peer.http}/ui/api/stream?scope=self"
        timeout = httpx.Timeout(2 * STALE, connect=1.0)
        async with (
            httpx.AsyncClient(timeout=timeout) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                return
            kind, data = None, []
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif not line and kind is not None:
                    self._from_peer(peer, kind, "\n".join(data))
                    kind, data = None, []

    def _from_peer(self, peer: Peer, kind: str, data: str) -> None:
        try:
            if kind == "state":
                servers = json.loads(data).get("servers") or []
                if servers:
                    peer.server = servers[0]
                    peer.at = trio.current_time()
                    peer.connected = True
                    self.mark_dirty()
            elif kind == "log":
                if data in self._seen_set:
                    return  # its backlog again, after a reconnection
                if len(self._seen) == self._seen.maxlen:
                    self._seen_set.discard(self._seen[0])
                self._seen.append(data)
                self._seen_set.add(data)
                self.relay("log", data)
            elif kind == "msg":
                message = json.loads(data)
                message["time"] = self.page_time()  # on this page's clock
                self.relay("msg", json.dumps(message))
        except (ValueError, AttributeError, TypeError):
            self.errors += 1  # a peer's bad frame: counted, the stream goes on

    async def _poll_supervisor(self) -> None:
        from consim.http.client import request

        assert self.supervisor is not None
        while True:
            if self._following():
                try:
                    with trio.move_on_after(2):
                        status, _, body = await request(
                            self.supervisor, "GET", "/ctl/status", timeout=2
                        )
                        if status == 200:
                            seen = {s["name"]: s for s in json.loads(body)}
                            if seen != self.supervised:
                                self.supervised = seen
                                self.mark_dirty()
                except Exception:  # noqa: BLE001 - the supervisor is going away: ask again
                    pass
            await trio.sleep(SUPERVISOR_POLL)
