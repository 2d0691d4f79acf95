"""next_configuration, table by table: each membership change on its own, without a cluster."""

import pytest

from consim.raft.configuration import (
    ChangeCommand,
    ConfigurationChange,
    ConfigurationError,
    decode_configuration,
    encode_configuration,
    next_configuration,
)
from consim.raft.types import Configuration, Server, Suffrage

V, N = Suffrage.VOTER, Suffrage.NONVOTER
ADD_VOTER = ChangeCommand.ADD_VOTER
ADD_NONVOTER = ChangeCommand.ADD_NONVOTER
DEMOTE = ChangeCommand.DEMOTE_VOTER
REMOVE = ChangeCommand.REMOVE_SERVER


def conf(*servers: tuple[str, str, Suffrage]) -> Configuration:
    return Configuration(tuple(Server(i, a, s) for i, a, s in servers))


S1 = ("id1", "addr1", V)
S2 = ("id2", "addr2", V)
S2_NON = ("id2", "addr2", N)

# (name, current, change, expected)
CHANGES = [
    ("add a new voter at the end", conf(S1), (ADD_VOTER, "id2", "addr2"), conf(S1, S2)),
    (
        "re-add a voter: address only",
        conf(S1, S2),
        (ADD_VOTER, "id2", "addrX"),
        conf(S1, ("id2", "addrX", V)),
    ),
    (
        "a nonvoter added as voter gets the vote",
        conf(S1, S2_NON),
        (ADD_VOTER, "id2", "addrX"),
        conf(S1, ("id2", "addrX", V)),
    ),
    ("add a new nonvoter", conf(S1), (ADD_NONVOTER, "id2", "addr2"), conf(S1, S2_NON)),
    (
        "add_nonvoter on a voter keeps the vote",
        conf(S1, S2),
        (ADD_NONVOTER, "id2", "addrX"),
        conf(S1, ("id2", "addrX", V)),
    ),
    (
        "re-add a nonvoter: new address",
        conf(S1, S2_NON),
        (ADD_NONVOTER, "id2", "addrX"),
        conf(S1, ("id2", "addrX", N)),
    ),
    (
        "demote a voter, order kept",
        conf(S1, S2, ("id3", "addr3", V)),
        (DEMOTE, "id2", ""),
        conf(S1, S2_NON, ("id3", "addr3", V)),
    ),
    ("demote an unknown id: unchanged", conf(S1, S2), (DEMOTE, "nobody", ""), conf(S1, S2)),
    ("demote a nonvoter: unchanged", conf(S1, S2_NON), (DEMOTE, "id2", ""), conf(S1, S2_NON)),
    (
        "remove a server",
        conf(S1, S2, ("id3", "addr3", V)),
        (REMOVE, "id2", ""),
        conf(S1, ("id3", "addr3", V)),
    ),
    ("remove an unknown id: unchanged", conf(S1, S2), (REMOVE, "nobody", ""), conf(S1, S2)),
    ("remove a nonvoter", conf(S1, S2_NON), (REMOVE, "id2", ""), conf(S1)),
]


@pytest.mark.parametrize(
    ("current", "change", "expected"), [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES]
)
def test_next_configuration(current, change, expected):
    command, server_id, address = change
    got = next_configuration(current, 5, ConfigurationChange(command, server_id, address))
    assert got == expected
    assert got.servers == expected.servers  # order too (Consul lists peers in this order)


# (name, current, change, error text)
ERRORS = [
    (
        "remove the last voter",
        conf(S1),
        ConfigurationChange(REMOVE, "id1"),
        "need at least one voter in configuration: {[]}",
    ),
    (
        "demote the last voter",
        conf(S1, S2_NON),
        ConfigurationChange(DEMOTE, "id1"),
        "need at least one voter in configuration: {[{Nonvoter id1 addr1} {Nonvoter id2 addr2}]}",
    ),
    (
        "an address already taken",
        conf(S1),
        ConfigurationChange(ADD_VOTER, "id2", "addr1"),
        "found duplicate address in configuration: addr1",
    ),
    (
        "an empty address",
        conf(S1),
        ConfigurationChange(ADD_NONVOTER, "id2", ""),
        "empty address in configuration: {Nonvoter id2 }",
    ),
    (
        "an empty id",
        conf(S1),
        ConfigurationChange(ADD_VOTER, "", "addr2"),
        "empty ID in configuration: {[{Voter id1 addr1} {Voter  addr2}]}",
    ),
    (
        "a stale prev_index",
        conf(S1),
        ConfigurationChange(ADD_VOTER, "id2", "addr2", prev_index=4),
        "configuration changed since 4 (latest is 5)",
    ),
]


@pytest.mark.parametrize(
    ("current", "change", "text"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_next_configuration_refuses(current, change, text):
    with pytest.raises(ConfigurationError) as info:
        next_configuration(current, 5, change)
    assert str(info.value) == text


def test_matching_prev_index_applies_and_current_is_untouched():
    current = conf(S1)
    got = next_configuration(current, 5, ConfigurationChange(ADD_VOTER, "id2", "addr2", 5))
    assert got == conf(S1, S2)
    assert current == conf(S1)  # a new configuration, never the old one changed


def test_encoding_round_trips():
    c = conf(S1, S2_NON)
    assert decode_configuration(encode_configuration(c)) == c
