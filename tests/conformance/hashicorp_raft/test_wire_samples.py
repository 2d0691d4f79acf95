"""The byte strings consim's codec tests use are what hashicorp/raft 1.1.2 itself encodes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conformance.gobuild import build
from tests.raft.test_hashicorp_wire import GO


def test_codec_fixtures_match_the_go_encoder() -> None:
    binary = build(Path(__file__).parent / "wire_samples", "github.com/hashicorp/raft")
    out = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60, check=True)
    printed = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    printed["big_data_prefix"] = printed.pop("big_data")
    for name, hex_bytes in GO.items():
        assert printed[name] == hex_bytes, name
