"""The client side of ``consim check``: concurrent clients doing reads, writes and compare-and-set
on a few keys through servers picked at random, each operation recorded as an invoke and a
completion in a :class:`~consim.check.history.History`.

Completions are classified the way a careful Consul client has to:

- ``ok``: the server said it happened (a 200 with ``true``, or a read's value);
- ``fail``: it certainly did not happen: a 4xx (403, 400, 413), ``?cas`` answered ``false``, a
  connection refused before anything was sent, or a cas whose first read already saw another
  value (nothing was written). A read that got no answer is also ``fail``: a read changes
  nothing, so dropping it is exact;
- ``info``: it may have happened: a client timeout, a 500 on a write (``leadership lost while
  committing log``, ``timeout waiting for the leader``, ``No cluster leader`` after forwarding),
  a connection lost after the request was sent.

A client whose operation ended in ``info`` continues as a new process number, as Jepsen does: its
old operation may still take effect later, and a process has one operation open at a time.

Compare-and-set is done as Consul clients do it: ``GET`` the key (with the chosen consistency) to
learn its value and ``ModifyIndex``; if the value is not the expected one the operation fails
without writing; otherwise ``PUT ?cas=<ModifyIndex>``. This is a sound compare-and-set of
``[expected, new]``: ``?cas=i`` succeeds only if the key's ModifyIndex is still ``i`` when the
write is applied, and every write gets a fresh ModifyIndex (its Raft index) and a unique value, so
index ``i`` pins the value to ``expected`` at the PUT's linearization point, however stale the GET
was. ``?cas=0`` (expected absent) succeeds only if the key does not exist when applied.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from consim.check.history import History
from consim.cluster import Cluster, ClusterError

CONSISTENCY_QUERY = {"default": "", "consistent": "?consistent", "stale": "?stale"}


@dataclass(frozen=True)
class WorkloadConfig:
    clients: int = 5
    keys: int = 3
    rate: float = 10.0  # operations per second, all clients together
    consistency: str = "default"
    # A client gives up after this long (virtual or wall seconds): the outcome is then unknown.
    timeout: float = 10.0
    key_prefix: str = ""  # keys are <prefix>k1, <prefix>k2, ...
    # Mix of operations (weights).
    reads: float = 0.4
    writes: float = 0.3
    cas: float = 0.3

    def __post_init__(self) -> None:
        if self.consistency not in CONSISTENCY_QUERY:
            raise ValueError(
                f"consistency must be one of {', '.join(CONSISTENCY_QUERY)}, got {self.consistency!r}"
            )
        if self.clients < 1 or self.keys < 1:
            raise ValueError("clients and keys must be at least 1")
        if self.rate <= 0:
            raise ValueError(f"rate must be > 0, got {self.rate}")


@dataclass
class Answer:
    """One HTTP exchange's outcome: ``status`` None when no answer came (see ``sent``)."""

    status: int | None
    body: bytes = b""
    error: str = ""
    sent: bool = True  # False: certainly never reached the server (connection refused)


