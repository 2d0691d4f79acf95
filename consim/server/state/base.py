"""What every state table is (see ``consim.server.state`` for how to add one)."""

from __future__ import annotations

from typing import Any, ClassVar

import msgpack


def encode_command(kind: str, body: dict[str, Any]) -> bytes:
    """A state machine command: ``kind`` is the ``Type`` a table registered in ``commands``."""
    return msgpack.packb({"Type": kind, **body}, use_bin_type=True)


def pack_command(command: dict[str, Any]) -> bytes:
    """``encode_command`` of a command already holding its ``Type`` (first, as there)."""
    return msgpack.packb(command, use_bin_type=True)


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
