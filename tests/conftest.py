"""Suite-wide: under pytest-xdist each worker gets its own share of the live-cluster address blocks.

``consim.live.free_host_block`` picks the first ``127.0.N.x`` block it can bind; two workers asking
at the same moment could both pick the same free block and then collide when they bind. Each worker
therefore only looks at every W-th candidate (W workers), so their blocks never overlap.
"""

from __future__ import annotations

import os

import consim.live

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)

if _WORKER.startswith("gw") and _WORKERS > 1:
    _index = int(_WORKER[2:])
    _free_host_block = consim.live.free_host_block

    def _worker_free_host_block(servers_per_datacenter, http_port, candidates):
        mine = [b for i, b in enumerate(candidates) if i % _WORKERS == _index]
        return _free_host_block(servers_per_datacenter, http_port, mine)

    consim.live.free_host_block = _worker_free_host_block