class Workload:
    def __init__(
        self,
        cluster: Cluster,
        history: History,
        *,
        rng: random.Random,
        config: WorkloadConfig,
        clock: Callable[[], float],
        datacenter: str = "dc1",
    ) -> None:
        self.cluster = cluster
        self.history = history
        self.rng = rng
        self.config = config
        self._clock = clock
        self.servers = [n.name for n in cluster.datacenter_servers(datacenter)]
        self.keys = [f"{config.key_prefix}k{i}" for i in range(1, config.keys + 1)]
        self._next_value = 0
        self._next_process = config.clients
        # Values known to have been written or seen per key: where a cas's "expected" comes from.
        self._known: dict[str, list[Any]] = {k: [None] for k in self.keys}
        self.counts = {"ok": 0, "fail": 0, "info": 0}

    # ---- time and ids ------------------------------------------------------------------------
    def now(self) -> float:
        return round(self._clock(), 6)

    def fresh_process(self) -> int:
        process = self._next_process
        self._next_process += 1
        return process

    def _value(self) -> int:
        self._next_value += 1
        return self._next_value

    # ---- the clients -------------------------------------------------------------------------
    async def run(self, until: float) -> None:
        """Run every client until ``until`` (clock seconds); operations in flight then finish."""
        async with trio.open_nursery() as nursery:
            for process in range(self.config.clients):
                nursery.start_soon(self._client, process, until)

    async def _client(self, process: int, until: float) -> None:
        mean_gap = self.config.clients / self.config.rate
        weights = (self.config.reads, self.config.writes, self.config.cas)
        while True:
            await trio.sleep(self.rng.uniform(0, 2 * mean_gap))
            if self._clock() >= until:
                return
            f = self.rng.choices(("read", "write", "cas"), weights)[0]
            key = self.rng.choice(self.keys)
            server = self.rng.choice(self.servers)
            if f == "read":
                outcome = await self.read(process, key, server)
            elif f == "write":
                outcome = await self.write(process, key, server)
            else:
                outcome = await self.cas(process, key, server)
            if outcome == "info":
                process = self.fresh_process()

    def _complete(self, process: int, type_: str, value: Any, **extra: Any) -> str:
        self.history.complete(process, type_, value, self.now(), **extra)
        self.counts[type_] += 1
        return type_

    # ---- operations ----------------------------------------------------------------------
    async def read(
        self, process: int, key: str, server: str, consistency: str | None = None
    ) -> str:
        consistency = consistency or self.config.consistency
        self.history.invoke(
            process, "read", key, None, self.now(), server=server, consistency=consistency
        )
        answer = await self._request(server, "GET", f"/v1/kv/{key}{CONSISTENCY_QUERY[consistency]}")
        found = _read_answer(answer)
        if found is None:
            return self._complete(process, "fail", None, error=_describe(answer))
        value, index = found
        self._remember(key, value)
        return self._complete(process, "ok", value, index=index)

    async def write(self, process: int, key: str, server: str) -> str:
        value = self._value()
        self.history.invoke(process, "write", key, value, self.now(), server=server)
        answer = await self._request(server, "PUT", f"/v1/kv/{key}", str(value).encode())
        type_ = _write_outcome(answer)
        if type_ == "ok":
            self._remember(key, value)
        return self._complete(
            process, type_, value, **({} if type_ == "ok" else {"error": _describe(answer)})
        )

    async def cas(self, process: int, key: str, server: str) -> str:
        expected = self.rng.choice(self._known[key][-3:])
        new = self._value()
        consistency = self.config.consistency
        self.history.invoke(
            process, "cas", key, [expected, new], self.now(), server=server, consistency=consistency
        )
        answer = await self._request(server, "GET", f"/v1/kv/{key}{CONSISTENCY_QUERY[consistency]}")
        found = _read_answer(answer)
        if found is None:
            return self._complete(
                process, "fail", [expected, new], error="cas read: " + _describe(answer)
            )
        seen, index = found
        self._remember(key, seen)
        if seen != expected:
            return self._complete(
                process, "fail", [expected, new], error=f"cas read saw {json.dumps(seen)}"
            )
        answer = await self._request(server, "PUT", f"/v1/kv/{key}?cas={index}", str(new).encode())
        type_ = _write_outcome(answer)
        if type_ == "ok":
            self._remember(key, new)
        extra: dict[str, Any] = {"index": index}
        if type_ != "ok":
            extra["error"] = _describe(answer)
        return self._complete(process, type_, [expected, new], **extra)

    def _remember(self, key: str, value: Any) -> None:
        known = self._known[key]
        if value not in known[-3:]:
            known.append(value)
            del known[:-8]

    # ---- the final reads -------------------------------------------------------------------
    async def final_reads(self) -> None:
        """After the heal and quiet period: every key on every running server, recorded as
        operations (with the chosen consistency)."""
        for server in self.servers:
            node = self.cluster.node(server)
            if not node.running:
                continue
            process = self.fresh_process()
            for key in self.keys:
                if await self.read(process, key, server) == "info":
                    process = self.fresh_process()

    async def local_reads(self) -> dict[str, dict[str, Any]]:
        """One stale read of every key on every running server, for the convergence checks; not
        recorded in the history (a stale read may lag by design)."""
        local: dict[str, dict[str, Any]] = {}
        for server in self.servers:
            if not self.cluster.node(server).running:
                continue
            values: dict[str, Any] = {}
            for key in self.keys:
                found = _read_answer(await self._request(server, "GET", f"/v1/kv/{key}?stale"))
                values[key] = "<no answer>" if found is None else found[0]
            local[server] = values
        return local

    # ---- HTTP ------------------------------------------------------------------------------
    async def _request(self, server: str, method: str, path: str, body: bytes = b"") -> Answer:
        answer: Answer | None = None
        with trio.move_on_after(self.config.timeout):
            try:
                status, _, out = await self.cluster.http(server, method, path, body=body)
                answer = Answer(status, out)
            except ClusterError as exc:  # virtual time: the server is down, nothing was sent
                answer = Answer(None, error=str(exc), sent=False)
            except Exception as exc:  # live: httpx errors
                answer = _transport_error(exc)
        if answer is None:
            answer = Answer(None, error=f"timeout after {self.config.timeout:g}s")
        return answer


def _transport_error(exc: Exception) -> Answer:
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx ships with the test extra
        return Answer(None, error=f"{type(exc).__name__}: {exc}")
    if isinstance(exc, httpx.ConnectError):
        return Answer(None, error=f"connection refused: {exc}", sent=False)
    return Answer(None, error=f"{type(exc).__name__}: {exc}")


def _read_answer(answer: Answer) -> tuple[Any, int] | None:
    """(value, ModifyIndex) of a GET /v1/kv/KEY, (None, 0) when absent; None if no usable answer."""
    if answer.status == 404:
        return None, 0
    if answer.status != 200:
        return None
    try:
        entries = json.loads(answer.body)
        entry = entries[0]
        raw = base64.b64decode(entry["Value"]) if entry.get("Value") else b""
        return decode_value(raw), int(entry["ModifyIndex"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def decode_value(raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace")
    return int(text) if text.isdigit() else text


def _write_outcome(answer: Answer) -> str:
    if answer.status is None:
        return "info" if answer.sent else "fail"
    if answer.status == 200:
        return "ok" if answer.body.strip() == b"true" else "fail"
    if 400 <= answer.status < 500:
        return "fail"
    return "info"  # a 500: the write may have reached the leader and been committed


def _describe(answer: Answer) -> str:
    if answer.status is None:
        return answer.error
    text = answer.body.decode("utf-8", "replace").strip()
    return f"{answer.status} {text}"[:200]
