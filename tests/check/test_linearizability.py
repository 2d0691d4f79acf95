"""The checker on the classic cases: each says why it is (not) linearizable."""

from __future__ import annotations

from consim.check.linearizability import check_linearizable

from .helpers import history


def verdict(*ops) -> str:
    return check_linearizable(history(*ops)).verdict


def test_stale_read_after_a_write_completed_is_invalid():
    # w(a) done, w(b) done, then a read returns a: b had certainly taken effect
    ops = [
        (0, "write", "k", "a", 0, 1, "ok"),
        (0, "write", "k", "b", 2, 3, "ok"),
        (1, "read", "k", None, 4, 5, "ok", "a"),
    ]
    assert verdict(*ops) == "invalid"
    # the same read overlapping the second write may see either value
    ops[2] = (1, "read", "k", None, 2.5, 5, "ok", "a")
    assert verdict(*ops) == "valid"


def test_a_read_concurrent_with_a_write_may_see_either_value():
    for seen in (None, "a"):
        assert (
            verdict((0, "write", "k", "a", 0, 2, "ok"), (1, "read", "k", None, 1, 3, "ok", seen))
            == "valid"
        )


def test_two_sequential_reads_cannot_see_new_then_old():
    # both overlap the write, but once one read saw a, a later read cannot see absent
    ops = (
        (0, "write", "k", "a", 0, 10, "ok"),
        (1, "read", "k", None, 1, 2, "ok", "a"),
        (2, "read", "k", None, 3, 4, "ok", None),
    )
    assert verdict(*ops) == "invalid"


def test_cas_semantics():
    # cas from absent succeeds on an empty key, then the read sees its new value
    assert (
        verdict((0, "cas", "k", [None, "x"], 0, 1, "ok"), (0, "read", "k", None, 2, 3, "ok", "x"))
        == "valid"
    )
    # an ok cas needs its expected value: the key holds a, not b
    assert (
        verdict(
            (0, "write", "k", "a", 0, 1, "ok"),
            (0, "write", "k", "b", 1.5, 1.8, "ok"),
            (1, "cas", "k", ["a", "c"], 2, 3, "ok"),
        )
        == "invalid"
    )
    # a refused cas (fail) never happened: the read still sees a
    assert (
        verdict(
            (0, "write", "k", "a", 0, 1, "ok"),
            (1, "cas", "k", ["a", "c"], 2, 3, "fail"),
            (1, "read", "k", None, 4, 5, "ok", "a"),
        )
        == "valid"
    )
    # ... but an ok one did
    assert (
        verdict(
            (0, "write", "k", "a", 0, 1, "ok"),
            (1, "cas", "k", ["a", "c"], 2, 3, "ok"),
            (1, "read", "k", None, 4, 5, "ok", "a"),
        )
        == "invalid"
    )
    # cas expecting absent on a written key cannot succeed
    assert (
        verdict((0, "write", "k", "a", 0, 1, "ok"), (1, "cas", "k", [None, "c"], 2, 3, "ok"))
        == "invalid"
    )


def test_an_info_write_may_take_effect_long_after_it_timed_out():
    ops = (
        (0, "write", "k", "a", 0, 1, "ok"),
        (1, "write", "k", "b", 2, 3, "info"),  # timed out
        (0, "read", "k", None, 4, 5, "ok", "a"),  # not yet applied...
        (0, "read", "k", None, 10, 11, "ok", "b"),  # ...applied later
    )
    assert verdict(*ops) == "valid"
    # it cannot take effect before its invoke
    early = ((0, "read", "k", None, 0, 1, "ok", "b"), (1, "write", "k", "b", 2, 3, "info"))
    assert verdict(*early) == "invalid"
    # once it was seen, the register cannot go back to the older value
    flip = (
        *ops[:3],
        (0, "read", "k", None, 10, 11, "ok", "b"),
        (0, "read", "k", None, 12, 13, "ok", "a"),
    )
    assert verdict(*flip) == "invalid"


def test_an_open_invoke_at_the_end_is_unknown_not_failed():
    ops = (
        (1, "write", "k", "b", 2, None, None),  # the client never heard back
        (0, "read", "k", None, 4, 5, "ok", "b"),
    )
    assert verdict(*ops) == "valid"


def test_an_info_cas_may_have_happened_or_not():
    base = ((0, "write", "k", "a", 0, 1, "ok"), (1, "cas", "k", ["a", "c"], 2, 3, "info"))
    assert verdict(*base, (0, "read", "k", None, 4, 5, "ok", "c")) == "valid"
    assert verdict(*base, (0, "read", "k", None, 4, 5, "ok", "a")) == "valid"
    # it applies only if the register held its expected value
    wrong = (
        (0, "write", "k", "z", 0, 1, "ok"),
        (1, "cas", "k", ["a", "c"], 2, 3, "info"),
        (0, "read", "k", None, 4, 5, "ok", "c"),
    )
    assert verdict(*wrong) == "invalid"


def test_reading_the_value_of_a_failed_write_is_invalid_at_once():
    ops = (
        (0, "write", "k", "a", 0, 1, "fail"),  # e.g. a 403: certainly not applied
        (1, "read", "k", None, 2, 3, "ok", "a"),
    )
    result = check_linearizable(history(*ops))
    assert result.verdict == "invalid"
    assert [op.f for op in result.window] == ["read"]
    assert result.explored == 0  # no search needed
    assert "ever wrote" in result.reason and "p1" in result.reason


