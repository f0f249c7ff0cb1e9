"""`make demo` in its short mode: every job type succeeds on real parts, every outcome is
mailed to the demo's real SMTP sink, and everything stops."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest

from tests.demoproc import left_running, run_demo

pytestmark = pytest.mark.cassandra


def test_short_demo_runs_every_job_type_mails_and_stops_what_it_started(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    done = run_demo([], demo_dir, 41, {"DEMO_SECONDS": "110"})
    assert "succeeded job types: cluster-wide, incremental, snapshot" in done.stdout
    # Progress while Cassandra starts and the sample data is written, not silence.
    assert re.search(r"node1 \(127\.0\.0\.\d+\) serves CQL after \d+ s \(1 of 1\)", done.stdout)
    assert "sample orders written: 1000 of 1000" in done.stdout
    assert f"mails: {demo_dir / 'mail'} (one .eml file per notification" in done.stdout

    mails = sorted((demo_dir / "mail").glob("*.eml"))
    assert mails, f"no .eml file in {demo_dir / 'mail'}"
    # Counted when the run is judged; the scheduler's last notices may land while it stops.
    received = re.search(
        rf"received mails: (\d+) in {re.escape(str(demo_dir / 'mail'))}\n", done.stdout
    )
    assert received is not None, done.stdout[-3000:]
    assert 1 <= int(received.group(1)) <= len(mails)
    assert not list((demo_dir / "mail").glob(".*.tmp")), "a mail was left half written"
    subjects = [
        str(email.message_from_bytes(m.read_bytes(), policy=email.policy.default)["Subject"])
        for m in mails
    ]
    # As the notifier words it: "OK snapshot demo: 1 of 1 node completed".
    assert any(s.startswith("OK ") and "1 of 1 node completed" in s for s in subjects), subjects

    assert left_running(demo_dir) == []
