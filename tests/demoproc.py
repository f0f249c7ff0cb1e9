"""`python -m tools.demo` as the make targets run it, in a directory of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_demo(
    args: list[str], work: Path, first_octet: int, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """One node on 127.0.0.<first_octet + CASSY_TEST_IP_OFFSET>; must exit 0."""
    offset = int(os.environ.get("CASSY_TEST_IP_OFFSET", "0"))
    env = {
        **os.environ,
        "DEMO_DIR": str(work),
        "DEMO_NODES": "1",
        "DEMO_FIRST_OCTET": str(first_octet + offset),
        **(extra_env or {}),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tools.demo", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    return done


def left_running(work: Path) -> list[str]:
    """PIDs of processes whose command line still names the demo's directory."""
    found = subprocess.run(["pgrep", "-f", str(work)], capture_output=True, text=True, check=False)
    return found.stdout.split()
