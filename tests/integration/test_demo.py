"""`make demo` in its short mode: every job type succeeds on real parts, everything stops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_short_demo_runs_every_job_type_and_stops_what_it_started(tmp_path: Path) -> None:
    offset = int(os.environ.get("CASSY_TEST_IP_OFFSET", "0"))
    env = {
        **os.environ,
        "DEMO_DIR": str(tmp_path / "demo"),
        "DEMO_NODES": "1",
        "DEMO_SECONDS": "150",
        "DEMO_FIRST_OCTET": str(41 + offset),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tools.demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded job types: cluster-wide, incremental, snapshot" in done.stdout
    leftover = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftover == [], f"processes left running: {leftover}"
