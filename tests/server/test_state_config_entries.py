"""The config entries table (consim/server/state/config_entries.py): upsert, CAS upsert and
delete as Consul's state store applies them, indexes, snapshots."""

from __future__ import annotations

from consim.server.state import ConfigEntryTable, StateMachine, encode_command

SVC = {"Kind": "service-defaults", "Name": "web", "Protocol": "http"}


def _apply(fsm: StateMachine, index: int, op: str, entry: dict, cas: int = 0):
    return fsm.apply(index, encode_command("ConfigEntry", {"Op": op, "Entry": entry, "Index": cas}))


def test_upsert_keeps_create_index_and_moves_modify_index():
    fsm = StateMachine()
    assert _apply(fsm, 3, "upsert", SVC) is True
    assert _apply(fsm, 5, "upsert", {**SVC, "Protocol": "grpc"}) is True
    table = fsm.table(ConfigEntryTable)
    assert table.get("service-defaults", "web") == {
        **SVC, "Protocol": "grpc", "CreateIndex": 3, "ModifyIndex": 5
    }  # fmt: skip
    assert table.index() == 5


def test_cas_upsert_and_delete_apply_only_at_the_current_modify_index():
    fsm = StateMachine()
    assert _apply(fsm, 2, "upsert-cas", SVC, cas=0) is True  # 0: only if absent
    assert _apply(fsm, 3, "upsert-cas", SVC, cas=0) is False
    assert _apply(fsm, 4, "upsert-cas", {**SVC, "Protocol": "grpc"}, cas=99) is False
    table = fsm.table(ConfigEntryTable)
    assert table.get("service-defaults", "web")["Protocol"] == "http"
    assert table.index() == 2  # refused writes change nothing
    assert _apply(fsm, 5, "upsert-cas", {**SVC, "Protocol": "grpc"}, cas=2) is True
    assert _apply(fsm, 6, "delete-cas", SVC, cas=2) is False
    assert table.get("service-defaults", "web") is not None
    assert _apply(fsm, 7, "delete-cas", SVC, cas=5) is True
    assert table.get("service-defaults", "web") is None
    assert _apply(fsm, 8, "delete-cas", SVC, cas=5) is False  # nothing left to match


def test_list_by_kind_sorted_and_snapshot_round_trip():
    fsm = StateMachine()
    _apply(fsm, 1, "upsert", {"Kind": "service-defaults", "Name": "b"})
    _apply(fsm, 2, "upsert", {"Kind": "proxy-defaults", "Name": "global"})
    _apply(fsm, 3, "upsert", {"Kind": "service-defaults", "Name": "a"})
    table = fsm.table(ConfigEntryTable)
    assert [e["Name"] for e in table.list("service-defaults")] == ["a", "b"]
    assert [e["Kind"] for e in table.list()] == ["proxy-defaults", *["service-defaults"] * 2]
    again = StateMachine.restore(fsm.snapshot()).table(ConfigEntryTable)
    assert again.list() == table.list() and again.index() == 3
