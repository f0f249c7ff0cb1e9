"""Builders for notification tests: configs with targets, run results, a recording sender."""

from __future__ import annotations

import textwrap
import threading
from datetime import timedelta
from pathlib import Path

from cassy_scheduler.config.loader import parse_config
from cassy_scheduler.config.model import SchedulerConfig
from cassy_scheduler.config.targets import NotifyTarget
from cassy_scheduler.jobtype import JobType
from cassy_scheduler.notify import DeliveryError
from cassy_scheduler.notify.notice import Notice
from cassy_scheduler.protocol.types import NodeStatus, OperationStatus
from cassy_scheduler.records import Failure, Outcome, RunResult
from tests.unit.fakes import T0

NODES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def config(
    tmp_path: Path, targets: str, job_extra: str = 'notify = ["mail"]', scheduler: str = ""
) -> SchedulerConfig:
    text = textwrap.dedent(
        f"""\
        [scheduler]
        state_dir = "state"
        {scheduler}

        [jobs.nightly]
        type = "snapshot"
        cluster_name = "prod-cluster"
        schedule = "30 0 * * *"
        """
    )
    text += job_extra + "\n\n" + textwrap.dedent(targets)
    path = tmp_path / "scheduler.toml"
    path.write_text(text, encoding="utf-8")
    return parse_config(text, path)


def result(
    outcome: Outcome = Outcome.SUCCEEDED,
    *,
    run_id: int | None = 1,
    failed: tuple[str, ...] = (),
    failure: Failure | None = None,
    error: str | None = None,
) -> RunResult:
    nodes = tuple(
        NodeStatus(ip, OperationStatus.FAILED if ip in failed else OperationStatus.COMPLETED)
        for ip in NODES
    )
    if failed and failure is None:
        failure = Failure.NODES_FAILED
        error = error or f"the backup failed on node(s) {', '.join(failed)}"
    return RunResult(
        job_name="nightly",
        job_type=JobType.SNAPSHOT,
        scheduled_for=T0,
        outcome=outcome,
        run_id=run_id,
        cluster_id="prod-cluster-1",
        cluster_name="prod-cluster",
        snapshot_id="snap-42",
        started_at=T0,
        finished_at=T0 + timedelta(minutes=3, seconds=7),
        nodes=nodes if outcome in (Outcome.SUCCEEDED, Outcome.FAILED) else (),
        error=error,
        failure=failure,
        attempts=1,
    )


class RecordingSender:
    """Keeps every notice; fails the first `fail_first` attempts."""

    def __init__(self, fail_first: int = 0) -> None:
        self.notices: list[tuple[str, Notice]] = []
        self.attempts = 0
        self.fail_first = fail_first
        self._lock = threading.Lock()

    def factory(self, target: NotifyTarget) -> RecordingSender:
        self.target = target.name
        return self

    def describe(self) -> str:
        return "recording"

    def send(self, notice: Notice) -> None:
        with self._lock:
            self.attempts += 1
            if self.attempts <= self.fail_first:
                raise DeliveryError(f"attempt {self.attempts} refused")
            self.notices.append((self.target, notice))
