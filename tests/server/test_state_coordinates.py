"""The coordinates table (consim/server/state/coordinates.py): updates only for catalog nodes,
gone with their node, in snapshots."""

from __future__ import annotations

from consim.server.state import CoordinateTable, StateMachine, encode_command

COORD = {"Vec": [1.0] * 8, "Error": 0.5, "Adjustment": 0.0, "Height": 0.01}


def _register(fsm: StateMachine, index: int, name: str) -> None:
    fsm.apply(index, encode_command("Register", {"Node": {"Node": name, "Address": "10.0.0.1"}}))


def _update(fsm: StateMachine, index: int, name: str, coord: dict = COORD) -> None:
    command = {"Updates": [{"Node": name, "Segment": "", "Coord": coord}]}
    fsm.apply(index, encode_command("CoordinateBatchUpdate", command))


def test_updates_for_unknown_nodes_are_dropped_and_known_ones_kept():
    fsm = StateMachine()
    _register(fsm, 1, "a")
    _update(fsm, 2, "a")
    _update(fsm, 3, "ghost")
    table = fsm.table(CoordinateTable)
    assert table.list() == [{"Node": "a", "Segment": "", "Coord": COORD}]
    assert table.index() == 2  # the dropped update changed nothing


def test_a_node_registered_again_has_no_old_coordinate():
    fsm = StateMachine()
    _register(fsm, 1, "a")
    _update(fsm, 2, "a")
    fsm.apply(3, encode_command("Deregister", {"Node": "a"}))
    table = fsm.table(CoordinateTable)
    assert table.node("a") == [] and table.index() == 3  # readers wake on the deletion
    _register(fsm, 4, "a")
    assert table.node("a") == []
    _update(fsm, 5, "a", {**COORD, "Error": 1.0})
    assert table.node("a")[0]["Coord"]["Error"] == 1.0


def test_snapshot_round_trip():
    fsm = StateMachine()
    _register(fsm, 1, "a")
    _update(fsm, 2, "a")
    again = StateMachine.restore(fsm.snapshot())
    assert again.table(CoordinateTable).list() == fsm.table(CoordinateTable).list()
    assert again.table(CoordinateTable).index() == 2
