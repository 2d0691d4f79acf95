"""The scenario action seam: an action is one module plus its registry line, and it runs against
the StepContext (cluster, events, roles), never the runner."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from consim.scenario import actions
from consim.scenario.actions import ACTIONS
from consim.scenario.actions.base import Action
from consim.scenario.actions.waits import CONDITIONS
from consim.scenario.base import ActionArgs, Checker, ScenarioError, Step, Target
from consim.scenario.context import SCENARIO_NODE, StepContext
from consim.scenario.model import load_scenario
from consim.scenario.runner import run_scenario

ACTIONS_DIR = Path(actions.__file__).parent


@dataclass(frozen=True)
class MarkArgs(ActionArgs):
    target: Target
    label: str

    def describe(self) -> str:
        return f"mark {self.target} as {self.label}"


class Mark(Action[MarkArgs]):
    """A toy action: emits an event naming the server its target resolves to."""

    name = "mark"
    keys = frozenset({"label"})

    def parse(self, c: Checker, value: Any, step: dict[str, Any], dc: str | None) -> MarkArgs:
        return MarkArgs(c.target("mark", value, dc), c.string("label", step.get("label", "x")))

    async def run(self, ctx: StepContext, step: Step, args: MarkArgs) -> str:
        name = ctx.resolve(args.target, step)
        ctx.events.emit(SCENARIO_NODE, "mark", {"server": name, "label": args.label})
        return f"{name} is {args.label}"


def test_a_new_action_is_its_module_and_one_registry_entry(monkeypatch, tmp_path):
    monkeypatch.setitem(ACTIONS, "mark", Mark())
    p = tmp_path / "m.toml"
    p.write_text(
        '[cluster]\ndatacenters = { dc1 = 3 }\n[[step]]\nwait = "leader"\n'
        '[[step]]\nmark = "leader"\nlabel = "chosen"\n'
    )
    result = run_scenario(load_scenario(p))
    assert result.ok, result.failure
    assert result.steps[1].description == "mark leader as chosen"
    leader = result.steps[0].detail.split(": ")[1].split()[0]
    assert result.steps[1].detail == f"{leader} is chosen"
    assert [e.fields for e in result.events.of_kind("mark")] == [
        {"server": leader, "label": "chosen"}
    ]
    # Its keys are its own: another action's key is refused, and so is its key elsewhere.
    p.write_text('[cluster]\ndatacenters = { dc1 = 3 }\n[[step]]\nmark = "leader"\nbody = "x"\n')
    with pytest.raises(ScenarioError, match="field 'body': not allowed in a 'mark' step"):
        load_scenario(p)
    p.write_text('[cluster]\ndatacenters = { dc1 = 3 }\n[[step]]\nkill = "leader"\nlabel = "x"\n')
    with pytest.raises(ScenarioError, match="field 'label': not allowed in a 'kill' step"):
        load_scenario(p)


def test_registries_name_each_action_and_condition_once():
    assert all(a.name == name for name, a in ACTIONS.items())
    assert all(c.name == name for name, c in CONDITIONS.items())
    # The wait step takes exactly within plus its conditions' own keys.
    assert ACTIONS["wait"].keys == {"within"} | {k for c in CONDITIONS.values() for k in c.keys}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_actions_reach_neither_the_runner_nor_the_file_parser():
    """Actions see the StepContext; the runner and model import them, not the other way."""
    for path in ACTIONS_DIR.rglob("*.py"):
        bad = {
            m for m in _imports(path) if m in ("consim.scenario.runner", "consim.scenario.model")
        }
        assert not bad, f"{path.relative_to(ACTIONS_DIR)} imports {bad}"


def test_a_background_step_whose_target_names_nobody_fails_that_step(tmp_path):
    """It used to raise out of the run (a traceback instead of a failed step)."""
    p = tmp_path / "bg.toml"
    p.write_text(
        '[cluster]\ndatacenters = { dc1 = 1 }\n[[step]]\nload = { on = "old-leader", '
        'background = true }\n[[step]]\nnote = "never reached"\n'
    )
    result = run_scenario(load_scenario(p))
    assert [s.status for s in result.steps] == ["failed", "skipped"]
    assert result.steps[0].detail == (
        "target 'old-leader': no leader has been killed or cut off yet"
    )
    assert not result.events.of_kind("load_started")
    assert [e.fields["status"] for e in result.events.of_kind("step")] == ["failed"]


def test_consul_expect_stdout_is_a_string(tmp_path):
    """A list used to pass validation and crash the run when the command's output was compared."""
    p = tmp_path / "st.toml"
    p.write_text(
        '[cluster]\ndatacenters = { dc1 = 1 }\n[[step]]\nconsul = "members"\n'
        'expect = { stdout = ["a"] }\n'
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(p)
    assert str(info.value) == f"{p}: step 1: field 'expect.stdout': expected a string, got a list"
