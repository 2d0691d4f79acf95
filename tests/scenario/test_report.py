"""The HTML report's content, checked against the run's events and in headless Chromium.

The model (what the page draws) is checked against the event log directly; the page itself is
rendered by Chromium (its script draws the SVG) and the DOM it dumps is parsed: step markers
must not overlap, short leader tenures must stay visible, the message diagram must show the
election's votes, Consul's log lines must be there.
"""

from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from headless_chromium import chromium

from consim.scenario.cli import run_files
from consim.scenario.model import load_scenario
from consim.scenario.report import render_report
from consim.scenario.report_model import model, segments
from consim.scenario.runner import SCENARIO_NODE, run_scenario

ROOT = Path(__file__).resolve().parents[2]


class Elements(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[tuple[str, dict[str, str]]] = []
        self.stack: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        # The enclosing group's classes ride along (a step box belongs to its step-result g).
        a["_parents"] = " ".join(p[1].get("class", "") for p in self.stack)
        self.items.append((tag, a))
        if tag not in ("input", "meta", "br"):
            self.stack.append((tag, a))

    def handle_endtag(self, tag: str) -> None:
        if any(t == tag for t, _ in self.stack):
            while self.stack.pop()[0] != tag:
                pass

    def of(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.items if t == tag and cls in a.get("class", "").split()]


def _parse(dom: str) -> Elements:
    p = Elements()
    p.feed(dom)
    return p


def _run(name: str, **kw):
    return run_scenario(load_scenario(ROOT / "scenarios" / f"{name}.toml"), **kw)


# ---- terms through pre-vote -------------------------------------------------------------------
def test_terms_follow_term_change_events_through_pre_vote():
    """03: the deposed leader on the minority side keeps starting pre-vote rounds. Its candidate
    line says "term N+1" (what it asks for) but its term never moves: the report must label each
    segment with the term the server was in (its term_change events), pre-vote rounds included."""
    result = _run("03-minority-partition")
    segs = segments(result)
    prevotes = 0
    for name, lane in segs.items():
        changes = [
            (e.time, e.fields["term"])
            for e in result.events.events
            if e.node == name and e.kind == "term_change"
        ]
        asked = [
            (e.time, e.fields["term"])
            for e in result.events.events
            if e.node == name and e.kind == "role_change" and "[Candidate]" in str(e.fields)
        ]
        for seg in lane:
            if seg["role"] in ("down",):
                continue
            held = [term for t, term in changes if t <= seg["s"] + 1e-6]
            assert held and seg["term"] == held[-1], (name, seg, changes)
            if seg["prevote"]:
                prevotes += 1
                # The candidate line of this round asked for one more than the term it holds.
                wish = [term for t, term in asked if abs(t - seg["s"]) < 1e-6]
                assert wish == [seg["term"] + 1], (name, seg, asked)
    assert prevotes >= 2  # the minority's pre-vote rounds, at least one each


# ---- recording --------------------------------------------------------------------------------
def test_recording_messages_keeps_the_trace_hash_and_sees_the_election():
    plain = _run("01-leader-loss")
    recorded = _run("01-leader-loss", record=True)
    assert recorded.trace_hash == plain.trace_hash
    messages = recorded.recorder.messages()
    assert all(m["due"] >= m["t"] for m in messages)
    # Every election in the log has its vote requests on the wire, to every other server.
    wins = [e for e in plain.events.events if e.kind == "election_won"]
    assert len(wins) == 2
    for win in wins:
        term = win.fields["term"]
        asked = {
            m["to"]
            for m in messages
            if m["from"] == win.node and m["label"].startswith(f"vote request term {term} ")
        }
        others = {n for n in plain.servers if n != win.node}
        assert asked == others, (win.node, term, asked)
        pre = [
            m
            for m in messages
            if m["from"] == win.node and m["label"].startswith(f"pre-vote request term {term} ")
        ]
        assert pre and min(m["t"] for m in pre) <= win.time


@pytest.mark.parametrize("name", ["03-minority-partition", "09-gossip-key-rotation"])
def test_a_recorded_run_has_its_pinned_trace_hash(name):
    """Messages dropped by a partition (03) and gossip under encryption (09) pass the tap too."""
    from tests.scenario.test_trace_pins import RUN_PINS

    result = _run(name, record=True)
    assert result.recorder.frames
    assert result.trace_hash == RUN_PINS[f"scenarios/{name}.toml"]["trace_hash"]


def test_commit_index_rises_only_on_the_majority_side_of_a_partition():
    result = _run("03-minority-partition", record=True)
    assert any(m["lost"] for m in result.recorder.messages())  # the partition drops some
    commits = result.recorder.commit_series()
    part = next(e for e in result.events.events if e.kind == "partition")
    heal = next(e for e in result.events.events if e.kind == "heal")
    groups = part.fields["groups"]
    minority = min(groups, key=len)
    majority = max(groups, key=len)

    def at(name: str, t: float) -> int:
        return max([c for tt, c in commits[name] if tt <= t], default=0)

    for name in majority:
        assert at(name, heal.time) > at(name, part.time), (name, commits[name])
    # The minority learns at most what its leader had committed when the partition began
    # (times are rounded to the microsecond: a commit at the partition instant counts).
    known = max(at(name, part.time + 1e-5) for name in minority)
    for name in minority:
        assert at(name, heal.time - 1e-5) <= known, (name, commits[name])


# ---- the page in Chromium ---------------------------------------------------------------------
def _dom(tmp_path: Path, page: str, view: tuple[float, float] | None = None) -> str:
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    url = path.as_uri() + (f"#view={view[0]},{view[1]}" if view else "")
    dom = chromium(tmp_path, "--dump-dom", url, what="the HTML report")
    assert 'id="timeline"' in dom, dom[:500]
    return dom


def _boxes_overlap(a: dict[str, str], b: dict[str, str]) -> bool:
    ax, ay, aw, ah = (float(a[k]) for k in ("x", "y", "width", "height"))
    bx, by, bw, bh = (float(b[k]) for k in ("x", "y", "width", "height"))
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def test_page_in_chromium_markers_tenures_messages_logs(tmp_path):
    """01, whole run: 8 steps, four of them within a few ms; the killed leader's 7.6 ms tenure.
    Then zoomed on the second election: its votes on the message diagram, its log lines."""
    result = _run("01-leader-loss", record=True)
    page = render_report(result)
    assert not re.search(
        r"<script[^>]+src=|<link[^>]+href=|https?://(?!www\.w3\.org/2000/svg)", page
    )
    els = _parse(_dom(tmp_path, page))
    assert [a["data-server"] for a in els.of("g", "lane")] == ["dc1-s1", "dc1-s2", "dc1-s3"]
    boxes = [a for a in els.of("rect", "step-box")]
    assert len(boxes) == len(result.steps)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not _boxes_overlap(a, b), (a, b)
    # Short leader tenures: drawn at least 3 px wide and flagged.
    leaders = [a for a in els.of("rect", "segment") if a["data-role"] == "leader"]
    assert leaders and all(float(a["width"]) >= 3 for a in leaders)
    data = model(result)
    short = [
        s
        for lane in data["segments"].values()
        for s in lane
        if s["role"] == "leader" and s["e"] - s["s"] < 0.02
    ]
    assert len(els.of("path", "short-tenure")) == len(short) >= 1
    # Zoom on the second election: its vote requests and answers, and its log lines.
    win = [e for e in result.events.events if e.kind == "election_won"][-1]
    start = win.time - 0.05
    els = _parse(_dom(tmp_path, page, (start, win.time + 0.05)))
    votes = els.of("line", "vote")
    assert len(votes) >= 4  # pre-vote and vote requests to the other survivor, and answers
    dom = _dom(tmp_path, page, (start, win.time + 0.05))
    assert "election won" in dom and "entering leader state" in dom
    # Zoomed: only the steps in the window have a box, and still none overlaps another.
    boxes = _parse(dom).of("rect", "step-box")
    inside = [st for st in result.steps if start <= st.started <= win.time + 0.05]
    assert len(boxes) == len(inside) >= 1
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not _boxes_overlap(a, b), (a, b)
    # The zoomed window's term labels: the winner leads in the term of its election.
    zoomed = [
        a
        for a in _parse(dom).of("rect", "segment")
        if a["data-role"] == "leader" and "lane" in a["_parents"].split()
    ]
    assert any(a["data-term"] == str(win.fields["term"]) for a in zoomed), zoomed


def test_report_dir_writes_one_page_per_scenario_and_an_index(tmp_path):
    files = [
        str(ROOT / "scenarios" / f) for f in ("01-leader-loss.toml", "05-remove-dead-peer.toml")
    ]
    out = io.StringIO()
    folder = tmp_path / "reports"
    code = run_files(files, report_path=str(folder), out=out, err=io.StringIO())
    assert code == 0, out.getvalue()
    index = (folder / "index.html").read_text()
    links = re.findall(r'<a href="([^"]+)">', index)
    assert links == [f"{Path(f).stem}-seed-{load_scenario(f).seed}.html" for f in files]
    for link, f in zip(links, files, strict=True):
        page = (folder / link).read_text()
        data = json.loads(
            re.search(r'<script type="application/json" id="run-data">(.*?)</script>', page, re.S)
            .group(1)
            .replace("<\\/", "</")
        )
        assert data["name"] == load_scenario(f).name
        assert data["messages"], "a virtual run's page carries its messages"
        assert 'href="index.html"' in page
    # --seeds picks the last seed of each scenario (none failed) and records it again.
    folder2 = tmp_path / "seeds"
    code = run_files(
        files[:1], seeds=range(1, 3), report_path=str(folder2), out=io.StringIO(), err=io.StringIO()
    )
    assert code == 0
    assert (folder2 / "01-leader-loss-seed-2.html").exists()


def test_note_events_fill_the_steps_table():
    result = _run("01-leader-loss")
    data = model(result)
    notes = {
        e.fields["step"]: e.fields["text"]
        for e in result.events.events
        if e.node == SCENARIO_NODE and e.kind == "note"
    }
    assert notes and {s["n"]: s["note"] for s in data["steps"] if s["note"]} == notes


def test_keyring_lane_ends_where_the_keyring_list_does():
    """09 ends with one key everywhere (its last keyring -list says so): folding the lane's
    changes from the file's key must give every server, in both pools, that key alone."""
    import base64

    from consim.gossip.keyring import fingerprint

    result = _run("09-gossip-key-rotation")
    rings = model(result)["keyrings"]
    assert rings["initial"] == fingerprint(base64.b64decode(result.scenario.cluster.encrypt))
    state = {
        (n, p): ({rings["initial"]}, rings["initial"])
        for n in result.servers
        for p in ("lan", "wan")
    }
    for c in rings["changes"]:
        keys, primary = state[(c["server"], c["pool"])]
        if c["op"] == "install":
            keys = keys | {c["key"]}
        elif c["op"] == "use":
            primary = c["key"]
        else:
            keys = keys - {c["key"]}
        state[(c["server"], c["pool"])] = (keys, primary)
    new = fingerprint(base64.b64decode("F7/pxo9AkvP7GPjhmuRFKWLlDbO5EZyrD2KpD/LWzeU="))
    assert all(v == ({new}, new) for v in state.values()), state
