"""What every state table is (see ``consim.server.state`` for how to add one)."""

from __future__ import annotations

from typing import Any, ClassVar

from consim.net.framing import pack as pack_command

# ``pack_command(command)``: a command already holding its ``Type`` (first), packed with the wire's
# reused per-thread Packer (``msgpack.packb`` builds one per call, and every write packs a
# command).


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
