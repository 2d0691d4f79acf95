import random

import pytest

from consim.net.faults import FaultModel, host_of


def test_host_of() -> None:
    assert host_of("127.0.0.2:8300") == "127.0.0.2"
    assert host_of("127.0.0.2") == "127.0.0.2"
    assert host_of("*") == "*"


def test_partition_groups_and_unlisted_hosts() -> None:
    f = FaultModel()
    f.partition([["127.0.0.1", "127.0.0.2"], ["127.0.0.3:8300"]])
    assert f.allowed("127.0.0.1", "127.0.0.2")
    assert not f.allowed("127.0.0.1:8300", "127.0.0.3:8301")
    assert not f.allowed("127.0.0.3", "127.0.0.2")
    # Unlisted hosts form their own group: they reach each other but no listed host.
    assert f.allowed("127.0.0.8", "127.0.0.9")
    assert not f.allowed("127.0.0.8", "127.0.0.1")
    # A host always reaches itself (its own ports).
    assert f.allowed("127.0.0.3:8300", "127.0.0.3:8301")
    f.partition([["127.0.0.1"], ["127.0.0.2", "127.0.0.3"]])  # replaces the previous one
    assert f.allowed("127.0.0.2", "127.0.0.3")
    with pytest.raises(ValueError):
        f.partition([["127.0.0.1"], ["127.0.0.1"]])


def test_isolate_and_block_one_way() -> None:
    f = FaultModel()
    f.isolate("127.0.0.2")
    assert not f.allowed("127.0.0.1", "127.0.0.2")
    assert not f.allowed("127.0.0.2", "127.0.0.1")
    assert f.allowed("127.0.0.1", "127.0.0.3")
    f.unisolate("127.0.0.2")
    assert f.allowed("127.0.0.2", "127.0.0.1")
    f.block("127.0.0.1", "127.0.0.2")
    assert not f.allowed("127.0.0.1", "127.0.0.2")
    assert f.allowed("127.0.0.2", "127.0.0.1")


def test_heal_keeps_loss_and_delay_unless_all() -> None:
    f = FaultModel()
    f.partition([["a"], ["b"]])
    f.isolate("c")
    f.block("d", "e")
    f.set_loss("a", "b", 0.5)
    f.set_delay("*", "b", 0.2)
    f.heal()
    assert f.allowed("a", "b") and f.allowed("c", "a") and f.allowed("d", "e")
    assert f.loss_probability("a", "b") == 0.5
    assert f.extra_delay("x", "b") == 0.2
    f.heal(all=True)
    assert f.loss_probability("a", "b") == 0.0
    assert f.extra_delay("x", "b") == 0.0


def test_wildcards_most_specific_wins() -> None:
    f = FaultModel()
    f.set_loss("*", "*", 0.1)
    f.set_loss("*", "b", 0.2)
    f.set_loss("a", "*", 0.3)
    f.set_loss("a", "b", 0.0)
    assert f.loss_probability("a", "b") == 0.0
    assert f.loss_probability("a", "c") == 0.3
    assert f.loss_probability("c", "b") == 0.2
    assert f.loss_probability("c", "d") == 0.1
    with pytest.raises(ValueError):
        f.set_loss("a", "b", 1.5)
    with pytest.raises(ValueError):
        f.set_delay("a", "b", -1)


def test_loss_is_seeded_and_deterministic() -> None:
    def draws(seed: int) -> list[bool]:
        f = FaultModel(random.Random(seed))
        f.set_loss("a", "b", 0.5)
        return [f.drops("a", "b") for _ in range(200)]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)
    assert 60 < sum(draws(1)) < 140
    f = FaultModel(random.Random(0))
    f.set_loss("a", "b", 1.0)
    assert all(f.drops("a", "b") for _ in range(10))
    assert not f.drops("b", "a")


def test_on_change_reports_every_change() -> None:
    events: list[tuple[str, dict]] = []
    f = FaultModel(on_change=lambda kind, fields: events.append((kind, fields)))
    f.partition([["127.0.0.1:8300"], ["127.0.0.2"]])
    f.isolate("127.0.0.3")
    f.block("127.0.0.1", "127.0.0.2")
    f.set_loss("*", "127.0.0.2", 0.25)
    f.set_delay("127.0.0.1", "*", 0.1)
    f.heal()
    assert [k for k, _ in events] == ["partition", "isolate", "block", "loss", "delay", "heal"]
    assert events[0][1] == {"groups": [["127.0.0.1"], ["127.0.0.2"]]}
    assert events[3][1] == {"src": "*", "dst": "127.0.0.2", "p": 0.25}
    assert events[-1][1] == {"all": False}
