"""The replicated state machine; its tables live in ``consim.server.state`` (one module each).

Kept as the name the rest of the server imports: ``StateMachine``, ``DirEntry``,
``encode_command``, ``pack_command``.
"""

from consim.server.state import StateMachine, Table
from consim.server.state.base import encode_command, pack_command
from consim.server.state.kvs import DirEntry

__all__ = ["DirEntry", "StateMachine", "Table", "encode_command", "pack_command"]
