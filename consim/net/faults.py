"""Network faults: pure, deterministic rules the networks consult per message.

Everything works on *hosts* ("127.0.0.2"): a server's RPC, serf LAN and serf WAN ports share its
host, so cutting a host cuts the whole server. Any argument may also be given as "host:port"; the
port is ignored.

Rules, checked by :meth:`FaultModel.allowed` (a host always reaches itself):

- ``partition(groups)``: hosts in different groups cannot talk. Hosts named in no group form one
  implicit extra group: they talk to each other but to no named host. A new ``partition`` replaces
  the previous one.
- ``isolate(host)``: the host reaches nobody and nobody reaches it (``unisolate`` undoes it).
- ``block(src, dst)``: one way only; ``dst`` still reaches ``src`` (``unblock`` undoes it).
- ``heal()``: clears partition, isolation and blocks. Loss and delay stay (they model a bad link,
  not a cut); ``heal(all=True)`` clears them too.
- ``set_loss(src, dst, p)`` / ``set_delay(src, dst, seconds)``: ``"*"`` matches any host. The most
  specific rule wins: (src, dst), then (src, *), then (*, dst), then (*, *). Setting 0 on an exact
  pair therefore exempts it from a wildcard rule.

Loss decisions draw from the ``rng`` given at construction (seeded by the caller), and only when
the probability is non-zero, so adding loss on one link does not perturb other draws.
``base_loss`` (the network model's loss, ``consim.net.model``) applies where no loss rule does
and stays through ``heal(all=True)``. Datagrams ask :meth:`FaultModel.drops` (a loss is the end of
them); stream messages (RPC, Raft, push-pull: TCP) ask :meth:`FaultModel.stream_delay`, where a
loss costs a retransmission timeout instead.
Every change is reported through ``on_change(kind, fields)`` so the cluster can log it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from consim.address import AddressError, parse_address
from consim.net.model import MAX_RETRANSMISSIONS, retransmission_delay

WILDCARD = "*"

OnChange = Callable[[str, dict[str, Any]], None]


_HOSTS: dict[str, str] = {}  # host_of cache: the simulator asks for the same few addresses


def host_of(address: str) -> str:
    """ "127.0.0.2:8300" -> "127.0.0.2"; a bare host or "*" is returned as is."""
    host = _HOSTS.get(address)
    if host is not None:
        return host
    try:
        host = parse_address(address)[0]
    except AddressError:
        host = address  # a bare host, "*", or nothing a fault rule could name
    if len(_HOSTS) < 65536:
        _HOSTS[address] = host
    return host


class FaultModel:
    def __init__(
        self,
        rng: random.Random | None = None,
        on_change: OnChange | None = None,
        base_loss: float = 0.0,
    ) -> None:
        if not 0.0 <= base_loss < 1.0:
            raise ValueError(f"base loss must be in [0, 1), got {base_loss}")
        self.rng = rng if rng is not None else random.Random(0)
        self.base_loss = float(base_loss)
        self.on_change = on_change
        self._group_of: dict[str, int] = {}
        self._isolated: set[str] = set()
        self._blocked: set[tuple[str, str]] = set()
        self._loss: dict[tuple[str, str], float] = {}
        self._delay: dict[tuple[str, str], float] = {}

    # -- changes ---------------------------------------------------------------------------------

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        group_of: dict[str, int] = {}
        listed: list[list[str]] = []
        for i, group in enumerate(groups):
            hosts = [host_of(h) for h in group]
            listed.append(hosts)
            for h in hosts:
                if h in group_of and group_of[h] != i:
                    raise ValueError(f"host {h} is in more than one partition group")
                group_of[h] = i
        self._group_of = group_of
        self._emit("partition", {"groups": listed})

    def isolate(self, host: str) -> None:
        self._isolated.add(host_of(host))
        self._emit("isolate", {"host": host_of(host)})

    def unisolate(self, host: str) -> None:
        self._isolated.discard(host_of(host))
        self._emit("unisolate", {"host": host_of(host)})

    def block(self, src: str, dst: str) -> None:
        self._blocked.add((host_of(src), host_of(dst)))
        self._emit("block", {"src": host_of(src), "dst": host_of(dst)})

    def unblock(self, src: str, dst: str) -> None:
        self._blocked.discard((host_of(src), host_of(dst)))
        self._emit("unblock", {"src": host_of(src), "dst": host_of(dst)})

    def heal(self, all: bool = False) -> None:  # noqa: A002 - the name reads well at call sites
        self._group_of = {}
        self._isolated.clear()
        self._blocked.clear()
        if all:
            self._loss.clear()
            self._delay.clear()
        self._emit("heal", {"all": all})

    def set_loss(self, src: str, dst: str, p: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"loss probability must be in [0, 1], got {p}")
        self._loss[(host_of(src), host_of(dst))] = float(p)
        self._emit("loss", {"src": host_of(src), "dst": host_of(dst), "p": float(p)})

    def set_delay(self, src: str, dst: str, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"delay must be >= 0, got {seconds}")
        self._delay[(host_of(src), host_of(dst))] = float(seconds)
        self._emit("delay", {"src": host_of(src), "dst": host_of(dst), "seconds": float(seconds)})

    # -- queries ---------------------------------------------------------------------------------

    def clear(self) -> bool:
        """No rule at all (no cut, loss or delay): every message passes untouched."""
        return not (
            self._group_of
            or self._isolated
            or self._blocked
            or self._loss
            or self._delay
            or self.base_loss
        )

    def allowed(self, src: str, dst: str) -> bool:
        s, d = host_of(src), host_of(dst)
        if s == d:
            return True
        if s in self._isolated or d in self._isolated:
            return False
        if (s, d) in self._blocked:
            return False
        if self._group_of:
            # Unlisted hosts share the implicit group -1.
            return self._group_of.get(s, -1) == self._group_of.get(d, -1)
        return True

    def loss_probability(self, src: str, dst: str) -> float:
        return _lookup(self._loss, host_of(src), host_of(dst), self.base_loss)

    def extra_delay(self, src: str, dst: str) -> float:
        return _lookup(self._delay, host_of(src), host_of(dst))

    def drops(self, src: str, dst: str) -> bool:
        """Decide one message's fate: True if a cut or random loss drops it."""
        if not self.allowed(src, dst):
            return True
        p = self.loss_probability(src, dst)
        if p <= 0.0:
            return False
        return p >= 1.0 or self.rng.random() < p

    def stream_delay(self, src: str, dst: str) -> float | None:
        """One stream message's fate, as TCP would have it: None if a cut drops it (or every
        retransmission is lost), else the seconds its retransmissions cost (0.0: not lost)."""
        if not self.allowed(src, dst):
            return None
        p = self.loss_probability(src, dst)
        if p <= 0.0:
            return 0.0
        if p >= 1.0:
            return None
        rng = self.rng
        return retransmission_delay(rng.random() < p for _ in range(MAX_RETRANSMISSIONS + 1))

    def describe(self) -> dict[str, Any]:
        """Current rules in a stable order (for reports and logs)."""
        groups: dict[int, list[str]] = {}
        for h, g in sorted(self._group_of.items(), key=lambda kv: (kv[1], kv[0])):
            groups.setdefault(g, []).append(h)
        return {
            "partition": [groups[g] for g in sorted(groups)],
            "isolated": sorted(self._isolated),
            "blocked": sorted(self._blocked),
            "loss": sorted(self._loss.items()),
            "delay": sorted(self._delay.items()),
            **({"base_loss": self.base_loss} if self.base_loss else {}),
        }

    def _emit(self, kind: str, fields: dict[str, Any]) -> None:
        if self.on_change is not None:
            self.on_change(kind, fields)


def _lookup(table: dict[tuple[str, str], float], s: str, d: str, default: float = 0.0) -> float:
    for key in ((s, d), (s, WILDCARD), (WILDCARD, d), (WILDCARD, WILDCARD)):
        if key in table:
            return table[key]
    return default
