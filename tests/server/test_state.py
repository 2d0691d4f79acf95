"""The state machine's tables: dispatch by command Type, snapshots of every table, and the
restore of a snapshot written before the tables were split (version 1: KV + autopilot)."""

from __future__ import annotations

import msgpack

from consim.server.state import StateMachine, encode_command


def _populated() -> StateMachine:
    fsm = StateMachine()
    fsm.apply(1, encode_command("KVS", {"Op": "set", "DirEnt": {"Key": "a", "Value": b"1"}}))
    fsm.apply(2, encode_command("Autopilot", {"Config": {"MaxTrailingLogs": 7}, "CAS": 0}))
    node = {"Node": "n1", "Address": "10.0.0.1", "ID": "", "Datacenter": "dc1"}
    check = {"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing"}
    assert fsm.apply(3, encode_command("Register", {"Node": node, "Checks": [check]})) is True
    session = {"ID": "s1", "Node": "n1", "NodeChecks": ["serfHealth"], "LockDelay": 0}
    assert fsm.apply(4, encode_command("Session", {"Op": "create", "Session": session})) == "s1"
    lock = {"Key": "lk", "Value": b"v", "Session": "s1"}
    assert fsm.apply(5, encode_command("KVS", {"Op": "lock", "DirEnt": lock})) is True
    return fsm


def test_every_table_survives_a_snapshot() -> None:
    fsm = _populated()
    again = StateMachine.restore(fsm.snapshot())
    assert again.snapshot() == fsm.snapshot()
    assert again.kv["lk"].session == "s1" and again.kv["lk"].lock_index == 1
    assert again.autopilot["MaxTrailingLogs"] == 7
    assert again.catalog.checks["n1"]["serfHealth"]["Status"] == "passing"
    assert list(again.sessions.sessions) == ["s1"]
    assert again.indexes == {"kvs": 5, "nodes": 3, "checks": 3, "sessions": 4}


def test_a_critical_check_invalidates_its_sessions_and_releases_their_locks() -> None:
    fsm = _populated()
    critical = {"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "critical"}
    node = {"Node": "n1", "Address": "10.0.0.1", "ID": "", "Datacenter": "dc1"}
    fsm.apply(6, encode_command("Register", {"Node": node, "Checks": [critical]}))
    assert fsm.sessions.sessions == {}
    assert fsm.kv["lk"].session == "" and fsm.kv["lk"].lock_index == 1
    assert fsm.kv["lk"].modify_index == 6


def test_unknown_command_type_is_an_error_result() -> None:
    fsm = StateMachine()
    assert fsm.apply(1, encode_command("Nope", {})) == {"Error": "unknown command type 'Nope'"}
    assert fsm.last_applied == 1


def test_version_1_snapshot_restores() -> None:
    legacy = msgpack.packb(
        {
            "kv": [
                {
                    "LockIndex": 0,
                    "Key": "k",
                    "Flags": 3,
                    "Value": b"v",
                    "CreateIndex": 4,
                    "ModifyIndex": 9,
                }
            ],
            "kv_index": 9,
            "autopilot": {"CleanupDeadServers": False},
            "autopilot_create_index": 2,
            "autopilot_modify_index": 5,
            "last_applied": 11,
        },
        use_bin_type=True,
    )
    fsm = StateMachine.restore(legacy)
    assert fsm.last_applied == 11 and fsm.kv_index == 9
    assert fsm.get("k")[1].to_wire()["Flags"] == 3  # type: ignore[union-attr]
    assert fsm.autopilot == {"CleanupDeadServers": False}
    assert (fsm.autopilot_create_index, fsm.autopilot_modify_index) == (2, 5)


def test_a_command_of_the_wrong_shape_is_refused_not_raised() -> None:
    """Only a foreign or buggy leader writes one; every server answers it the same way (state
    unchanged), and a number for a Value is never turned into that many zero bytes."""
    import msgpack

    from consim.server.state import StateMachine

    sm = StateMachine()
    for index, dirent in enumerate(
        (
            {"Key": "k", "Value": 10**12},
            {"Key": "k", "Value": -1},
            {"Key": "k", "Value": b"v", "Flags": "many"},
            [1, 2],
        ),
        start=1,
    ):
        data = msgpack.packb({"Type": "KVS", "Op": "set", "DirEnt": dirent}, use_bin_type=True)
        result = sm.apply(index, data)
        assert isinstance(result, dict) and result["Error"].startswith("malformed command"), result
    assert "k" not in sm.kv and sm.last_applied == 4


def test_undecodable_or_non_map_commands_are_refused_on_both_apply_paths() -> None:
    """The proposer's path (``apply``) and a follower's batch (``apply_entries``) refuse the same
    bytes the same way: msgpack nil, a number, garbage."""
    from consim.raft.types import EntryType, LogEntry
    from consim.server.state import StateMachine

    bad = (b"\xc0", b"\x05", b"\xff\xff", b"")
    one, batch = StateMachine(), StateMachine()
    for index, data in enumerate(bad, start=1):
        assert one.apply(index, data) == {"Error": "malformed command"}
    batch.apply_entries([LogEntry(i, 1, EntryType.COMMAND, d) for i, d in enumerate(bad, start=1)])
    assert one.last_applied == batch.last_applied == len(bad)
    assert one.kv == batch.kv == {}
