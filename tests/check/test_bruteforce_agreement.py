"""The search agrees with the definition executed literally on thousands of small histories."""

from __future__ import annotations

import dataclasses
import random

import pytest

from consim.check.bruteforce import TooLarge, check_bruteforce
from consim.check.history import History, Operation
from consim.check.linearizability import check_linearizable
from consim.check.synthetic import linearizable_history, mutate

from .helpers import history


def _small(rng: random.Random, *, big: bool = False):
    return linearizable_history(
        rng,
        ops=rng.randint(7, 10) if big else rng.randint(1, 8),
        keys=1 if big else rng.randint(1, 2),
        clients=rng.randint(2, 5),
        fail_rate=0.15,
        info_rate=0.2,
        cas_rate=0.3,
    )


@pytest.mark.parametrize("big", [False, True])
def test_search_and_brute_force_agree(big):
    counts = {"valid": 0, "invalid": 0}
    for seed in range(2500 if not big else 1000):
        rng = random.Random(seed)
        made = _small(rng, big=big)
        for name, h in (("generated", made), ("mutated", mutate(made, rng))):
            expected = check_bruteforce(h)
            got = check_linearizable(h).verdict
            assert got == ("valid" if expected else "invalid"), (
                f"seed {seed} big={big} ({name}): brute force says "
                f"{'valid' if expected else 'invalid'}, the search {got}\n{h.to_jsonl()}"
            )
            if name == "generated":
                assert expected, f"seed {seed}: a generated history must be linearizable"
            if not expected:
                _check_window(check_linearizable(h), f"seed {seed} big={big}\n{h.to_jsonl()}")
            counts["valid" if expected else "invalid"] += 1
    # the mutations really produce both verdicts, or the agreement would prove little
    assert counts["invalid"] > (150 if not big else 150), counts


def _window_ops(result, drop=None) -> list[Operation]:
    """The window as a history of its own: operations open at the cut become info; ``drop``
    removed, with the reads (and ok cas) then left without a writer of their value."""
    pending = set(result.window_pending)
    ops = [
        dataclasses.replace(op, type="info") if op.index in pending else op
        for op in result.window
        if op.index != drop
    ]
    while True:
        orphans = _orphans(ops)
        if not orphans or drop is None:
            return ops
        ops = [op for op in ops if op not in orphans]


def _orphans(ops: list[Operation]) -> list[Operation]:
    """Reads and cas operations needing a value no operation in ``ops`` could produce."""
    made = [None] + [op.value for op in ops if op.f == "write" and op.type != "fail"]
    grew = True
    while grew:
        grew = False
        for op in ops:
            needs, gives = op.value if op.f == "cas" else (None, None)
            if op.f == "cas" and op.type != "fail" and needs in made and gives not in made:
                made.append(gives)
                grew = True
    return [
        op
        for op in ops
        if (op.f == "read" and op.type == "ok" and op.output not in made)
        or (op.f == "cas" and op.type != "fail" and op.value[0] not in made)
    ]


def _check_window(result, context: str) -> None:
    """The window cannot be linearized on its own, and (when the checker says it is minimal)
    dropping any one of its operations makes it linearizable."""
    assert result.verdict == "invalid" and result.window, context
    if len(result.window) > 1:
        # it fails for a reason in the history, not for a writer the minimization deleted
        assert not _orphans(_window_ops(result)), f"window needs a value it lacks: {context}"
    assert not check_bruteforce(_window_ops(result)), f"window is linearizable: {context}"
    if "delete any one of them" in result.reason:
        for op in result.window:
            assert check_bruteforce(_window_ops(result, drop=op.index)), (
                f"window minus #{op.index} still invalid: {context}"
            )


def test_generated_large_histories_are_valid():
    for seed in range(5):
        h = linearizable_history(random.Random(seed), ops=2000, keys=3, clients=5, info_rate=0.05)
        result = check_linearizable(h)
        assert result.verdict == "valid", f"seed {seed}: {result.describe()}"


