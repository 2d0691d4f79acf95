"""Shared test helpers: keys, pools, and assertions that name the seed."""

from __future__ import annotations

import base64

from consim.gossip.config import GossipConfig
from consim.gossip.harness import Harness, trace_lines

K1 = bytes(range(16))
K2 = bytes(range(100, 132))  # AES-256
K3 = bytes(range(50, 74))  # AES-192
K1_B64 = base64.b64encode(K1).decode()
K2_B64 = base64.b64encode(K2).decode()
K3_B64 = base64.b64encode(K3).decode()

LAN = GossipConfig.lan()


def converged(h: Harness, names: list[str], expect: dict[str, int] | None = None) -> bool:
    """Every named member sees exactly ``expect`` (default: all ``names`` alive)."""
    want = expect if expect is not None else dict.fromkeys(names, 1)
    return all(h.members(n) == want for n in names)


def pool(seed: int, n: int = 5, *, keys: list[bytes] | None = None, config: GossipConfig = LAN):
    h = Harness(seed)
    cores = h.add_pool(n, keys=keys, config=config)
    names = [c.name for c in cores]
    assert h.run_until_true(lambda: converged(h, names), 30), fail(h, "pool never converged")
    return h, names


def fail(h: Harness, what: str) -> str:
    tail = "\n".join(trace_lines(h.trace[-25:]))
    return f"{what} (seed={h.seed}, t={h.now:.3f})\n{tail}"


def wire_msg(msg: dict) -> bytes:
    """One message in memberlist's wire format from a short description (tests only)."""
    from consim.gossip import wire

    t = msg["t"]
    if t == "ping":
        return wire.enc_ping(msg["seq"], msg["node"], msg.get("src", "127.0.0.9:8301"), "x")
    if t in ("suspect", "dead"):
        enc = wire.enc_suspect if t == "suspect" else wire.enc_dead
        return enc(msg["node"], msg["inc"], msg["from"])
    if t == "alive":
        return wire.enc_alive(
            msg["node"], msg["inc"], msg["addr"], wire.encode_tags(msg.get("tags", {}))
        )
    raise ValueError(t)


def wire_packet(*msgs: dict) -> bytes:
    from consim.gossip import wire

    parts = [wire_msg(m) for m in msgs]
    return parts[0] if len(parts) == 1 else wire.enc_compound(parts)
