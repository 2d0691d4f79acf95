"""What every state table is (see ``consim.server.state`` for how to add one)."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import msgpack

# One reusable Packer per thread: ``msgpack.packb`` builds a Packer (and its buffer) per call,
# more than half the cost of packing a small command, and every write packs one.
_packers = threading.local()
_KEEP_PACKER_BUFFER = 1024 * 1024  # a Packer keeps its largest buffer: drop one that grew past this


def pack_command(command: dict[str, Any]) -> bytes:
    """``encode_command`` of a command already holding its ``Type`` (first, as there)."""
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
    data: bytes = packer.pack(command)
    if len(data) > _KEEP_PACKER_BUFFER:
        _packers.packer = None  # one big command must not pin its buffer for the process's life
    return data


def encode_command(kind: str, body: dict[str, Any]) -> bytes:
    """A state machine command: ``kind`` is the ``Type`` a table registered in ``commands``."""
    return pack_command({"Type": kind, **body})


class Table:
    """One table of the state machine."""

    name: ClassVar[str] = ""
    # command Type -> the name of the method (index, command) -> result that applies it
    commands: ClassVar[dict[str, str]] = {}

    def __init__(self, store: Any) -> None:
        # The StateMachine (typed Any: the tables sit below it in the import graph).
        self.store = store

    def snapshot(self) -> Any:
        raise NotImplementedError

    def restore(self, obj: Any) -> None:
        raise NotImplementedError
