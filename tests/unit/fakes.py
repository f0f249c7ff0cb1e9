"""Stand-ins shared by the scheduler's unit tests: a clock that never sleeps and an in-memory
Cassy whose backups finish (or fail, or hang) as a test scripts them. No tests live here."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc  # type: ignore[import-untyped]

from cassy_scheduler.client import (
    BackupAck,
    BackupEntry,
    Caller,
    CassyDeadlineExceeded,
    CassyError,
    CassyFailedPrecondition,
    CassyInvalidArgument,
    CassyUnavailable,
    Cluster,
)
from cassy_scheduler.config.model import ClusterRef, JobConfig, SourceLocation, WhenNoSnapshot
from cassy_scheduler.jobtype import JobType
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.timetable import Schedule

T0 = datetime(2025, 6, 10, 0, 0, tzinfo=UTC)
ADDRESS = "127.0.0.1:1"


class FakeClock:
    """Wall and monotonic time that move only when the code under test waits (or a test says)."""

    def __init__(self, start: datetime = T0) -> None:
        self._lock = threading.Lock()
        self._now = start
        self._mono = 1000.0
        self.waits: list[float] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._mono += max((moment - self._now).total_seconds(), 0.0)
            self._now = moment

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if stop is not None and stop.is_set():
            return True
        self.waits.append(seconds)
        self.advance(max(seconds, 0.0))
        return stop is not None and stop.is_set()


def unavailable(call: str = "TakeBackup") -> CassyError:
    return CassyUnavailable(call, ADDRESS, grpc.StatusCode.UNAVAILABLE, "connection refused")


def deadline_exceeded(call: str = "TakeBackup") -> CassyError:
    return CassyDeadlineExceeded(
        call, ADDRESS, grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"
    )


@dataclass
class _Pending:
    rows: list[BackupEntry]
    polls_left: dict[str, int]
    results: dict[str, OperationStatus]


@dataclass
class FakeCassy:
    """Clusters and backups in memory, with the server's rules on snapshot ids.

    A backup's rows go STARTED, then after `polls_to_finish` ListBackups calls take the
    status in `node_results` (COMPLETED by default), plus `node_delays` more polls for the
    nodes named there; `hang` keeps them STARTED for ever.
    `errors[call]` is a list of exceptions raised, one per call, before answering (None:
    answer that call). `lose_answers` TakeBackup calls start the backup, then raise
    DEADLINE_EXCEEDED as if the answer had been lost on the way. `refuse_not_live` calls
    record FAILED rows and answer UNAVAILABLE, as the built-in server does for down nodes;
    `refuse_internal` calls record FAILED rows and answer INTERNAL with no snapshot id, as
    Scalar's Cassy does when a cluster-wide snapshot's pause fails.
    """

    clusters: list[Cluster] = field(default_factory=list)
    polls_to_finish: int = 1
    node_results: dict[str, OperationStatus] = field(default_factory=dict)
    node_delays: dict[str, int] = field(default_factory=dict)
    hang: bool = False
    errors: dict[str, list[Exception | None]] = field(default_factory=dict)
    lose_answers: int = 0
    refuse_not_live: int = 0
    refuse_internal: int = 0
    calls: list[tuple[str, tuple[object, ...]]] = field(default_factory=list)
    rows: list[BackupEntry] = field(default_factory=list)
    on_take: list[threading.Event] = field(default_factory=list)
    builtin: bool = False  # answers like `cassy-scheduler serve` rather than Scalar's Cassy
    _pending: list[_Pending] = field(default_factory=list)
    _clock_ms: itertools.count[int] = field(default_factory=lambda: itertools.count(1_000_000))
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def is_builtin_server(self) -> bool:
        return self.builtin

    def who_am_i(self) -> Caller:
        return Caller("", "admin", access_control=False)

    def add_cluster(
        self, name: str = "prod", ips: Iterable[str] = ("127.0.0.2",), created_ms: int = 0
    ) -> Cluster:
        created = datetime.fromtimestamp((created_ms or next(self._clock_ms)) / 1000, UTC)
        cluster = Cluster(
            f"{name}-{next(self._ids)}", name, tuple(ips), ("ks",), "/data", created, created
        )
        self.clusters.insert(0, cluster)
        return cluster

    def add_backup(
        self,
        cluster: Cluster,
        backup_type: BackupType,
        statuses: dict[str, OperationStatus] | None = None,
        snapshot_id: str | None = None,
    ) -> str:
        """A finished backup already in the server's history."""
        snapshot_id = snapshot_id or f"snap-{next(self._ids)}"
        ms = next(self._clock_ms)
        moment = datetime.fromtimestamp(ms / 1000, UTC)
        for ip in cluster.target_ips:
            status = (statuses or {}).get(ip, OperationStatus.COMPLETED)
            self.rows.insert(
                0,
                BackupEntry(
                    cluster.cluster_id, ip, snapshot_id, moment, ms, moment, backup_type, status
                ),
            )
        return snapshot_id

    def _raise_scripted(self, call: str, args: tuple[object, ...]) -> None:
        self.calls.append((call, args))
        queue = self.errors.get(call)
        error = queue.pop(0) if queue else None
        if error is not None:
            raise error

    def list_clusters(
        self, cluster_id: str | None = None, limit: int = 0, *, timeout_s: float | None = None
    ) -> list[Cluster]:
        self._raise_scripted("ListClusters", (cluster_id,))
        found = [c for c in self.clusters if cluster_id is None or c.cluster_id == cluster_id]
        return found[:limit] if limit else found

    def register_cluster(self, cassandra_host: str, *, timeout_s: float | None = None) -> Cluster:
        self._raise_scripted("RegisterCluster", (cassandra_host,))
        return self.add_cluster("registered", (cassandra_host,))

    def take_backup(
        self,
        cluster_id: str,
        backup_type: BackupType,
        snapshot_id: str | None = None,
        target_ips: Iterable[str] = (),
        *,
        timeout_s: float | None = None,
    ) -> BackupAck:
        self._raise_scripted("TakeBackup", (cluster_id, backup_type, snapshot_id))
        for event in self.on_take:
            event.set()
        cluster = next((c for c in self.clusters if c.cluster_id == cluster_id), None)
        if cluster is None:
            raise CassyInvalidArgument(
                "TakeBackup", ADDRESS, grpc.StatusCode.INVALID_ARGUMENT, "unknown cluster"
            )
        if backup_type is BackupType.NODE_INCREMENTAL:
            if not any(
                r.snapshot_id == snapshot_id and r.backup_type is BackupType.NODE_SNAPSHOT
                for r in self.rows
            ):
                raise CassyFailedPrecondition(
                    "TakeBackup", ADDRESS, grpc.StatusCode.FAILED_PRECONDITION, "no snapshot"
                )
        else:
            snapshot_id = f"snap-{next(self._ids)}"
        assert snapshot_id is not None
        ms = next(self._clock_ms)
        moment = datetime.fromtimestamp(ms / 1000, UTC)
        with self._lock:
            rows = [
                BackupEntry(
                    cluster_id,
                    ip,
                    snapshot_id,
                    moment,
                    ms,
                    moment,
                    backup_type,
                    OperationStatus.STARTED,
                )
                for ip in cluster.target_ips
            ]
            self.rows[:0] = rows
            polls = {
                ip: self.polls_to_finish + self.node_delays.get(ip, 0) for ip in cluster.target_ips
            }
            self._pending.append(_Pending(rows, polls, dict(self.node_results)))
        if self.refuse_not_live > 0 or self.refuse_internal > 0:
            internal = self.refuse_not_live == 0
            if internal:
                self.refuse_internal -= 1
            else:
                self.refuse_not_live -= 1
            with self._lock:
                self._pending.pop()
                for index, row in enumerate(rows):
                    reason = "pause failed" if internal else "target nodes not live"
                    self.rows[index] = replace(row, status=OperationStatus.FAILED, reason=reason)
            if internal:
                raise CassyError("TakeBackup", ADDRESS, grpc.StatusCode.INTERNAL, "pause failed")
            raise unavailable()
        if self.lose_answers > 0:
            self.lose_answers -= 1
            raise deadline_exceeded()
        return BackupAck(
            OperationStatus.STARTED,
            cluster_id,
            cluster.target_ips,
            snapshot_id,
            moment,
            ms,
            backup_type,
        )

    def list_backups(
        self,
        cluster_id: str | None = None,
        target_ip: str | None = None,
        snapshot_id: str | None = None,
        limit: int = 0,
        *,
        timeout_s: float | None = None,
    ) -> list[BackupEntry]:
        self._raise_scripted("ListBackups", (cluster_id, snapshot_id))
        with self._lock:
            self._advance()
            found = [
                r
                for r in self.rows
                if (snapshot_id is None or r.snapshot_id == snapshot_id)
                and (cluster_id is None or r.cluster_id == cluster_id)
            ]
        return found[:limit] if limit else found

    def _advance(self) -> None:
        if self.hang:
            return
        for pending in list(self._pending):
            for ip in pending.polls_left:
                pending.polls_left[ip] -= 1
            if all(left <= 0 for left in pending.polls_left.values()):
                self._pending.remove(pending)
            for row in list(pending.rows):
                if pending.polls_left[row.target_ip] != 0:
                    continue
                status = pending.results.get(row.target_ip, OperationStatus.COMPLETED)
                done = BackupEntry(
                    row.cluster_id,
                    row.target_ip,
                    row.snapshot_id,
                    row.created_at,
                    row.created_at_ms,
                    row.updated_at + timedelta(seconds=1),
                    row.backup_type,
                    status,
                )
                self.rows[self.rows.index(row)] = done

    def count(self, call: str) -> int:
        return sum(1 for name, _ in self.calls if name == call)


def make_job(
    name: str = "nightly",
    job_type: JobType = JobType.SNAPSHOT,
    *,
    cluster: ClusterRef | None = None,
    schedule: str = "0 * * * *",
    retries: int = 2,
    retry_backoff: timedelta = timedelta(seconds=10),
    wait_timeout: timedelta = timedelta(minutes=10),
    poll_interval: timedelta = timedelta(seconds=5),
    when_no_snapshot: WhenNoSnapshot = WhenNoSnapshot.FAIL,
    **extra: object,
) -> JobConfig:
    return JobConfig(
        name=name,
        type=job_type,
        cluster=cluster or ClusterRef(cluster_name="prod"),
        schedule=Schedule.parse(schedule),
        source=SourceLocation(str(Path("scheduler.toml")), 1),
        retries=retries,
        retry_backoff=retry_backoff,
        wait_timeout=wait_timeout,
        poll_interval=poll_interval,
        when_no_snapshot=when_no_snapshot,
        **extra,  # type: ignore[arg-type]
    )
