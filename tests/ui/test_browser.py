"""The live /ui page in a real browser: Debian's headless Chromium driven by Playwright.

A real ``consim up`` (a subprocess, 3 servers, raft multiplier 1) on a free host block; the page
is loaded from one server and driven only through its controls (``data-action``) and read only
through its hooks (``data-server``, ``data-role``, ``data-state``): see 3 servers and one leader,
kill the leader from the page, see a new leader within 10 s, partition and heal from the page, and
check a screenshot is not blank. Playwright uses /usr/bin/chromium (it downloads no browser).
Skips locally, with the reason, when Chromium or Playwright is missing; fails when CI is set.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from headless_chromium import CHROMIUM
from live_hosts import free_host_base

HTTP_PORT = 28577
PROCESS_HTTP_PORT = 28581  # consim up --processes
LONE_HTTP_PORT = 28583  # one consim agent on its own


def _need(what: str, why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI ({why}); .ci/run installs it")
    pytest.skip(
        f"{what} not available ({why}): the /ui page is not tested in a browser on this machine. "
        "In CI (CI set) this fails instead of skipping."
    )


def _playwright() -> Any:
    if CHROMIUM is None:
        _need(
            "headless Chromium",
            "no 'chromium' on PATH and no /usr/bin/chromium; apt-get install chromium",
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("Playwright", "pip install -e '.[test]' installs it (no browser download needed)")
    return sync_playwright


class Up:
    """``consim up`` as a subprocess, its output collected."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.lines: list[str] = []
        self.url = ""  # where it says its UI is
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(pattern, line):
                    return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"no {pattern!r} in consim up's output:\n" + "\n".join(self.lines[-30:])
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._pump.join(timeout=5)


# Decodes a PNG in the page (an <img> drawn on a canvas) and counts what it shows: the share of
# sampled pixels unlike the top-left one, and how many distinct colours there are.
_PNG_COLORS = """async (b64) => {
    const img = new Image();
    img.src = "data:image/png;base64," + b64;
    await img.decode();
    const canvas = document.createElement("canvas");
    canvas.width = img.width; canvas.height = img.height;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, img.width, img.height).data;
    const colors = new Set(); let unlike = 0, n = 0;
    for (let i = 0; i < px.length; i += 4 * 7) {
        const c = (px[i] << 16) | (px[i + 1] << 8) | px[i + 2];
        colors.add(c); n++;
        if (c !== ((px[0] << 16) | (px[1] << 8) | px[2])) unlike++;
    }
    return [colors.size, unlike / n, img.width, img.height];
}"""


def png_colors(page: Any, png: bytes) -> tuple[int, float]:
    """(distinct colours, share of pixels unlike the background) of a PNG, decoded in ``page``."""
    colors, share, width, height = page.evaluate(_PNG_COLORS, base64.b64encode(png).decode())
    assert width > 0 and height > 0
    return colors, share


def test_png_colors_tells_blank_from_drawn(browser: Any) -> None:
    page = browser.new_page(viewport={"width": 200, "height": 120})
    try:
        page.set_content("<body style='margin:0;background:#fff'></body>")
        assert png_colors(page, page.screenshot()) == (1, 0.0)
        page.set_content(
            "<body style='margin:0'><div style='height:60px;background:#2e8b57'></div>"
        )
        colors, share = png_colors(page, page.screenshot())
        assert colors == 2 and 0.4 < share < 0.6
    finally:
        page.close()


