"""`consim ctl status` shows a server stopped by an internal error, and each server's count of
contained errors."""

from consim.cli import format_status


def test_status_table_shows_failed_servers_and_error_counts() -> None:
    rows = [
        {
            "name": "dc1-s1",
            "datacenter": "dc1",
            "address": "127.0.0.1:8300",
            "state": "down",
            "failed": "raft timer: RuntimeError: boom",
            "internal_errors": 1,
        },
        {
            "name": "dc1-s2",
            "datacenter": "dc1",
            "address": "127.0.0.2:8300",
            "state": "leader",
            "term": 3,
            "commit_index": 9,
            "last_contact": 0.0,
            "internal_errors": 2,
        },
    ]
    lines = format_status(rows).splitlines()
    assert lines[0].split() == [
        "Node", "Datacenter", "Address", "State", "Term", "Commit", "Index", "Last", "Contact",
        "Errors",
    ]  # fmt: skip
    assert lines[1].split() == ["dc1-s1", "dc1", "127.0.0.1:8300", "down", "(failed)", "-", "-", "-", "1"]  # fmt: skip
    assert lines[2].split()[-1] == "2" and "leader" in lines[2]


def test_status_table_of_agent_processes_has_their_pids() -> None:
    rows = [
        {"name": "dc1-s1", "datacenter": "dc1", "address": "127.0.0.1:8300", "state": "down",
         "pid": None},
        {"name": "dc1-s2", "datacenter": "dc1", "address": "127.0.0.2:8300", "state": "leader",
         "term": 2, "commit_index": 4, "last_contact": 0.0, "pid": 4242},
    ]  # fmt: skip
    lines = format_status(rows).splitlines()
    assert lines[0].split()[-1] == "Pid"
    assert lines[1].split()[-1] == "-" and lines[2].split()[-1] == "4242"
    # In one process there is no pid column.
    assert "Pid" not in format_status([{k: v for k, v in rows[1].items() if k != "pid"}])
