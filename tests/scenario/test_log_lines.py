"""Log lines as hashicorp's: one ``entering candidate state`` per election round, then
``pre-vote successful, starting election``; values in Go's ``%+v`` form; no pseudo-node; HTTP
answers whole on request (``--full``, JSON)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import trio

from consim.events import NO_NODE, Event, EventLog, format_hclog, go_value
from consim.scenario.model import load_scenario
from consim.scenario.runner import SCENARIO_NODE, run_scenario
from consim.scenario.timeline import render_timeline, results_json

ROOT = Path(__file__).resolve().parents[2]
ROUND_MESSAGES = (
    "entering candidate state",
    "pre-vote successful, starting election",
    "Election timeout reached, restarting election",
    "heartbeat timeout reached, starting election",
    "election won",
    "entering leader state",
    "entering follower state",
)


def _run(name: str, seed: int | None = None):
    return run_scenario(load_scenario(ROOT / "scenarios" / name), seed=seed)


def test_one_candidate_line_per_election_round_then_pre_vote_successful():
    seen_pre_vote = 0
    # 03 seed 17: a clean first election, and a cut-off old leader that keeps restarting.
    for name, seed in (("01-leader-loss.toml", None), ("03-minority-partition.toml", 17)):
        result = _run(name, seed)
        assert result.ok, result.failure
        for node in result.servers:
            msgs = [
                e.message
                for e in result.events.events
                if e.node == node and e.message in ROUND_MESSAGES
            ]
            for i, m in enumerate(msgs):
                if m == "pre-vote successful, starting election":
                    seen_pre_vote += 1
                    assert msgs[i - 1] == "entering candidate state", (node, msgs[i - 3 : i + 2])
                    # The vote after a won pre-vote is the same round: no second candidate line.
                    assert msgs[i + 1 : i + 2] != ["entering candidate state"], (node, msgs)
                if m in (
                    "Election timeout reached, restarting election",
                    "heartbeat timeout reached, starting election",
                ):
                    # hashicorp's runCandidate starts each round with the candidate line.
                    assert msgs[i + 1 : i + 2] in (["entering candidate state"], []), (node, msgs)
        pre = next(e for e in result.events.events if e.kind == "pre_vote")
        assert set(pre.fields) == {"term", "tally", "refused", "votesNeeded"}
    assert seen_pre_vote >= 2


def test_values_print_in_go_form():
    servers = [
        {"id": "a1", "address": "127.0.0.1:8300", "suffrage": "voter"},
        {"id": "b2", "address": "127.0.0.2:8300", "suffrage": "nonvoter"},
    ]
    assert go_value(servers) == (
        "[{Suffrage:Voter ID:a1 Address:127.0.0.1:8300} {Suffrage:Nonvoter ID:b2 Address:127.0.0.2:8300}]"
    )
    assert go_value([["dc1-s1", "dc1-s2"], ["dc1-s3"]]) == "[[dc1-s1 dc1-s2] [dc1-s3]]"
    assert go_value(None) == "<nil>" and go_value(True) == "true" and go_value([]) == "[]"
    assert go_value(0.2) == "0.2" and go_value({"p": 0.5}) == "{P:0.5}"
    line = format_hclog(
        Event(
            0.0,
            "dc1-s1",
            "config_change",
            {"servers": servers[:1], "index": 3},
            "INFO",
            "agent.server.raft",
            "updating configuration",
        )
    )
    assert line.endswith(
        'updating configuration: servers="[{Suffrage:Voter ID:a1 Address:127.0.0.1:8300}]" index=3'
    )
    assert format_hclog(Event(0.0, "x", "k", {"groups": [["a"], ["b"]]})).endswith(
        'groups="[[a] [b]]"'
    )


def test_no_pseudo_node_in_log_lines():
    result = _run("03-minority-partition.toml")
    assert result.ok, result.failure
    nodes = {e.node for e in result.events.events}
    assert "cluster" not in nodes and NO_NODE in nodes
    assert nodes <= {*result.servers, SCENARIO_NODE, NO_NODE}
    hclog = render_timeline(result, hclog=True)
    assert "[cluster]" not in hclog and "node=cluster" not in hclog
    partition = next(line for line in hclog.splitlines() if "agent: partition:" in line)
    # leader first (dc1-s2 for the file's seed), then a follower; then the others
    assert partition.endswith('groups="[[dc1-s2 dc1-s1] [dc1-s3 dc1-s4 dc1-s5]]"'), partition
    assert "'" not in partition
    text = render_timeline(result)
    assert "network   partition: groups=" in text
    # Raft's configuration in the readable timeline is in Go form too.
    assert "{'" not in text and "[['" not in text


def test_live_log_lines_name_no_node_for_faults():
    from consim.live import print_events

    async def main() -> str:
        out = io.StringIO()
        events = EventLog(trio.current_time)
        print_events(events, out, "INFO")
        events.emit(NO_NODE, "partition", {"groups": [["dc1-s1"], ["dc1-s2"]]}, level="WARN")
        events.emit("dc1-s1", "role_change", {"term": 2}, message="entering candidate state")
        return out.getvalue()

    printed = trio.run(main).splitlines()
    assert printed[0].endswith('agent: partition: groups="[[dc1-s1] [dc1-s2]]"'), printed
    assert "node=dc1-s1 term=2" in printed[1]


def test_http_answers_are_whole_with_full_and_in_json():
    result = _run("01-leader-loss.toml")
    request = next(
        e
        for e in result.events.events
        if e.kind == "client_request" and e.fields["path"] == "/v1/operator/raft/configuration"
    )
    answer = request.fields["answer"]
    assert len(answer) > 300 and json.loads(answer)["Servers"]  # whole, valid JSON
    short = render_timeline(result)
    assert answer not in short and "--full or --json shows them whole" in short
    assert answer in render_timeline(result, full=True)
    requests = results_json([result])["runs"][0]["requests"]
    assert any(r["answer"] == answer for r in requests)