def test_a_read_of_a_value_never_written_anywhere_is_invalid():
    result = check_linearizable(history((0, "read", "k", None, 0, 1, "ok", "ghost")))
    assert result.verdict == "invalid" and result.failing_key == "k"


def test_keys_are_independent_registers():
    # per key valid; the cross-key order would only matter for a multi-key model
    ops = (
        (0, "write", "x", "1", 0, 1, "ok"),
        (1, "write", "y", "1", 0, 1, "ok"),
        (0, "read", "y", None, 2, 3, "ok", "1"),
        (1, "read", "x", None, 2, 3, "ok", "1"),
        (2, "read", "z", None, 2, 3, "ok", None),
    )
    result = check_linearizable(history(*ops))
    assert result.verdict == "valid"
    assert result.keys == {"x": "valid", "y": "valid", "z": "valid"}
    # a stale read on y does not taint x
    stale = (*ops, (0, "write", "y", "2", 4, 5, "ok"), (2, "read", "y", None, 6, 7, "ok", "1"))
    result = check_linearizable(history(*stale))
    assert result.verdict == "invalid"
    assert result.keys == {"x": "valid", "y": "invalid", "z": "valid"}
    assert result.failing_key == "y"
    assert {op.key for op in result.window} == {"y"}


def test_fail_and_info_reads_constrain_nothing():
    ops = (
        (0, "write", "k", "a", 0, 1, "ok"),
        (1, "read", "k", None, 2, 3, "fail", "zzz"),
        (1, "read", "k", None, 4, 5, "info", "zzz"),
    )
    assert verdict(*ops) == "valid"


def test_the_window_is_the_few_operations_that_conflict_in_a_long_history():
    ops = []
    t = 0.0
    for i in range(200):  # a long, clean prefix on two processes
        ops.append((i % 2, "write", "k", f"v{i}", t, t + 0.5, "ok"))
        ops.append((2, "read", "k", None, t + 0.6, t + 0.9, "ok", f"v{i}"))
        t += 1.0
    ops.append((0, "write", "k", "late", t, t + 0.5, "ok"))
    ops.append((1, "read", "k", None, t + 1, t + 2, "ok", "v150"))  # stale by 50 writes
    for i in range(50):  # more clean history after the violation
        ops.append((0, "write", "k", f"w{i}", t + 3 + i, t + 3.5 + i, "ok"))
    result = check_linearizable(history(*ops))
    assert result.verdict == "invalid"
    described = [(op.f, op.value if op.f != "read" else op.output) for op in result.window]
    # v150's write, one later write that certainly came in between, and the stale read
    assert len(result.window) == 3, result.describe()
    assert described[0] == ("write", "v150") and described[-1] == ("read", "v150")
    assert described[1][0] == "write"
    text = result.describe()
    assert text.count("\n  #") == 3
    assert "read -> 'v150' ok" in text and "write 'v150' -> ok" in text
    # deleting any window operation makes the rest linearizable: it is minimal
    assert "delete any one of them" in result.reason


def test_the_window_marks_operations_still_open_at_the_cut():
    ops = (
        (0, "write", "k", "a", 0, 1, "ok"),
        (1, "write", "k", "b", 2, 3, "ok"),
        (3, "write", "k", "c", 3.5, 100, "ok"),  # still running when the violation completes
        (2, "read", "k", None, 4, 5, "ok", "c"),
        (2, "read", "k", None, 6, 7, "ok", "b"),  # b again after c was seen: no writer of b left
        (0, "write", "k", "d", 50, 51, "ok"),
    )
    result = check_linearizable(history(*ops))
    assert result.verdict == "invalid"
    shown = [op.value if op.f == "write" else op.output for op in result.window]
    assert shown == ["b", "c", "c", "b"], result.describe()
    c_write = result.window[1]
    assert result.window_pending == [c_write.index]
    assert "still open at the cut" in result.describe()


def test_budget_exhausted_is_unknown():
    ops = [(p, "write", "k", f"v{p}", 0, 10, "ok") for p in range(8)]
    ops.append((9, "read", "k", None, 11, 12, "ok", "v3"))
    assert verdict(*ops) == "valid"
    result = check_linearizable(history(*ops), budget=3)
    assert result.verdict == "unknown" and result.keys == {"k": "unknown"}
    assert "budget" in result.reason


def test_result_json_and_text():
    result = check_linearizable(
        history(
            (0, "write", "k", "a", 0, 1, "ok"),
            (1, "write", "k", "b", 2, 3, "ok"),
            (1, "read", "k", None, 4, 5, "ok", "a"),
        )
    )
    obj = result.to_json()
    assert obj["verdict"] == "invalid" and obj["failing_key"] == "k"
    assert [w["f"] for w in obj["window"]] == ["write", "write", "read"]
    assert result.describe().splitlines()[0].startswith("linearizability: invalid")


def test_a_read_of_a_value_written_only_later_is_invalid_at_once():
    ops = (
        (0, "write", "k", "a", 0, 1, "ok"),
        (1, "read", "k", None, 2, 3, "ok", "c"),  # c comes from a cas invoked at 5
        (0, "cas", "k", ["a", "c"], 5, 6, "ok"),
    )
    result = check_linearizable(history(*ops))
    assert result.verdict == "invalid" and result.explored == 0
    # the read, the cas that produces c, and the write that cas needs
    assert [op.index for op in result.window] == [0, 1, 2]
    assert "before any operation that could write it was invoked" in result.reason
    assert "#2 at 5.000" in result.reason
