"""Facts of the run in notes ({leader}, {term}, {role:T}, ...), filled when the step starts."""

from __future__ import annotations

import pytest

from consim.scenario.model import ScenarioError, load_scenario
from consim.scenario.runner import SCENARIO_NODE, run_scenario

_HEAD = 'seed = 5\n[cluster]\ndatacenters = { dc1 = 3 }\nraft_multiplier = 1\n[[step]]\nwait = "leader"\n'


def _write(tmp_path, text: str):
    p = tmp_path / "n.toml"
    p.write_text(_HEAD + text)
    return p


def test_placeholders_are_filled_from_the_cluster_when_the_step_starts(tmp_path):
    p = _write(
        tmp_path,
        '[[step]]\nnote = "{leader} leads in term {term} with {voters} voters; dc1-s1 is '
        "{role:dc1-s1} in term {term:dc1-s1}, commit {commit:leader}, index {index:leader}; "
        'a follower: {name:follower}; {rpc:dc1-s2} stays as written"\n'
        'kill = "leader"\n'
        '[[step]]\nnote = "{name:last-killed} is {role:last-killed}"\nwait = "new-leader"\n'
        'within = "5s"\n',
    )
    result = run_scenario(load_scenario(p))
    assert result.ok, result.failure
    events = result.events.events
    notes = [e for e in events if e.node == SCENARIO_NODE and e.kind == "note"]
    # The facts, from the event log up to the first note.
    first = events.index(notes[0])
    won = [e for e in events[:first] if e.kind == "election_won"][-1]
    leader, term = won.node, won.fields["term"]
    s1_role = "leader" if leader == "dc1-s1" else "follower"
    follower = sorted(n for n in result.servers if n != leader)[0]
    text = notes[0].fields["text"]
    assert text.startswith(f"{leader} leads in term {term} with 3 voters; dc1-s1 is {s1_role} ")
    assert f"in term {term}, commit " in text and f"a follower: {follower}; " in text
    assert text.endswith("{rpc:dc1-s2} stays as written")
    assert notes[1].fields["text"] == f"{leader} is down"
    # The step's result (JSON) carries the note as shown.
    assert result.steps[1].note == text


@pytest.mark.parametrize(
    ("note", "error"),
    [
        ("{leadr} leads", "unknown placeholder {leadr}"),
        ("{role:dc1-s9}", "{role:dc1-s9} names no server"),
        ("{voters:leader}", "unknown placeholder {voters:leader}"),
    ],
)
def test_bad_placeholders_are_refused_by_the_validator(tmp_path, note, error):
    p = _write(tmp_path, f'[[step]]\nnote = "{note}"\nsleep = "1s"\n')
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    assert any(f"step 2: field 'note': {error}" in line for line in exc.value.errors), (
        exc.value.errors
    )
