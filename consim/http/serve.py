"""Serving a server's app on a real port (live mode) with hypercorn."""

from __future__ import annotations

import logging
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve


def hypercorn_config(address: str) -> Config:
    config = Config()
    config.bind = [address]
    # Quiet: the event log is the only output; Consul sends no Server header either.
    config.accesslog = None
    config.errorlog = logging.getLogger("consim.http.hypercorn")
    config.include_server_header = False
    config.graceful_timeout = 0.5
    return config


async def serve_http(
    app: Any,
    address: str,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``address`` ("host:port") until cancelled.

    ``task_status.started(binds)`` is called once the socket is listening; ``binds`` are the
    bound URLs (``["http://127.0.0.1:54321"]``), which tells a caller the port chosen for ``:0``. Cancellation closes the
    listener and open connections.
    """
    config = hypercorn_config(address)

    async def never() -> None:
        # hypercorn stops when this returns; cancellation of the caller is how we stop.
        await trio.sleep_forever()

    await serve(app, config, shutdown_trigger=never, task_status=task_status)
