"""The record of a run as everything after the run sees it: how it ended, with every node.

The runner makes these, the history stores them, and notifications, metrics and the CLI read
them; none of those needs the others to do so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from cassy_scheduler.jobtype import JobType
from cassy_scheduler.protocol.types import BackupType, NodeStatus, OperationStatus


class Outcome(StrEnum):
    """How a run ended; RUNNING until it does."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"

    @property
    def is_final(self) -> bool:
        return self is not Outcome.RUNNING


class Failure(StrEnum):
    """Why a run did not succeed, in words a notifier or an exit code can branch on."""

    UNREACHABLE = "unreachable"  # transient errors outlasted the retries
    REFUSED = "refused"  # the server answered with an error that retrying cannot fix
    UNKNOWN_CLUSTER = "unknown-cluster"
    NO_BASE_SNAPSHOT = "no-base-snapshot"
    BASE_SNAPSHOT_FAILED = "base-snapshot-failed"
    NODES_FAILED = "nodes-failed"
    TIMED_OUT = "timed-out"
    ALREADY_RUNNING = "already-running"  # the same job was still running
    CLUSTER_BUSY = "cluster-busy"  # another run held the cluster for the whole wait
    MISSED = "missed"  # due while the scheduler could not run it
    STOPPED = "stopped"  # the scheduler stopped
    LOCAL = "local"  # this machine: state directory, lock files, a bug
    NOT_DELETED = "not-deleted"  # a prune could not delete some backups it should have


@dataclass(frozen=True)
class RunStart:
    """A run that has just been recorded and is about to do its work."""

    run_id: int
    job_name: str
    job_type: JobType
    scheduled_for: datetime
    started_at: datetime


@dataclass(frozen=True)
class RunResult:
    """How one run of one job ended, with everything a person needs to follow it up."""

    job_name: str
    job_type: JobType
    scheduled_for: datetime
    outcome: Outcome
    run_id: int | None = None
    cluster_id: str | None = None
    cluster_name: str | None = None
    snapshot_id: str | None = None
    base_snapshot_id: str | None = None
    base_snapshot_taken: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    nodes: tuple[NodeStatus, ...] = ()
    error: str | None = None
    failure: Failure | None = None
    attempts: int = 0
    summary: str | None = None  # what a run without nodes did (a prune's counts)

    @property
    def succeeded(self) -> bool:
        return self.outcome is Outcome.SUCCEEDED

    @property
    def failed_nodes(self) -> tuple[str, ...]:
        return tuple(n.target_ip for n in self.nodes if n.status is OperationStatus.FAILED)

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-ready values, for --json output and hooks."""
        return {
            "run_id": self.run_id,
            "job": self.job_name,
            "type": self.job_type.value,
            "outcome": self.outcome.value,
            "failure": self.failure.value if self.failure else None,
            "cluster_id": self.cluster_id,
            "cluster_name": self.cluster_name,
            "snapshot_id": self.snapshot_id,
            "base_snapshot_id": self.base_snapshot_id,
            "base_snapshot_taken": self.base_snapshot_taken,
            "scheduled_for": self.scheduled_for.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "attempts": self.attempts,
            "error": self.error,
            "summary": self.summary,
            "nodes": [
                {"node": n.target_ip, "status": n.status.name, "reason": n.reason}
                for n in self.nodes
            ],
        }


class RunObserver(Protocol):
    """Told when runs start and end; notifications and metrics implement this."""

    def run_started(self, start: RunStart) -> None: ...

    def run_finished(self, result: RunResult) -> None: ...


@dataclass(frozen=True)
class BackupRequest:
    """The backup request a run made, noted as it went: the cluster's newest row before it
    (`after_ms`), then the server's answer. What a restarted daemon needs to find out what
    became of a run it was killed during."""

    run_id: int
    cluster_id: str
    backup_type: BackupType
    base_snapshot_id: str | None
    after_ms: int
    snapshot_id: str | None = None
    created_ms: int | None = None
    server_outcome: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """One run of one job, as recorded."""

    run_id: int
    job_name: str
    job_type: str
    scheduled_for: datetime
    outcome: Outcome
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cluster_id: str | None = None
    cluster_name: str | None = None
    snapshot_id: str | None = None
    base_snapshot_id: str | None = None
    error: str | None = None
    nodes: tuple[NodeStatus, ...] = ()
    server_outcome: str | None = None  # for an interrupted run: what the server did after
    skipped_for: Failure | None = None  # for a skipped run: why, when it was recorded
