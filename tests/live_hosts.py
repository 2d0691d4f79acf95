"""Where a live test cluster may listen: a free ``127.0.N.x`` block (shared by the live tests).

Live clusters bind Consul's fixed ports on ``127.0.<d>.<k>`` (RPC 8300/tcp, serf LAN 8301/udp,
serf WAN 8302/udp, HTTP on the spec's port). On a shared machine another cluster (a developer's
``consim up``, a benchmark, another test run) may hold ``127.0.0.x``; a test then moves its whole
cluster to the first free block ``127.0.<base + d>.<k>`` with ``ClusterSpec(host_block=base)``
(``consim up --host-block``, ``consim run --live --host-block``).

Import it from a test module as ``from live_hosts import ...`` (pytest puts ``tests/`` on
``sys.path``: it has no ``__init__.py``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

# Blocks other suites already use: tests/runtime 41-45, benchmarks 60-100, gossip_cluster 140+.
DEFAULT_BASES = tuple(range(100, 140, 3))


def ports_free(host: str, http_port: int) -> bool:
    """Can a server bind RPC (tcp 8300), serf LAN/WAN (udp 8301/8302) and HTTP on ``host``?"""
    for kind, port in (
        (socket.SOCK_STREAM, 8300),
        (socket.SOCK_STREAM, http_port),
        (socket.SOCK_DGRAM, 8301),
        (socket.SOCK_DGRAM, 8302),
    ):
        s = socket.socket(socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_host_base(
    datacenters: Iterable[int], http_port: int, bases: Iterable[int] = DEFAULT_BASES
) -> int:
    """The first ``base`` whose ``127.0.<base + d>.1..n`` (n servers of datacenter d) are free."""
    counts = list(datacenters)
    for base in bases:
        if all(
            ports_free(f"127.0.{base + d}.{k}", http_port)
            for d, n in enumerate(counts)
            for k in range(1, n + 1)
        ):
            return base
    raise RuntimeError(f"no free 127.0.N.x block for a live cluster of {counts} servers")
