"""Session TTLs on the leader (Consul's ``session_ttl.go``).

Only the leader runs the timers: a session with a TTL is invalidated (a Raft ``Session``
destroy) when it has not been renewed for TTL x 2 (``SessionTTLMultiplier``). A new leader
starts every timer afresh at TTL x 2, so a leader change extends every session's life.
"""

from __future__ import annotations

from typing import Any

import trio

from consim.golike import parse_duration
from consim.net.network import RpcError
from consim.server.state.base import encode_command

SESSION_TTL_MULTIPLIER = 2


class SessionTimers:
    def __init__(self, server: Any) -> None:
        self.server = server  # consim.server.interface.Server (it imports this module)
        self.reset()

    def reset(self) -> None:
        self.deadlines: dict[str, float] = {}
        self._kick = trio.Event()

    # ---- told by the endpoints and the leader's duties ---------------------------------------------
    def reset_timer(self, session_id: str, ttl: str) -> None:
        """Consul's resetSessionTimer: expire TTL x 2 from now."""
        seconds = parse_duration(ttl) if ttl else 0.0
        if seconds <= 0:
            return
        self.deadlines[session_id] = trio.current_time() + seconds * SESSION_TTL_MULTIPLIER
        self._kick.set()

    def clear(self, session_id: str) -> None:
        self.deadlines.pop(session_id, None)

    def initialize(self) -> None:
        """Consul's initializeSessionTimers: a new leader times every session with a TTL."""
        self.deadlines = {}
        for session in self.server.fsm.sessions.sessions.values():
            self.reset_timer(str(session["ID"]), str(session.get("TTL") or ""))

    def clear_all(self) -> None:
        self.deadlines = {}

    # ---- the loop (one per incarnation, idle unless leading) -----------------------------------------
    async def run(self) -> None:
        server = self.server
        while True:
            wake = min(self.deadlines.values(), default=float("inf"))
            with trio.move_on_at(wake):
                await self._kick.wait()
            self._kick = trio.Event()
            now = trio.current_time()
            due = sorted(sid for sid, at in self.deadlines.items() if at <= now)
            for sid in due:
                self.deadlines.pop(sid, None)
                if not server.is_leader() or server.paused:
                    continue
                try:
                    await self._invalidate(sid)
                except RpcError as exc:  # lost leadership meanwhile: the next leader times it
                    server.contained_error("session ttl", exc, "agent.server.session")

    async def _invalidate(self, session_id: str) -> None:
        server = self.server
        if session_id not in server.fsm.sessions.sessions:
            return
        server.events.emit(
            server.name,
            "session_ttl_expired",
            {"session": session_id},
            subsystem="agent.server.session",
            message="Session TTL expired",
        )
        await server.apply_command(
            encode_command("Session", {"Op": "destroy", "Session": {"ID": session_id}})
        )
