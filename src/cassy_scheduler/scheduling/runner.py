"""What one run of a job does, start to end, and the RunResult that says how it went.

A run: hold the job's lock (a job never overlaps itself), record the run, find the cluster,
hold the cluster's lock (runs on one cluster never overlap), find the base snapshot for an
incremental, ask the server for the backup, and wait for every node's real outcome. Transient
errors before the server accepts the backup are retried with growing waits; every run ends as
exactly one recorded outcome, which observers (notifications, metrics) then receive.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from cassy_scheduler.backoff import doubling
from cassy_scheduler.client import BackupAck, CassyError
from cassy_scheduler.clock import Clock
from cassy_scheduler.config.model import JobConfig, WhenNoSnapshot
from cassy_scheduler.history import HistoryError, RunHistory
from cassy_scheduler.jobtype import JobType
from cassy_scheduler.outcome import (
    BackupOutcome,
    PollStopped,
    newest_backup_ms,
    wait_for_backup,
)
from cassy_scheduler.protocol.types import BackupType, NodeStatus
from cassy_scheduler.records import Failure, Outcome, RunObserver, RunResult, RunStart
from cassy_scheduler.scheduling.locks import (
    LockBusyError,
    LockError,
    LockTimeoutError,
    LockWaitStoppedError,
    RunLocks,
)
from cassy_scheduler.scheduling.resolve import (
    BackupHistory,
    ClusterDirectory,
    ResolvedCluster,
    ResolveError,
    find_base_snapshot,
    no_base_snapshot,
    resolve_cluster,
)
from cassy_scheduler.scheduling.takebackup import Request, TakingClient, with_recorded_rows
from cassy_scheduler.scheduling.verdict import judge

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_MAX_BACKOFF_FACTOR = 32


class BackupService(ClusterDirectory, BackupHistory, TakingClient, Protocol):
    """The calls a run makes: CassyClient, or a fake in tests."""

    def is_builtin_server(self) -> bool: ...


class _Stopped(Exception):  # noqa: N818 (control flow, never escapes this module)
    """The scheduler is stopping; the run ends as interrupted."""


class _RunFailed(Exception):  # noqa: N818 (control flow, never escapes this module)
    def __init__(self, outcome: Outcome, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.failure = failure
        self.message = message


@dataclass
class _Progress:
    """What a run has learnt so far; becomes the RunResult however the run ends."""

    job: JobConfig
    scheduled_for: datetime
    run_id: int
    started_at: datetime
    stop: threading.Event
    attempts: int = 1
    retries_left: int = 0
    cluster_id: str | None = None
    cluster_name: str | None = None
    cluster_nodes: tuple[str, ...] = ()
    snapshot_id: str | None = None
    base_snapshot_id: str | None = None
    base_snapshot_taken: bool = False
    nodes: tuple[NodeStatus, ...] = field(default_factory=tuple)
    acked: bool = False


class Runner:
    """Runs jobs against one server, recording each run; safe to call from many threads."""

    def __init__(
        self,
        client: BackupService,
        history: RunHistory,
        locks: RunLocks,
        clock: Clock,
        observers: Sequence[RunObserver] = (),
    ) -> None:
        self._client = client
        self._history = history
        self._locks = locks
        self._clock = clock
        self._observers = tuple(observers)

    def use_client(self, client: BackupService) -> None:
        """Runs started from now on use `client` (after the server's address changed)."""
        self._client = client

    def run(
        self, job: JobConfig, scheduled_for: datetime, stop: threading.Event | None = None
    ) -> RunResult:
        """Run `job` now for its `scheduled_for` instant; never raises for a failed backup."""
        stop = stop or threading.Event()
        try:
            with self._locks.job(job.name):
                return self._run_locked(job, scheduled_for, stop)
        except LockBusyError as busy:
            reason = f"a run of this job is still in progress: {busy}"
            return self.skip(job, scheduled_for, reason, Failure.ALREADY_RUNNING)
        except LockError as exc:
            # The lock file itself is unusable: nothing ran, say why.
            _log.error("run not started job=%s error=%r", job.name, str(exc))
            return self.skip(job, scheduled_for, str(exc), Failure.LOCAL)

    def skip(
        self, job: JobConfig, scheduled_for: datetime, reason: str, failure: Failure
    ) -> RunResult:
        """Record a run that is due but will not start, and tell the observers."""
        record = self._history.record_skipped(
            job.name, job.type.value, scheduled_for, reason, failure
        )
        _log.info(
            "run skipped job=%s scheduled_for=%s failure=%s reason=%r",
            job.name,
            scheduled_for.isoformat(),
            failure.value,
            reason,
        )
        result = RunResult(
            job_name=job.name,
            job_type=job.type,
            scheduled_for=scheduled_for,
            outcome=Outcome.SKIPPED,
            run_id=record.run_id,
            finished_at=record.finished_at,
            error=reason,
            failure=failure,
        )
        self._tell_finished(result)
        return result

    # -- one run, with the job's lock held --

    def _run_locked(
        self, job: JobConfig, scheduled_for: datetime, stop: threading.Event
    ) -> RunResult:
        record = self._history.start_run(job.name, job.type.value, scheduled_for)
        assert record.started_at is not None
        progress = _Progress(
            job, scheduled_for, record.run_id, record.started_at, stop, retries_left=job.retries
        )
        _log.info(
            "run started job=%s type=%s run_id=%d scheduled_for=%s cluster=%r",
            job.name,
            job.type.value,
            record.run_id,
            scheduled_for.isoformat(),
            str(job.cluster),
        )
        start = RunStart(record.run_id, job.name, job.type, scheduled_for, record.started_at)
        for observer in self._observers:
            safely(observer.run_started, start)
        client = self._client
        try:
            outcome, failure, error = self._work(client, progress)
        except _RunFailed as failed:
            outcome, failure, error = failed.outcome, failed.failure, failed.message
        except _Stopped:
            outcome, failure = Outcome.INTERRUPTED, Failure.STOPPED
            error = (
                "the scheduler stopped while waiting for the outcome; the server may still "
                f"finish snapshot {progress.snapshot_id}"
                if progress.acked
                else "the scheduler stopped before the backup was requested"
            )
        except Exception as exc:  # a bug or a local fault must not leave the run open
            _log.exception("run crashed job=%s run_id=%d", job.name, record.run_id)
            outcome, failure, error = Outcome.FAILED, Failure.LOCAL, f"internal error: {exc!r}"
        return self._finish(progress, outcome, failure, error)

    def _work(
        self, client: BackupService, progress: _Progress
    ) -> tuple[Outcome, Failure | None, str | None]:
        job = progress.job
        resolved = self._call(progress, "resolve the cluster", resolve_cluster, client, job.cluster)
        cluster = resolved.cluster
        progress.cluster_id, progress.cluster_name = cluster.cluster_id, cluster.cluster_name
        progress.cluster_nodes = tuple(cluster.target_ips)
        _log.info(
            "cluster resolved job=%s run_id=%d cluster_id=%s cluster_name=%s registered=%s",
            job.name,
            progress.run_id,
            cluster.cluster_id,
            cluster.cluster_name,
            resolved.registered,
        )
        wait_s = job.wait_timeout.total_seconds()
        try:
            with self._locks.cluster(cluster.cluster_id, job.name, wait_s, progress.stop):
                return self._work_on_cluster(client, progress, resolved)
        except LockWaitStoppedError:
            raise _Stopped() from None
        except LockTimeoutError as busy:
            raise _RunFailed(
                Outcome.SKIPPED,
                Failure.CLUSTER_BUSY,
                f"another run kept cluster {cluster.cluster_id} busy for the whole wait_timeout "
                f"({busy}); this run did not start",
            ) from None

    def _work_on_cluster(
        self, client: BackupService, progress: _Progress, resolved: ResolvedCluster
    ) -> tuple[Outcome, Failure | None, str | None]:
        job = progress.job
        base_id: str | None = None
        if job.type is JobType.INCREMENTAL:
            base_id = self._base_snapshot(client, progress, resolved)
        done = self._backup(client, progress, job.type.backup_type, base_id)
        return self._judge(client, progress, done)

    def _base_snapshot(
        self, client: BackupService, progress: _Progress, resolved: ResolvedCluster
    ) -> str:
        job, cluster = progress.job, resolved.cluster
        base = self._call(progress, "find the base snapshot", find_base_snapshot, client, cluster)
        if base is not None:
            progress.base_snapshot_id = base.snapshot_id
            _log.info(
                "base snapshot found job=%s run_id=%d snapshot_id=%s created_at=%s",
                job.name,
                progress.run_id,
                base.snapshot_id,
                base.created_at.isoformat(),
            )
            return base.snapshot_id
        if job.when_no_snapshot is WhenNoSnapshot.FAIL:
            raise _RunFailed(
                Outcome.FAILED, Failure.NO_BASE_SNAPSHOT, str(no_base_snapshot(cluster))
            )
        _log.info(
            "no base snapshot; taking one first job=%s run_id=%d cluster_id=%s",
            job.name,
            progress.run_id,
            cluster.cluster_id,
        )
        first = self._backup(client, progress, BackupType.NODE_SNAPSHOT, None)
        progress.base_snapshot_taken = True
        progress.base_snapshot_id = first.ack.snapshot_id
        if not first.succeeded:
            outcome, _, error = self._judge(client, progress, first)
            raise _RunFailed(
                outcome,
                Failure.BASE_SNAPSHOT_FAILED,
                f"the node snapshot taken first, as the base for this incremental, did not "
                f"succeed: {error}",
            )
        progress.acked = False
        return first.ack.snapshot_id

    def _backup(
        self,
        client: BackupService,
        progress: _Progress,
        backup_type: BackupType,
        base_id: str | None,
    ) -> BackupOutcome:
        job = progress.job
        if progress.stop.is_set():
            raise _Stopped()
        ack = self._start_backup(client, progress, backup_type, base_id)
        progress.acked = True
        progress.snapshot_id = ack.snapshot_id
        self._note(progress, self._history.note_accepted, ack.snapshot_id, ack.created_at_ms)
        _log.info(
            "backup accepted job=%s run_id=%d type=%s snapshot_id=%s created_at=%s nodes=%s",
            job.name,
            progress.run_id,
            backup_type.name,
            ack.snapshot_id,
            ack.created_at.isoformat(),
            ",".join(ack.target_ips) or "all",
        )
        deadline = self._clock.monotonic() + job.wait_timeout.total_seconds()
        try:
            done = wait_for_backup(
                client,
                ack,
                timeout_s=job.wait_timeout.total_seconds(),
                poll_interval_s=job.poll_interval.total_seconds(),
                clock=self._clock,
                stop=progress.stop,
            )
        except PollStopped:
            raise _Stopped() from None
        except CassyError as exc:
            raise _RunFailed(
                Outcome.FAILED, Failure.REFUSED, f"asking for the outcome failed: {exc}"
            ) from None
        if done.failed_nodes and done.pending_nodes:
            done = self._settle(client, progress, done, deadline)
        return done

    def _start_backup(
        self,
        client: BackupService,
        progress: _Progress,
        backup_type: BackupType,
        base_id: str | None,
    ) -> BackupAck:
        """TakeBackup, retried on transient errors without ever starting the backup twice
        (takebackup.py); a refusal names the snapshot the server recorded for it, if any."""
        cluster_id = progress.cluster_id or ""
        mark = self._call(
            progress, "list the cluster's backups", newest_backup_ms, client, cluster_id
        )
        self._note(progress, self._history.note_request, cluster_id, backup_type, base_id, mark)
        label = f"job={progress.job.name} run_id={progress.run_id}"
        request = Request(cluster_id, backup_type, base_id, mark, progress.cluster_nodes, label)
        try:
            return self._call(progress, "start the backup", request.taker(client))
        except _RunFailed as failed:
            found = request.refused_rows(client)
            if found is None:
                raise
            progress.snapshot_id = found.ack.snapshot_id
            progress.nodes = found.nodes
            message = with_recorded_rows(failed.message, found)
            raise _RunFailed(failed.outcome, failed.failure, message) from None

    def _settle(
        self, client: BackupService, progress: _Progress, done: BackupOutcome, deadline: float
    ) -> BackupOutcome:
        """After one node failed, wait (within wait_timeout) for the others' final status.

        The run has failed already; this only makes the recorded statuses true.
        """
        try:
            rest = wait_for_backup(
                client,
                done.ack,
                timeout_s=max(deadline - self._clock.monotonic(), 0.0),
                poll_interval_s=progress.job.poll_interval.total_seconds(),
                every_node=True,
                known=done.nodes,
                clock=self._clock,
                stop=progress.stop,
                retry_errors=False,  # a server gone away: what is known stays recorded
            )
        except PollStopped:
            raise _Stopped() from None
        return BackupOutcome(done.ack, rest.nodes, timed_out=False, last_error=None)

    def _judge(
        self, client: BackupService, progress: _Progress, done: BackupOutcome
    ) -> tuple[Outcome, Failure | None, str | None]:
        verdict = judge(
            done, progress.job.wait_timeout, self._clock.now(), client.is_builtin_server
        )
        progress.nodes = verdict.nodes
        return verdict.outcome, verdict.failure, verdict.error

    # -- retries --

    def _call(self, progress: _Progress, what: str, call: Callable[..., _T], *args: object) -> _T:
        """Call the server, retrying transient errors from the run's retry budget."""
        job = progress.job
        while True:
            if progress.stop.is_set():
                raise _Stopped()
            try:
                return call(*args)
            except ResolveError as exc:
                raise _RunFailed(Outcome.FAILED, exc.failure, str(exc)) from None
            except CassyError as exc:
                if not exc.is_transient:
                    raise _RunFailed(
                        Outcome.FAILED, Failure.REFUSED, f"could not {what}: {exc}"
                    ) from None
                if progress.retries_left <= 0:
                    raise _RunFailed(
                        Outcome.FAILED,
                        Failure.UNREACHABLE,
                        f"could not {what} after {progress.attempts} attempt(s): {exc}",
                    ) from None
                delay = doubling(job.retry_backoff, progress.attempts, _MAX_BACKOFF_FACTOR)
                _log.warning(
                    "transient error; retrying job=%s run_id=%d step=%r attempt=%d "
                    "retry_in_s=%g code=%s",
                    job.name,
                    progress.run_id,
                    what,
                    progress.attempts,
                    delay.total_seconds(),
                    exc.code.name,
                )
                progress.retries_left -= 1
                progress.attempts += 1
                self._pause(delay.total_seconds(), progress.stop)

    def _note(self, progress: _Progress, note: Callable[..., None], *facts: object) -> None:
        """Note the request in the history as it goes (a later process reads it if this one
        dies); a failure to note it is logged, never a reason to fail the backup."""
        try:
            note(progress.run_id, *facts)
        except HistoryError as exc:
            _log.warning(
                "request not noted job=%s run_id=%d error=%r",
                progress.job.name,
                progress.run_id,
                str(exc),
            )

    def _pause(self, seconds: float, stop: threading.Event) -> None:
        if self._clock.wait(seconds, stop):
            raise _Stopped()

    # -- the end of a run --

    def _finish(
        self,
        progress: _Progress,
        outcome: Outcome,
        failure: Failure | None,
        error: str | None,
    ) -> RunResult:
        job = progress.job
        record = self._history.finish_run(
            progress.run_id,
            outcome,
            snapshot_id=progress.snapshot_id,
            cluster_id=progress.cluster_id,
            cluster_name=progress.cluster_name,
            base_snapshot_id=progress.base_snapshot_id,
            error=error,
            nodes=progress.nodes,
        )
        result = RunResult(
            job_name=job.name,
            job_type=job.type,
            scheduled_for=progress.scheduled_for,
            outcome=outcome,
            run_id=progress.run_id,
            cluster_id=progress.cluster_id,
            cluster_name=progress.cluster_name,
            snapshot_id=progress.snapshot_id,
            base_snapshot_id=progress.base_snapshot_id,
            base_snapshot_taken=progress.base_snapshot_taken,
            started_at=progress.started_at,
            finished_at=record.finished_at,
            nodes=progress.nodes,
            error=error,
            failure=failure,
            attempts=progress.attempts,
        )
        level = logging.INFO if outcome is Outcome.SUCCEEDED else logging.WARNING
        _log.log(
            level,
            "run finished job=%s run_id=%d outcome=%s failure=%s cluster_id=%s snapshot_id=%s "
            "base_snapshot_id=%s attempts=%d nodes=%s error=%r",
            job.name,
            progress.run_id,
            outcome.value,
            failure.value if failure else "-",
            progress.cluster_id,
            progress.snapshot_id,
            progress.base_snapshot_id,
            progress.attempts,
            ",".join(f"{n.target_ip}:{n.status.name}" for n in progress.nodes) or "-",
            error,
        )
        self._tell_finished(result)
        return result

    def _tell_finished(self, result: RunResult) -> None:
        for observer in self._observers:
            safely(observer.run_finished, result)


def safely(callback: Callable[[_T], None], value: _T) -> None:
    """An observer's failure is logged, never allowed to change the run."""
    try:
        callback(value)
    except Exception:
        _log.exception("run observer failed observer=%r", callback)
