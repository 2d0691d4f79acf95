import random

import pytest

from consim.raft.config import RaftConfig
from consim.raft.core import RaftCore
from consim.raft.types import Configuration, HardState, PersistentState, Server

EMPTY = PersistentState(HardState(), None, ())


def conf(*ids: str, nonvoters: tuple[str, ...] = ()) -> Configuration:
    from consim.raft.types import Suffrage

    return Configuration(
        tuple(
            Server(i, f"{i}:8300", Suffrage.NONVOTER if i in nonvoters else Suffrage.VOTER)
            for i in ids
        )
    )


def make_core(
    sid: str = "a",
    peers: tuple[str, ...] = ("a", "b", "c"),
    now: float = 0.0,
    cfg: RaftConfig | None = None,
    seed: int = 1,
    state: PersistentState | None = None,
    nonvoters: tuple[str, ...] = (),
) -> RaftCore:
    core = RaftCore(
        sid,
        f"{sid}:8300",
        state or EMPTY,
        cfg or RaftConfig.for_multiplier(1),
        random.Random(seed),
        now,
    )
    if state is None:
        core.bootstrap(conf(*peers, nonvoters=nonvoters))
        core.ready()
    return core


@pytest.fixture
def core() -> RaftCore:
    return make_core()


# Pre-vote is a cluster setting (hashicorp/raft 1.1.2 has none, so mixed clusters turn it off).
# The election and safety tests run both ways. ``@pytest.mark.pre_vote(value)`` fixes the setting
# for one test (pre-vote's own tests: True). Elsewhere the default (on) applies.
BOTH_WAYS = {"test_core", "test_safety", "test_bounds_and_strangers"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "raft_pre_vote" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rpartition(".")[2]
    marker = metafunc.definition.get_closest_marker("pre_vote")
    if marker is not None:
        values = [bool(marker.args[0]) if marker.args else True]
    else:
        values = [True, False] if module in BOTH_WAYS else [True]
    metafunc.parametrize(
        "raft_pre_vote",
        values,
        ids=["pre-vote" if v else "no-pre-vote" for v in values],
        indirect=True,
    )


@pytest.fixture(autouse=True)
def raft_pre_vote(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Every RaftConfig a test builds gets this pre-vote setting as its default."""
    value = bool(request.param)
    if not value:
        defaults = RaftConfig.__init__.__defaults__
        assert defaults is not None and defaults[-1] is True  # pre_vote is the last field
        monkeypatch.setattr(RaftConfig.__init__, "__defaults__", (*defaults[:-1], False))
    return value


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pre_vote(value): run with pre-vote on (True) or off (False) only"
    )
