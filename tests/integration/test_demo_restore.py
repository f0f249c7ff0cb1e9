"""`make demo-restore` on one node: a node's data is lost and the restore brings every row
back, through the real CLI, server and Cassandra; nothing is left running."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.demoproc import left_running, run_demo

pytestmark = pytest.mark.cassandra


def test_restore_tour_brings_back_every_row_and_stops_what_it_started(tmp_path: Path) -> None:
    done = run_demo(["restore"], tmp_path / "restore", 44)
    counts = re.search(r"rows before: (\d+), after wipe: (.+), after restore: (\d+)", done.stdout)
    assert counts is not None, done.stdout[-3000:]
    before, after_wipe, after_restore = counts.groups()
    assert before == after_restore == "1200"
    # One node, replication factor 1: nothing is readable until the restore.
    assert after_wipe.startswith("0 readable"), after_wipe

    assert left_running(tmp_path / "restore") == []
