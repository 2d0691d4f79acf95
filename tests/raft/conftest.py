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
