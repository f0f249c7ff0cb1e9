"""`make demo-restore` on one node: a node's data is lost and the restore brings every row
back, through the real CLI, server and Cassandra; nothing is left running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.cassandra


def test_restore_tour_brings_back_every_row_and_stops_what_it_started(tmp_path: Path) -> None:
    offset = int(os.environ.get("CASSY_TEST_IP_OFFSET", "0"))
    env = {
        **os.environ,
        "DEMO_DIR": str(tmp_path / "restore"),
        "DEMO_NODES": "1",
        "DEMO_FIRST_OCTET": str(44 + offset),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tools.demo", "restore"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    counts = re.search(r"rows before: (\d+), after wipe: (.+), after restore: (\d+)", done.stdout)
    assert counts is not None, done.stdout[-3000:]
    before, after_wipe, after_restore = counts.groups()
    assert before == after_restore == "1200"
    # One node, replication factor 1: nothing is readable until the restore.
    assert after_wipe.startswith("0 readable"), after_wipe

    leftover = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "restore")], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftover == [], f"processes left running: {leftover}"