@pytest.fixture(scope="module")
def browser() -> Any:
    """One headless Chromium for this module's tests (a launch costs about a second)."""
    sync_playwright = _playwright()
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _start_up(tmp_path: Path, http_port: int, extra: list[str], bases: Any = None) -> Up:
    """``consim up`` (3 servers, multiplier 1) on a free host block, once it says where the UI is."""
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    for attempt in range(3):
        # Another live cluster on this shared machine may take a free block between the check
        # and consim up's bind: then it exits at once, and the next free block is tried.
        block = (
            free_host_base([3], http_port)
            if bases is None
            else free_host_base([3], http_port, bases)
        )
        command = [sys.executable, "-m", "consim.cli", "up", "--servers", "3", *extra]
        command += ["--raft-multiplier", "1", "--http-port", str(http_port)]
        up = Up([*command, "--host-block", str(block)], env)
        try:
            up.url = up.wait_line(r"==> UI on (http://\S+/ui/)", timeout=30).group(1)
            # Agent processes serve their page once started: wait for the cluster, both modes.
            up.wait_line(r"==> dc1 has a leader", timeout=60)
            return up
        except AssertionError:
            up.stop()
            if attempt == 2 or "already in use" not in "\n".join(up.lines):
                raise
    raise AssertionError("unreachable")


def test_live_ui_kill_partition_heal_in_chromium(tmp_path: Path, browser: Any) -> None:
    up = _start_up(tmp_path, HTTP_PORT, [])
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        _drive(page, up.url, tmp_path, HTTP_PORT)
    finally:
        page.close()
        up.stop()


@pytest.mark.skipif(
    not os.environ.get("CONSIM_PROCESS_TESTS"),
    reason="set CONSIM_PROCESS_TESTS=1 (about 20 s: three agent processes; .ci/run runs it)",
)
def test_agent_processes_ui_kill_partition_heal_in_chromium(tmp_path: Path, browser: Any) -> None:
    """The same page and the same drive on ``consim up --processes``: each server a ``consim
    agent`` process serving /ui/, the page's controls acting through the supervisor (the kill a
    real SIGKILL), the page following the other agents when its own is killed."""
    up = _start_up(tmp_path, PROCESS_HTTP_PORT, ["--processes"], range(201, 229, 3))
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        _drive(page, up.url, tmp_path, PROCESS_HTTP_PORT)
        # The agent the page came from was the killed leader: it goes on through another agent,
        # and says where its controls go.
        assert "controls through consim up --processes" in page.inner_text("#mode")
        assert page.locator("button[data-reason]").count() == 0  # nothing disabled here
        # Pause is SIGSTOP: the page learns it from the supervisor (the process cannot say).
        follower = page.get_attribute('#servers .server[data-role="follower"]', "data-server")
        page.click(f'#servers [data-action="pause"][data-server="{follower}"]')
        page.wait_for_selector(
            f'#servers .server[data-server="{follower}"][data-state="paused"]', timeout=5_000
        )
        page.click(f'#servers [data-action="resume"][data-server="{follower}"]')
        page.wait_for_selector(
            f'#servers .server[data-server="{follower}"][data-state="up"]', timeout=10_000
        )
        assert "Traceback" not in "\n".join(up.lines)  # the agents' output too
    finally:
        page.close()
        up.stop()


def test_a_lone_agents_page_disables_what_it_cannot_do_in_chromium(
    tmp_path: Path, browser: Any
) -> None:
    """A ``consim agent`` started on its own (no supervisor): the page shows its server and
    offers read, write and stop; kill, pause, partition and the rest are disabled with the reason."""
    from tests.agent.helpers import AgentProc

    block = free_host_base([1], LONE_HTTP_PORT, range(202, 229, 3))
    agent = AgentProc(
        "lone", f"127.0.{block}.1", tmp_path, ["-bootstrap", f"-http-port={LONE_HTTP_PORT}"]
    )
    agent.start()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        url = f"http://{agent.host}:{LONE_HTTP_PORT}/ui/"
        deadline = time.monotonic() + 30
        while True:
            try:
                page.goto(url)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        page.wait_for_selector(
            '#servers .server[data-server="lone"][data-role="leader"]', timeout=20_000
        )
        kill = page.locator('[data-action="kill"][data-server="lone"]')
        assert kill.is_disabled() and "cannot kill another server's process" in kill.get_attribute(
            "data-reason"
        )
        for action in ("partition", "heal", "delay", "loss"):
            button = page.locator(f'#network [data-action="{action}"]')
            assert button.is_disabled() and "the network between others" in button.get_attribute(
                "title"
            )
        assert not page.locator('[data-action="stop"][data-server="lone"]').is_disabled()
        assert "Disabled here:" in page.inner_text("#ctl-note")
        assert "no supervisor" in page.inner_text("#mode")
        page.select_option("#client-server", "lone")
        page.click('#client [data-action="write"]')
        page.wait_for_function(
            "document.getElementById('client-answer').dataset.status === '200'", timeout=10_000
        )
        assert not errors, errors
    finally:
        page.close()
        agent.stop()


