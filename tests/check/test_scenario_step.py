"""The scenario ``check`` step: validated like every step, and it runs a campaign on the
scenario's cluster with the expected verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from consim.scenario.model import ScenarioError, load_scenario
from consim.scenario.runner import run_scenario

HEAD = '[cluster]\ndatacenters = { dc1 = 3 }\nraft_multiplier = 1\n\n[[step]]\nwait = "leader"\nwithin = "5s"\n\n'


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text('name = "t"\nsummary = "t"\nseed = 2\n' + HEAD + body)
    return path


@pytest.mark.parametrize(
    ("step", "error"),
    [
        (
            'check = { nemesis = "kill,boom" }',
            "step 2: field 'check.nemesis': unknown nemesis boom",
        ),
        ('check = { consistency = "strong" }', "field 'check.consistency': expected \"default\""),
        ("check = { duration = 5 }", "field 'check.duration'"),
        ("check = { client = 5 }", "field 'check.client': unknown field"),
        ('check = { clients = 5 }\nexpect = { verdict = "fine" }', "field 'expect.verdict'"),
        (
            'check = { clients = 5 }\nexpect = { verdict = "invalid", live = "maybe" }',
            "field 'expect.live'",
        ),
    ],
)
def test_bad_check_steps_are_rejected(tmp_path: Path, step: str, error: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, "[[step]]\n" + step + "\n"))
    assert error in str(info.value)


def test_check_step_passes_on_the_expected_verdict_and_fails_otherwise(tmp_path: Path) -> None:
    body = (
        '[[step]]\ncheck = { duration = "10s", consistency = "stale", nemesis = "partition", interval = "3s" }\n'
        'expect = { verdict = "invalid" }\n\n'
        '[[step]]\ncheck = { duration = "10s", consistency = "consistent", nemesis = "kill", interval = "3s" }\n'
    )
    result = run_scenario(load_scenario(write(tmp_path, body)))
    stale, consistent = result.steps[1], result.steps[2]
    assert stale.status == "ok", stale.detail
    assert "invalid (key check2/" in stale.detail
    assert consistent.status == "ok", consistent.detail
    assert consistent.detail.endswith(": valid")
    # The same stale check expected valid fails the step, with the window in the detail.
    body = '[[step]]\ncheck = { duration = "10s", consistency = "stale", nemesis = "partition", interval = "3s" }\n'
    failed = run_scenario(load_scenario(write(tmp_path, body)))
    assert failed.steps[1].status == "failed"
    assert "expected valid" in failed.steps[1].detail


def test_live_expectation_defaults_to_the_verdict_and_may_differ(tmp_path: Path) -> None:
    body = '[[step]]\ncheck = { clients = 2 }\nexpect = { verdict = "invalid"%s }\n'
    same = load_scenario(write(tmp_path, body % "")).steps[1].args
    assert (same.verdict, same.live_verdict) == ("invalid", "invalid")
    relaxed = load_scenario(write(tmp_path, body % ', live = "any"')).steps[1].args
    assert (relaxed.verdict, relaxed.live_verdict) == ("invalid", "any")