def test_brute_force_on_the_classic_cases():
    stale = history(
        (0, "write", "k", "a", 0, 1, "ok"),
        (0, "write", "k", "b", 2, 3, "ok"),
        (1, "read", "k", None, 4, 5, "ok", "a"),
    )
    assert not check_bruteforce(stale)
    overlap = history((0, "write", "k", "a", 0, 2, "ok"), (1, "read", "k", None, 1, 3, "ok", None))
    assert check_bruteforce(overlap)
    late_info = history(
        (1, "write", "k", "b", 2, 3, "info"), (0, "read", "k", None, 10, 11, "ok", "b")
    )
    assert check_bruteforce(late_info)


def test_brute_force_refuses_large_histories():
    big = history(*[(0, "write", "k", f"v{i}", i, i + 0.5, "ok") for i in range(20)])
    with pytest.raises(TooLarge):
        check_bruteforce(big)


def _arbitrary(rng: random.Random) -> History:
    """Any small history at all: values from a pool of three (repeated values, as a hand-written
    file may have), random outcomes and overlaps; about half are not linearizable."""
    pool = ["a", "b", "c"]
    h = History()
    events = []
    for process in range(rng.randint(1, 4)):
        t = rng.random()
        for _ in range(rng.randint(1, 3)):
            f = rng.choice(("read", "write", "cas"))
            value = (
                None
                if f == "read"
                else rng.choice(pool)
                if f == "write"
                else [rng.choice([None, *pool]), rng.choice(pool)]
            )
            end = t + rng.random()
            typ = rng.choice(("ok", "ok", "ok", "fail", "info", "open"))
            out = rng.choice([None, *pool]) if f == "read" else value
            events.append((t, 0, process, f, value))
            if typ != "open":
                events.append((end, 1, process, typ, out))
            t = end + rng.random() * 0.5
            if typ == "open":
                break
    for e in sorted(events, key=lambda e: (e[0], e[1])):
        if e[1] == 0:
            h.invoke(e[2], e[3], "k" if e[2] % 3 else "j", e[4], round(e[0], 4))
        else:
            h.complete(e[2], e[3], e[4], round(e[0], 4))
    return h


def test_search_and_brute_force_agree_on_arbitrary_histories():
    counts = {True: 0, False: 0}
    for seed in range(3000):
        h = _arbitrary(random.Random(seed))
        if len([op for op in h.operations() if op.type != "fail"]) > 10:
            continue
        expected = check_bruteforce(h)
        result = check_linearizable(h)
        assert result.verdict == ("valid" if expected else "invalid"), (
            f"seed {seed}: brute force says {expected}, the search {result.verdict}\n{h.to_jsonl()}"
        )
        if not expected:
            _check_window(result, f"seed {seed}\n{h.to_jsonl()}")
        counts[expected] += 1
    assert counts[True] > 500 and counts[False] > 500, counts


def test_bounding_info_operations_changes_no_verdict(monkeypatch):
    """Beyond brute force's reach (20-60 operations on one key, 20% info): the search with info
    operations bounded by their last observer agrees with the search without the bound."""
    from consim.check import linearizability

    seen = set()
    for seed in range(300):
        rng = random.Random(seed)
        made = linearizable_history(
            rng,
            ops=rng.randint(20, 60),
            keys=1,
            clients=rng.randint(2, 5),
            info_rate=0.2,
            fail_rate=0.1,
            cas_rate=0.3,
        )
        for h in (made, mutate(made, rng), mutate(mutate(made, rng), rng)):
            bounded = check_linearizable(h).verdict
            monkeypatch.setattr(linearizability, "_BOUND_INFO", False)
            unbounded = check_linearizable(h).verdict
            monkeypatch.setattr(linearizability, "_BOUND_INFO", True)
            assert bounded == unbounded, f"seed {seed}\n{h.to_jsonl()}"
            seen.add(bounded)
    assert seen == {"valid", "invalid"}