def _drive(page: Any, url: str, tmp_path: Path, http_port: int) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    # Only the hooks: one element per server carries data-role (its card); controls data-action.
    cards = page.locator("[data-role]")
    leader_card = page.locator('[data-role="leader"]')
    page.wait_for_function(
        "document.querySelectorAll('[data-role=\"leader\"]').length === 1", timeout=10_000
    )
    assert cards.count() == 3
    names = sorted(cards.nth(i).get_attribute("data-server") for i in range(3))
    assert names == ["dc1-s1", "dc1-s2", "dc1-s3"]
    for name in names:
        for action in ("kill", "restart", "stop", "pause", "resume", "isolate"):
            assert page.locator(f'[data-action="{action}"][data-server="{name}"]').count() == 1
    for action in ("partition", "heal", "read", "write"):
        assert page.locator(f'[data-action="{action}"]').count() == 1
    old = leader_card.get_attribute("data-server")
    # The page from the leader itself: killing it takes the page's own server away, so what
    # follows also shows the page carrying on through the control API (CORS, another origin).
    host = page.inner_text(f'[data-server="{old}"] [data-field="address"]').split(":")[0]
    own = f"http://{host}:{http_port}/ui/"
    if own != url:
        page.goto(own)
        page.wait_for_function(
            "document.querySelectorAll('[data-role=\"leader\"]').length === 1", timeout=10_000
        )
        # (On a busy machine the leadership may have moved meanwhile: kill whoever leads now.)
        old = leader_card.get_attribute("data-server")

    # Kill the leader from the page; a new one within 10 s (multiplier 1).
    page.click(f'#servers [data-action="kill"][data-server="{old}"]')
    killed = time.monotonic()
    page.wait_for_selector(
        f'#servers .server[data-server="{old}"][data-role="down"]', timeout=5_000
    )
    page.wait_for_function(
        """old => {
            const l = document.querySelectorAll('#servers .server[data-role="leader"]');
            return l.length === 1 && l[0].dataset.server !== old;
        }""",
        arg=old,
        timeout=10_000,
    )
    took = time.monotonic() - killed
    new = leader_card.get_attribute("data-server")
    assert new != old and took < 10, (old, new, took)
    page.wait_for_function("document.getElementById('connection').textContent === 'live'")
    assert (
        page.locator(f'#servers .server[data-server="{old}"]').get_attribute("data-state")
        == "killed"
    )

    # Partition the new leader from the rest, from the page's picker; then heal.
    page.select_option(f'[data-group-server="{new}"]', "B")  # the others stay in A
    page.click('[data-action="partition"]')
    page.wait_for_selector(
        f'#servers .server[data-server="{new}"][data-state="cut off"]', timeout=5_000
    )
    page.click('[data-action="heal"]')
    page.wait_for_function(
        "document.querySelectorAll('#servers .server[data-state=\"cut off\"]').length === 0",
        timeout=5_000,
    )
    # A write through the page's client, to the current leader: Consul's answer is shown.
    page.wait_for_function(
        "document.querySelectorAll('#servers .server[data-role=\"leader\"]').length === 1",
        timeout=10_000,
    )
    page.select_option("#client-server", "leader")
    # Right after a heal the leader the page shows may be losing its leadership on this busy
    # machine (an answer of 500 "No cluster leader", or a timeout): a learner writes again.
    answers = []
    for _ in range(3):
        page.evaluate("delete document.getElementById('client-answer').dataset.status")
        page.click('#client [data-action="write"]')
        with contextlib.suppress(Exception):  # no answer yet: the answers list says so
            page.wait_for_function(
                "document.getElementById('client-answer').dataset.status !== undefined",
                timeout=15_000,
            )
        answers.append(page.inner_text("#client-answer") + " " + page.inner_text("#ctl-error"))
        if page.get_attribute("#client-answer", "data-status") == "200":
            break
    assert page.get_attribute("#client-answer", "data-status") == "200", answers
    assert "true" in page.inner_text("#client-answer")
    assert page.locator("#log div").count() > 5  # Consul's log lines arrived

    png = page.screenshot()
    (tmp_path / "ui.png").write_bytes(png)
    colors, share = png_colors(page, png)
    assert colors > 20 and share > 0.02, (colors, share)
    assert not errors, errors
    print(f"new leader {new} shown {took:.2f}s after killing {old} from the page")


