"""Consul values the HTTP layer and the server share, defined once: the blocking-query limits
(``?wait`` over HTTP, ``MaxQueryTime`` over RPC; agent/structs and agent/consul/rpc.go) and the
autopilot configuration's defaults."""

from __future__ import annotations

from typing import Any

DEFAULT_QUERY_TIME = 300.0  # defaultQueryTime (5m): a blocking query without a wait
MAX_QUERY_TIME = 600.0  # maxQueryTime (10m): the longest wait honoured
JITTER_FRACTION = 16  # structs.JitterFraction: up to wait/16 added, so waiters spread out

# Autopilot's defaults; durations in seconds here, Go strings on the wire.
DEFAULT_AUTOPILOT: dict[str, Any] = {
    "CleanupDeadServers": True,
    "LastContactThreshold": 0.2,
    "MaxTrailingLogs": 250,
    "MinQuorum": 0,
    "ServerStabilizationTime": 10.0,
    "RedundancyZoneTag": "",
    "DisableUpgradeMigration": False,
    "UpgradeVersionTag": "",
}
