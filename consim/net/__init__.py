"""Server-to-server networking: msgpack frames, RPC, datagrams, faults (see docs/internals.md)."""

from consim.net.faults import FaultModel
from consim.net.network import Network, RpcError, RpcTimeout, Unreachable

__all__ = ["FaultModel", "Network", "RpcError", "RpcTimeout", "Unreachable"]
