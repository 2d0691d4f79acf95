"""The check report: self-contained, one lane per client, the window highlighted; it renders in
headless Chromium (skipped locally without it, a failure in CI)."""

from __future__ import annotations

import json
import random
import re

from headless_chromium import chromium

from consim.check.history import History
from consim.check.linearizability import check_linearizable
from consim.check.report import render_check_report
from consim.check.synthetic import linearizable_history

from .helpers import history


def _stale(ops: int, seed: int) -> History:
    """A generated linearizable history with one read made stale by three writes, faults on."""
    h = linearizable_history(random.Random(seed), ops=ops, keys=3, clients=5, nemesis=True)
    events = h.events
    i = next(
        i for i, e in enumerate(events) if e.f == "read" and e.type == "ok" and i > len(events) // 2
    )
    writes = [
        e.value for e in events[:i] if e.f == "write" and e.type == "ok" and e.key == events[i].key
    ]
    events[i].value = writes[-4]
    return h


def _page(h: History, **extra) -> tuple[str, dict]:
    result = {"linearizability": check_linearizable(h).to_json(), **extra}
    return render_check_report(h, result, title="consim check <seed 7>"), result


def test_report_is_self_contained_and_lists_the_window():
    h = _stale(400, 7)
    invariants = {
        "election_safety": {"ok": True, "checked": 12, "violations": [], "note": ""},
        "monotonic_indexes": {"ok": False, "checked": 40, "violations": ["dc1-s2 commit 9 -> 7"]},
    }
    page, result = _page(h, seed=7, invariants=invariants)
    lin = result["linearizability"]
    assert lin["verdict"] == "invalid"
    assert "<link" not in page and "src=" not in page
    assert "http" not in page.replace('"http://www.w3.org/2000/svg"', "").replace(
        "'http://www.w3.org/2000/svg'", ""
    )
    assert "consim check &lt;seed 7&gt;" in page  # titles are escaped
    # the static overview: one mark per operation, the faults and the window band
    overview = page[page.index('<svg id="overview"') : page.index("</svg>")]
    assert overview.count("<rect x=") == len(h.operations())
    assert overview.count('class="fault"') == 1 and 'class="window-band"' in overview
    # the window as a list, in the checker's words
    listed = re.findall(r"<li><code>(.*?)</code>", page)
    assert len(listed) == len(lin["window"]) >= 2
    assert listed[-1].startswith(f"#{lin['window'][-1]['index']} ")
    assert "seed 7" in page
    assert "holds (12 checked)" in page and "VIOLATED (40 checked)" in page
    assert "<li>dc1-s2 commit 9 -&gt; 7</li>" in page
    assert 'id="overall"' not in page  # no "verdict" in this result: nothing to add
    page = render_check_report(h, {**result, "verdict": "invalid"}, title="t")
    assert "run: <b>invalid</b> (invariants broken: monotonic_indexes)" in page


def test_a_client_that_continues_as_a_new_process_keeps_its_lane():
    # Jepsen's convention: after an info operation the client goes on as a fresh process
    h = history(
        (0, "write", "k", "a", 0, 1, "info"),
        (1, "read", "k", None, 0.5, 1.5, "ok", None),
        (2, "write", "k", "b", 1.2, 2, "ok"),  # client 0 again, as process 2
        (1, "read", "k", None, 2.5, 3, "ok", "b"),
        (3, "read", "k", None, 1.6, 4, "ok", "b"),  # a third, overlapping client
    )
    page, _ = _page(h)
    data = page[page.index('id="data">') + 10 : page.index("</script>")]
    assert json.loads(data)["lanes"] == [[0, 2], [1], [3]]
    assert "4 client processes in 3 lanes" in page


def test_the_window_shows_which_server_answered():
    h = History()
    h.invoke(0, "write", "k", 1, 0.0, server="dc1-s1")
    h.complete(0, "ok", 1, 1.0)
    h.invoke(0, "write", "k", 2, 2.0, server="dc1-s1")
    h.complete(0, "ok", 2, 3.0)
    h.invoke(1, "read", "k", None, 4.0, server="dc1-s3", consistency="stale")
    h.complete(1, "ok", 1, 5.0, index=7)
    page, result = _page(h)
    assert result["linearizability"]["verdict"] == "invalid"
    assert "server=dc1-s3 consistency=stale index=7</span></li>" in page


def test_values_cannot_break_out_of_the_page():
    h = history(
        (0, "write", "k", "</script><b>x", 0, 1, "ok"),
        (1, "read", "k", None, 2, 3, "ok", "</script><b>x"),
    )
    page, _ = _page(h)
    assert "</script><b>" not in page


def test_report_renders_in_chromium_with_a_lane_per_client(tmp_path):
    h = _stale(2000, 11)
    page, result = _page(h)
    window = result["linearizability"]["window"]
    path = tmp_path / "check.html"
    path.write_text(page, encoding="utf-8")
    dom = chromium(tmp_path, "--dump-dom", path.as_uri(), what="the check report")
    assert 'id="timeline"' in dom, dom[:500]
    lanes = re.findall(r'class="lane" data-processes="([\d ]+)"', dom)
    assert lanes == ["0", "1", "2", "3", "4"]
    # it opens on the window, filtered to the failing key: every window op drawn and outlined
    drawn = re.findall(r'class="op (ok|fail|info)( in-window)?"[^>]*data-index="(\d+)"', dom)
    assert sorted(int(i) for _, w, i in drawn if w) == sorted(w["index"] for w in window)
    key = result["linearizability"]["failing_key"]
    ops = {op.index: op for op in h.operations()}
    assert drawn and all(ops[int(i)].key == key for _, _, i in drawn)
    assert 'class="window-band"' in dom and 'class="badge"' in dom
    png = tmp_path / "shot.png"
    chromium(
        tmp_path,
        "--window-size=1200,900",
        f"--screenshot={png}",
        path.as_uri(),
        what="the check report",
    )
    assert png.exists() and png.stat().st_size > 10_000
