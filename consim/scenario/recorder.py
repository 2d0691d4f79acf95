"""What a virtual run's report shows beyond the event log: the messages between servers and each
server's commit index over time.

Neither is an event (Consul logs no line per AppendEntries, and the trace hash pins the event log),
so :class:`RunRecorder` watches from outside: it is the simulator's
:class:`~consim.net.sim.MessageTap`, keeps the frames it sees, and at every message a server sends
and after every delivery
and timer it reads that server's commit index. It only reads, so a recorded run has the same trace hash as
one that is not (a test checks it). Frames are decoded only when the report asks
(:meth:`RunRecorder.messages`), and routine traffic (empty heartbeats, gossip) is sampled there when a run is busy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack

from consim.net.faults import host_of
from consim.raft import hashicorp_wire

if TYPE_CHECKING:
    from consim.cluster import Cluster

# Families the diagram colours and filters by.
VOTE, APPEND, HEARTBEAT, SNAPSHOT, RPC, GOSSIP = (
    "vote",
    "append",
    "heartbeat",
    "snapshot",
    "rpc",
    "gossip",
)
# Over this many messages, routine traffic keeps one message per link and family in each
# SAMPLE_WINDOW seconds (a report page stays a few MB).
MAX_MESSAGES = 20_000
SAMPLE_WINDOW = 0.25


class RunRecorder:
    """Attach with :meth:`attach` before the cluster runs (virtual time only)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._host_name = {s.host: s.name for s in cluster.specs}
        # (seq, sent, due, src, dst, channel, data); seq -1 = dropped at once
        self.frames: list[tuple[int, float, float | None, str, str, str, bytes]] = []
        self._dropped: dict[int, float] = {}
        # Per server: [(time, commit index)] whenever it changed.
        self.commits: dict[str, list[tuple[float, int]]] = {s.name: [] for s in cluster.specs}

    def attach(self) -> None:
        self.cluster.net.tap = self  # type: ignore[attr-defined]

    # ---- MessageTap --------------------------------------------------------------------------
    def sent(
        self, seq: int, now: float, due: float | None, src: str, dst: str, channel: str, data: bytes
    ) -> None:
        self.frames.append((seq, now, due, src, dst, channel, data))
        self.ran(src, now)

    def dropped(self, seq: int, now: float) -> None:
        self._dropped[seq] = now

    def ran(self, address: str, now: float) -> None:
        """Sample the commit index of the server at ``address`` (it sent, received or ran a
        timer: the moments its commit index can change)."""
        name = self._host_name.get(host_of(address))
        if name is None:
            return
        core = self.cluster.servers[name].core
        if core is None:
            return
        series = self.commits[name]
        commit = core.commit_index
        if not series or series[-1][1] != commit:
            series.append((now, commit))

    # ---- for the report ----------------------------------------------------------------------
    def messages(self, t0: float = 0.0) -> list[dict[str, Any]]:
        """Every decoded message, routine ones sampled: ``{t, due, from, to, family, label,
        lost}`` (``due`` the arrival, or when it was dropped; ``lost`` true when it never
        arrived). Times relative to ``t0``."""
        sample = len(self.frames) > MAX_MESSAGES
        out: list[dict[str, Any]] = []
        last_kept: dict[tuple[str, str, str], float] = {}
        for seq, sent, due, src, dst, channel, data in self.frames:
            a = self._host_name.get(host_of(src))
            b = self._host_name.get(host_of(dst))
            if a is None or b is None:
                continue
            family, label = _describe(channel, data)
            if family is None:
                continue
            lost = seq < 0 or seq in self._dropped
            if sample and family in (HEARTBEAT, GOSSIP) and not lost:
                key = (a, b, family)
                prev = last_kept.get(key)
                if prev is not None and sent - prev < SAMPLE_WINDOW:
                    continue
                last_kept[key] = sent
            end = self._dropped.get(seq, due if due is not None else sent)
            out.append(
                {
                    "t": round(sent - t0, 6),
                    "due": round(end - t0, 6),
                    "from": a,
                    "to": b,
                    "family": family,
                    "label": label,
                    "lost": lost,
                }
            )
        return out

    def commit_series(self, t0: float = 0.0) -> dict[str, list[list[float]]]:
        return {
            name: [[round(t - t0, 6), c] for t, c in series]
            for name, series in self.commits.items()
        }


