"""msgpack as the network carries it, and the limits every codec on the server port shares.

``pack``/``unpack`` encode and decode one value (the simulator's datagram and push-pull
envelopes, the port-mapped live datagram envelope). ``MAX_FRAME`` bounds one Consul RPC message
(``consim.net.msgpackrpc``) before it is buffered, and one that has started must finish within
``DEFAULT_READ_TIMEOUT`` seconds (``consim.server.rpc_listener``).
"""

from __future__ import annotations

import threading
from typing import Any

import msgpack

MAX_FRAME = 8 * 1024 * 1024
DEFAULT_READ_TIMEOUT = 10.0


class FrameError(Exception):
    """Bytes that do not decode as one msgpack value."""


class FrameTooLarge(FrameError):
    pass


_unpackb = msgpack.unpackb
# One reusable Packer per thread: ``msgpack.packb`` builds a Packer per call, which is ~40% of the
# cost of packing a Raft message. A Packer resets itself when packing raises.
_packers = threading.local()


def _packer() -> msgpack.Packer:
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
    return packer


_KEEP_PACKER_BUFFER = 1024 * 1024  # a Packer keeps its largest buffer: drop one that grew past this


def pack(obj: Any) -> bytes:
    """msgpack-encode one value the way the wire does (raises TypeError if not serialisable)."""
    data = (getattr(_packers, "packer", None) or _packer()).pack(obj)
    if len(data) > _KEEP_PACKER_BUFFER:
        _packers.packer = None  # one big message must not pin its buffer for the process's life
    return data


def unpack(data: bytes) -> Any:
    """Decode exactly one msgpack value; raises FrameError on anything else."""
    try:
        # unpackb bounds every container/string by len(data), which we already capped.
        return _unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise FrameError(f"undecodable frame: {exc.__class__.__name__}") from None
