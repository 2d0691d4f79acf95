"""Debian's headless Chromium for the tests that render a page (reports, the check report).

Import it from a test module as ``from headless_chromium import chromium`` (pytest puts ``tests/``
on ``sys.path``: it has no ``__init__.py``). Where Chromium is missing the test skips with the
reason, except in CI (``CI`` set), where it fails: ``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
)


def chromium(tmp_path: Path, *args: str, what: str = "the HTML report") -> str:
    """Run headless Chromium with ``args`` (e.g. ``--dump-dom URL``) in a fresh profile; its stdout."""
    if CHROMIUM is None:
        where = "no 'chromium' on PATH and no /usr/bin/chromium"
        if os.environ.get("CI"):
            pytest.fail(f"headless Chromium is required in CI ({where}); .ci/run installs it")
        pytest.skip(
            f"headless Chromium not found ({where}): {what} is not rendered in a browser on this "
            "machine; install Debian's chromium package (apt-get install -y chromium) to run this "
            "check. In CI (CI set) this fails instead of skipping."
        )
    # The background-networking flags: this machine's closed network refuses Chromium's own
    # connections, many at a time, without them.
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    return proc.stdout
