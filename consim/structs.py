"""Consul's blocking-query limits, shared by the HTTP layer (``?wait``) and the server (RPC
``MaxQueryTime``): one definition, as in Consul's agent/structs and agent/consul/rpc.go."""

from __future__ import annotations

DEFAULT_QUERY_TIME = 300.0  # defaultQueryTime (5m): a blocking query without a wait
MAX_QUERY_TIME = 600.0  # maxQueryTime (10m): the longest wait honoured
JITTER_FRACTION = 16  # structs.JitterFraction: up to wait/16 added, so waiters spread out