def test_replay_plays_steps_and_scrubs_in_chromium(tmp_path: Path, browser: Any) -> None:
    """The replay of scenario 01 (virtual time) in the browser: step to the kill's step and see
    its note, play to the end and see the new leader, scrub back to a time before any leader."""
    import io

    from consim.scenario.cli import run_files

    root = Path(__file__).resolve().parents[2]
    html, data = tmp_path / "replay.html", tmp_path / "replay.json"
    scenario = str(root / "scenarios" / "01-leader-loss.toml")
    assert run_files([scenario], ui_path=str(html), out=io.StringIO()) == 0
    # The same run's data as `--ui FILE.json` writes it (tests/ui/test_replay.py runs that path).
    inline = re.search(r"window\.CONSIM_REPLAY=(.*?);</script>", html.read_text(), re.S)
    data.write_text(inline.group(1).replace("<\\/", "</"))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html.as_uri())
        assert page.locator("#servers .server[data-server]").count() == 3
        assert page.locator("#servers [data-action]").count() == 0  # nothing to control
        # The next event: the first log line after 0, still in step 1.
        page.click('[data-replay="step"]')
        assert page.inner_text("#replay-time") != "t = 0.000 s"
        assert page.get_attribute("#note", "data-step") == "1"
        # Steps with their notes: the third step kills the leader.
        shown = []
        for _ in range(5):
            shown.append(page.get_attribute("#note", "data-step"))
            if shown[-1] == "3":
                break
            page.click('[data-replay="next-step"]')
        assert shown == ["1", "2", "3"], shown  # one step at a time, in order
        assert page.inner_text("#note").startswith("step 3: kill leader")
        page.wait_for_selector('#servers .server[data-role="down"][data-state="killed"]')
        killed = page.get_attribute('#servers .server[data-role="down"]', "data-server")
        # Play at 1x for a moment, pause: the clock stops where it was.
        before = page.inner_text("#replay-time")
        page.click('[data-replay="play"]')
        page.wait_for_function(f"document.getElementById('replay-time').textContent !== '{before}'")
        page.click('[data-replay="play"]')
        assert page.get_attribute('[data-replay="play"]', "data-playing") == "false"
        paused_at = page.inner_text("#replay-time")
        page.wait_for_timeout(300)
        assert page.inner_text("#replay-time") == paused_at != before
        # Faster, on to the new leader.
        page.select_option("#replay-speed", "5")
        page.click('[data-replay="play"]')
        page.wait_for_function(
            """k => { const l = document.querySelectorAll('#servers .server[data-role="leader"]');
                      return l.length === 1 && l[0].dataset.server !== k; }""",
            arg=killed,
            timeout=10_000,
        )
        page.locator("#replay-scrub").fill("0")
        page.wait_for_function(
            "document.querySelectorAll('#servers .server[data-role=\"leader\"]').length === 0"
        )
        assert page.locator("#log div.future").count() > 0  # later lines dimmed, not gone
        # The same run's JSON, opened in the page.
        page.set_input_files("#replay-file", str(data))
        page.wait_for_function("document.body.dataset.loaded === 'file'")
        assert page.locator("#servers .server[data-server]").count() == 3
        assert page.get_attribute("#note", "data-step") == "1"  # from the start
        page.click('[data-replay="next-step"]')
        assert page.get_attribute("#note", "data-step") == "2"  # one step: one set of controls
        assert not errors, errors
    finally:
        page.close()
