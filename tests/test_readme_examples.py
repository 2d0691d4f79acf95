"""Every example in the README is a file the suite checks: the TOML blocks are docs/examples/*
verbatim (the scenario runs and passes, the ACL file loads and decides), the shell lines parse
as consim commands, the paths it names exist, and the docs stand alone."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from consim.acl import ACLConfig
from consim.cli import build_parser, ctl_body
from consim.scenario.model import load_scenario
from consim.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
EXAMPLES = ROOT / "docs" / "examples"


def _toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", README, re.S)


def test_every_toml_block_is_an_example_file_verbatim():
    files = {p.name: p.read_text() for p in EXAMPLES.glob("*.toml")}
    blocks = _toml_blocks()
    assert len(blocks) >= 2
    for block in blocks:
        matches = [name for name, text in files.items() if text == block]
        assert matches, f"README block not in docs/examples/ verbatim:\n{block[:300]}"
    assert set(files) <= {n for b in blocks for n, t in files.items() if t == b}


def test_the_readme_scenario_runs_and_passes():
    scenario = load_scenario(EXAMPLES / "tour.toml")
    result = run_scenario(scenario)
    assert result.ok, result.failure
    assert len(result.steps) == len(scenario.steps) and all(s.status == "ok" for s in result.steps)


def test_the_readme_acl_file_loads_and_decides():
    config = ACLConfig.load(EXAMPLES / "acl.toml")
    assert config.enabled and config.default_policy == "deny"
    ops = config.resolve("ops-secret")
    ops.require("operator", "write")
    ops.require("keyring", "read")
    with pytest.raises(Exception, match="lacks permission 'keyring:write'"):
        ops.require("keyring", "write")


def _shell_lines() -> list[str]:
    """``consim ...`` commands from indented code lines and inline code."""
    out = []
    for line in README.splitlines():
        if line.startswith("    ") and "consim " in line:
            text = line.strip().split("  #")[0]
            out.extend(part.strip() for part in re.split(r" ; | && ", text))
    out.extend(re.findall(r"`((?:\.venv/bin/)?consim (?:run|validate|ctl|up) [^`]*)`", README))
    return [c for c in out if re.match(r"(\.venv/bin/)?consim ", c) and "..." not in c]


def test_shell_examples_are_valid_consim_commands():
    commands = _shell_lines()
    assert any(c.startswith("consim ctl delay") for c in commands)
    assert any(c.startswith("consim up") for c in commands)
    assert ".venv/bin/consim run scenarios/01-leader-loss.toml" in commands  # the quick start
    parser = build_parser()
    for command in commands:
        argv = shlex.split(command)[1:]
        args = parser.parse_args(argv)  # SystemExit on a bad example
        if args.command == "ctl":
            ctl_body(args.action, args.params)  # UsageError on a bad value
        for f in getattr(args, "files", []) or []:
            if "*" not in f and not f.startswith(("FILE", "x.toml")):
                assert (ROOT / f).exists(), command


def test_paths_the_readme_names_exist_and_docs_stand_alone():
    for path in re.findall(r"`((?:docs|scenarios|benchmarks|scripts)/[\w./-]+)`", README):
        if "*" not in path and not path.startswith("benchmarks/out/"):
            assert (ROOT / path).exists(), path
    for doc in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        text = doc.read_text()
        assert "consul-reference" not in text and "/work/shared" not in text, doc
    assert "docs/consul-behaviour.md" in README
