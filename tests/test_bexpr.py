"""consim.bexpr: go-bexpr's ?filter language over JSON-shaped records."""

from __future__ import annotations

import pytest

from consim.bexpr import PREFIX, FilterError, compile_filter

RECORD = {
    "Node": "n1",
    "Port": 8080,
    "EnableTagOverride": False,
    "ServiceTags": ["prod", "blue"],
    "Meta": {"rack": "r1"},
    "Service": {"Tags": ["tag:foo:1"], "Weights": {"Passing": 1}},
    "Checks": [{"Status": "passing"}, {"Status": "critical"}],
    "Empty": [],
}


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        ('Node == "n1"', True),
        ("Node == n1", True),
        ("Node == `n1`", True),
        ('Node != "n1"', False),
        ('"prod" in ServiceTags', True),
        ('"green" in ServiceTags', False),
        ('"green" not in ServiceTags', True),
        ("ServiceTags contains blue", True),
        ("ServiceTags not contains blue", False),
        ('"tag:foo:1" in Service.Tags', True),
        ("Service.Weights.Passing == 1", True),
        ("Port == 8080", True),
        ("Port == 80", False),
        ("EnableTagOverride == false", True),
        ("Meta.rack == r1", True),
        ('"rack" in Meta', True),
        ("Checks.Status == critical", True),  # a path through a list: any element
        ("Empty is empty", True),
        ("ServiceTags is not empty", True),
        ("Nope is empty", True),
        ("Nope == x", False),
        ('Node matches "^n[0-9]$"', True),
        ('Node not matches "^x"', True),
        ("Node == n1 and Port == 80", False),
        ("Node == n2 or Port == 8080", True),
        ("not Node == n2", True),
        ("not (Node == n1 or Port == 1) or Meta.rack == r1", True),
    ],
)
def test_expressions(expr: str, want: bool) -> None:
    assert bool(compile_filter(expr)(RECORD)) is want


@pytest.mark.parametrize(
    ("expr", "column"),
    [("not a valid expression((", 7), ("", 1), ("Node ==", 8), ("(Node == x", 11), ("== x", 1)],
)
def test_syntax_errors_carry_consuls_prefix_and_the_column(expr: str, column: int) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(expr)
    assert str(info.value).startswith(f"{PREFIX}1:{column} ")
