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
