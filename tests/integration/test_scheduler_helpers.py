"""Helpers for the scheduler's end-to-end tests: config files, the daemon as a real process,
and reading the run history it writes. No tests live here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cassy_scheduler.client import BackupAck, CassyClient
from cassy_scheduler.history import RunHistory
from cassy_scheduler.outcome import wait_for_backup
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.records import RunRecord

REPO = Path(__file__).resolve().parents[2]
PROGRAM = [sys.executable, "-m", "cassy_scheduler"]
SHIMS = REPO / "contrib" / "cron"


def write_config(work: Path, address: str, jobs: str, scheduler: str = "") -> Path:
    path = work / "scheduler.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [scheduler]
            state_dir = "state"
            reload_poll = "1s"
            {scheduler}

            [server]
            address = "{address}"
            call_deadline = "60s"

            [defaults]
            poll_interval = "1s"
            wait_timeout = "5m"
            retries = 2
            retry_backoff = "1s"
            """
        )
        + textwrap.dedent(jobs),
        encoding="utf-8",
    )
    return path


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PROGRAM, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def runs(config: Path) -> list[RunRecord]:
    """Every recorded run, oldest first."""
    path = config.parent / "state" / "history.sqlite"
    if not path.exists():
        return []
    with RunHistory.open_read_only(path) as history:
        return list(reversed(history.list_runs(limit=1000)))


def wait_for(what: str, condition: Callable[[], bool], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.2)


def instant(seconds_from_now: float) -> tuple[datetime, str]:
    """A moment a few seconds ahead, and a 6-field cron line naming exactly it (UTC)."""
    moment = (datetime.now(UTC) + timedelta(seconds=seconds_from_now)).replace(microsecond=0)
    line = f"{moment.second} {moment.minute} {moment.hour} {moment.day} {moment.month} *"
    return moment, line


def settle(client: CassyClient, snapshot_id: str) -> None:
    """Wait for the server to finish a backup the scheduler stopped waiting for."""
    rows = client.list_backups(snapshot_id=snapshot_id)
    ack = BackupAck(
        OperationStatus.STARTED,
        rows[0].cluster_id,
        (),
        snapshot_id,
        rows[0].created_at,
        rows[0].created_at_ms,
        BackupType.NODE_SNAPSHOT,
    )
    wait_for_backup(client, ack, timeout_s=300, poll_interval_s=0.5)


def fire_soon(config: Path, seconds: float = 10, job: str = "snap") -> None:
    """Reschedule `job` to fire once, `seconds` from now; the running daemon reloads."""
    _, line = instant(seconds)
    done = cli("schedule", job, line, "--config", str(config))
    assert done.returncode == 0, done.stderr


@dataclass
class DaemonProcess:
    """`cassy-scheduler run` as a real process, its log in a file."""

    config: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.config.parent / "daemon.log"

    def start(self) -> DaemonProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*PROGRAM, "run", "--config", str(self.config), "--log-level", "DEBUG"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        wait_for("the daemon to start", lambda: "scheduler started" in self.output(), 60)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, signum: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout_s: float = 120) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