def _describe(channel: str, data: bytes) -> tuple[str | None, str]:
    try:
        if channel == "datagram":
            return GOSSIP, f"gossip packet ({len(data)} bytes)"
        if channel == "stream":
            return GOSSIP, "push-pull"
        if channel == "stream-reply":
            return GOSSIP, "push-pull reply"
        if channel == "conn":  # bytes on a port connection (Consul's RPC port): (id, end, bytes)
            _, to_dialer, chunk = data  # type: ignore[misc]
            if chunk is None:
                return RPC, "RPC port connection closed"
            described = _describe_hashicorp(chunk, to_dialer)
            if described is not None:
                return described
            return RPC, f"RPC port bytes ({len(chunk)} bytes)"
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        pass
    return None, ""


def _describe_hashicorp(chunk: bytes, response: bool) -> tuple[str | None, str] | None:
    """A Raft request or response on byte 1 (hashicorp/raft's transport); the simulator hands
    the transport's writes over whole, so each chunk is one message (or snapshot data)."""
    if len(chunk) == 1:
        return None, ""  # a new connection's first byte
    try:
        if response:
            unpacker = msgpack.Unpacker(raw=True)
            unpacker.feed(chunk)
            error, body = unpacker.unpack(), unpacker.unpack()
            if error or not isinstance(body, dict):
                return RPC, "Raft error response"
            term = body.get(b"Term", 0)
            if b"Granted" in body:
                ok = "granted" if body[b"Granted"] else "refused"
                what = "vote" if b"Peers" in body else "pre-vote"
                return VOTE, f"{what} {ok} (term {term})"
            if b"LastLog" in body:
                ok = "ok" if body[b"Success"] else "refused"
                return HEARTBEAT, f"append {ok} term {term} last {body[b'LastLog']}"
            if b"Success" in body:
                return SNAPSHOT, f"snapshot {'ok' if body[b'Success'] else 'refused'} term {term}"
            return VOTE, "TimeoutNow answered"
        rpc_type, body = chunk[0], msgpack.unpackb(chunk[1:], raw=True)
    except (ValueError, msgpack.UnpackException):
        return SNAPSHOT, f"snapshot data ({len(chunk)} bytes)" if not response else None
    if not isinstance(body, dict):
        return None
    term = body.get(b"Term", 0)
    last = f"(last log {body.get(b'LastLogIndex', 0)}/{body.get(b'LastLogTerm', 0)})"
    if rpc_type == hashicorp_wire.RPC_APPEND_ENTRIES:
        entries = body.get(b"Entries") or []
        commit = body.get(b"LeaderCommitIndex", 0)
        if not entries:
            return HEARTBEAT, f"heartbeat term {term} commit {commit}"
        first, end = entries[0].get(b"Index"), entries[-1].get(b"Index")
        span = f"{first}" if first == end else f"{first}-{end}"
        return APPEND, f"AppendEntries term {term} entries {span} commit {commit}"
    if rpc_type == hashicorp_wire.RPC_REQUEST_VOTE:
        return VOTE, f"vote request term {term} {last}"
    if rpc_type == hashicorp_wire.RPC_REQUEST_PRE_VOTE:
        return VOTE, f"pre-vote request term {term} {last}"
    if rpc_type == hashicorp_wire.RPC_INSTALL_SNAPSHOT:
        return (
            SNAPSHOT,
            f"InstallSnapshot index {body.get(b'LastLogIndex')} size {body.get(b'Size')}",
        )
    if rpc_type == hashicorp_wire.RPC_TIMEOUT_NOW:
        return VOTE, "TimeoutNow"
    return None
