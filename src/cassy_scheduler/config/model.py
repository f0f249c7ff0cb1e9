"""The scheduler's configuration as the rest of the program sees it: plain frozen values."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from cassy_scheduler.config.targets import NotifyTarget, NotifyUse
from cassy_scheduler.jobtype import JobType
from cassy_scheduler.retention.policy import RetentionPolicy
from cassy_scheduler.timetable import JobTimetable, MissedRunPolicy, Schedule
from cassy_scheduler.tls import TlsConfig

DEFAULT_ADDRESS = "127.0.0.1:20051"


class WhenNoSnapshot(StrEnum):
    """What an incremental job does when its cluster has no completed snapshot to extend."""

    FAIL = "fail"
    TAKE_SNAPSHOT = "take-snapshot"


@dataclass(frozen=True)
class SourceLocation:
    """Where a table was written, so later checks can point at it too."""

    file: str
    line: int | None


@dataclass(frozen=True)
class ClusterRef:
    """How a job names its cluster: exactly one of an id, a name, or a node to ask."""

    cluster_id: str | None = None
    cluster_name: str | None = None
    cassandra_host: str | None = None
    register_if_missing: bool = False

    @property
    def kind(self) -> str:
        if self.cluster_id is not None:
            return "cluster_id"
        return "cluster_name" if self.cluster_name is not None else "cassandra_host"

    @property
    def value(self) -> str:
        return self.cluster_id or self.cluster_name or self.cassandra_host or ""

    def __str__(self) -> str:
        return f'{self.kind} "{self.value}"'


@dataclass(frozen=True)
class ServerConfig:
    """The Cassy-compatible server the scheduler talks to."""

    address: str = DEFAULT_ADDRESS
    tls: TlsConfig | None = None
    call_deadline: timedelta = timedelta(seconds=30)
    token: str | None = field(default=None, repr=False)  # read from token_file or token_env


@dataclass(frozen=True)
class JobConfig:
    """One scheduled backup job with every default already applied."""

    name: str
    type: JobType
    cluster: ClusterRef
    schedule: Schedule
    source: SourceLocation
    jitter: timedelta = timedelta(0)
    enabled: bool = True
    wait_timeout: timedelta = timedelta(hours=2)
    poll_interval: timedelta = timedelta(seconds=10)
    retries: int = 3
    retry_backoff: timedelta = timedelta(seconds=10)
    missed_runs: MissedRunPolicy = MissedRunPolicy.RUN_ONCE
    misfire_grace: timedelta | None = None
    when_no_snapshot: WhenNoSnapshot = WhenNoSnapshot.FAIL
    notify: tuple[NotifyUse, ...] = ()
    alert_after: timedelta | None = None
    heartbeat_url: str | None = None
    retention: RetentionPolicy | None = None  # None: nothing of this job is ever deleted
    prune_schedule: Schedule | None = None  # None: pruned after each successful backup

    @property
    def timetable(self) -> JobTimetable:
        return JobTimetable(self.name, self.schedule, self.jitter)


PRUNE_SUFFIX = ":prune"


def prune_run(job: JobConfig) -> JobConfig:
    """The job as its prunes are scheduled (on prune_schedule, when it has one), recorded
    and notified: named NAME:prune (no job can be), its own notify targets, no staleness
    alert or heartbeat of its own (those watch the backups)."""
    return replace(
        job,
        name=f"{job.name}{PRUNE_SUFFIX}",
        type=JobType.PRUNE,
        schedule=job.prune_schedule or job.schedule,
        jitter=timedelta(0),
        alert_after=None,
        heartbeat_url=None,
    )


def default_state_dir() -> Path:
    """Where run history and lock files live when [scheduler] state_dir is not set.

    root gets the system location; anyone else their XDG state directory, so one-shot commands
    and the daemon of one user agree without configuration.
    """
    if os.geteuid() == 0:
        return Path("/var/lib/cassy-scheduler")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cassy-scheduler"


@dataclass(frozen=True)
class RuntimeConfig:
    """The [scheduler] table: how the scheduler process itself behaves."""

    state_dir: Path = field(default_factory=default_state_dir)
    shutdown_grace: timedelta = timedelta(seconds=60)
    reload_poll: timedelta = timedelta(seconds=5)
    max_parallel_runs: int = 8
    metrics_listen: str | None = None
    stale_check: timedelta = timedelta(minutes=1)

    @property
    def history_path(self) -> Path:
        return self.state_dir / "history.sqlite"

    @property
    def lock_dir(self) -> Path:
        return self.state_dir / "locks"


@dataclass(frozen=True)
class SchedulerConfig:
    """A whole, validated config file."""

    path: Path
    server: ServerConfig
    jobs: tuple[JobConfig, ...]
    notify: tuple[NotifyTarget, ...] = ()
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    declared: frozenset[str] = frozenset()  # the top-level tables and keys the file writes
    # The [defaults] table as JobConfig fields, for jobs made up outside the file (cron's).
    job_defaults: tuple[tuple[str, Any], ...] = ()

    def target(self, name: str) -> NotifyTarget:
        for target in self.notify:
            if target.name == name:
                return target
        raise KeyError(f'no notify target "{name}" in {self.path}')

    def job(self, name: str) -> JobConfig:
        for job in self.jobs:
            if job.name == name:
                return job
        known = ", ".join(j.name for j in self.jobs) or "none"
        raise KeyError(f'no job "{name}" in {self.path} (jobs: {known})')
