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

from collections.abc import Iterable

from consim.live import free_host_block

# Blocks other suites already use: tests/runtime 41-45, benchmarks 60-100, tests/server/membership 140+.
# Block 0 (127.0.0.x, the dev agent's 127.0.0.1:8500) is the py-consul judges' alone: they restart
# their server there per test, so no other test may take it between two of theirs.
DEFAULT_BASES = tuple(range(100, 140, 3))


def free_host_base(
    datacenters: Iterable[int], http_port: int, bases: Iterable[int] = DEFAULT_BASES
) -> int:
    """The first ``host_block`` in ``bases`` whose addresses are free (``consim.live``)."""
    return free_host_block(datacenters, http_port, bases)
