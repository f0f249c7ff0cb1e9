"""The scheduler's own record of runs, in SQLite, so `status` can show last and next runs.

A run is written before its work starts, with outcome "running"; if the scheduler dies, the
row stays and the next scheduler to open the history marks it "interrupted", so a crash is
visible instead of silent.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType

from cassy_scheduler.privatefiles import private_file
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.scheduling import SchedulingError

_log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_name TEXT NOT NULL,
    job_type TEXT NOT NULL,
    cluster_id TEXT,
    cluster_name TEXT,
    snapshot_id TEXT,
    base_snapshot_id TEXT,
    scheduled_for TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    outcome TEXT NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job_name, run_id);
CREATE INDEX IF NOT EXISTS runs_running ON runs (outcome) WHERE outcome = 'running';
CREATE TABLE IF NOT EXISTS run_nodes (
    run_id INTEGER NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    node_ip TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (run_id, node_ip)
);
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER,
    job_name TEXT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at TEXT NOT NULL,
    delivered INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_by_run ON deliveries (run_id);
CREATE TABLE IF NOT EXISTS run_requests (
    run_id INTEGER PRIMARY KEY REFERENCES runs (run_id) ON DELETE CASCADE,
    cluster_id TEXT NOT NULL,
    backup_type INTEGER NOT NULL,
    base_snapshot_id TEXT,
    after_ms INTEGER NOT NULL,
    snapshot_id TEXT,
    created_ms INTEGER,
    server_outcome TEXT
);
CREATE TABLE IF NOT EXISTS staleness (
    job_name TEXT PRIMARY KEY,
    watched_since TEXT NOT NULL,
    stale_since TEXT
);
"""
_COLUMNS = (
    "run_id, job_name, job_type, cluster_id, cluster_name, snapshot_id, base_snapshot_id, "
    "scheduled_for, started_at, finished_at, outcome, error"
)


class HistoryError(SchedulingError):
    """The run history cannot be opened, read or written."""


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


@dataclass(frozen=True)
class NodeStatus:
    """One node's part of a run, as the server last reported it."""

    node_ip: str
    status: OperationStatus
    reason: str | None = None


@dataclass(frozen=True)
class DeliveryRecord:
    """One attempt to deliver one notice to one target."""

    job_name: str
    target: str
    kind: str
    attempt: int
    at: datetime
    delivered: bool
    run_id: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class StaleState:
    """What the staleness watch knows of a job: since when it watches, whether it alerted."""

    job_name: str
    watched_since: datetime
    stale_since: datetime | None = None


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


def _now_utc() -> datetime:
    return datetime.now(UTC)


class RunHistory:
    """Reads and writes runs in one SQLite file; open it with `open` or `open_read_only`."""

    def __init__(self, connection: sqlite3.Connection, clock: Clock, *, writable: bool) -> None:
        self._db = connection
        self._clock = clock
        self._writable = writable
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path, clock: Clock = _now_utc, *, recover: bool = True) -> RunHistory:
        """Open for the scheduler that runs jobs: create the file if needed, and (with
        `recover`) mark runs a previous scheduler left "running" as interrupted.

        Pass recover=False when other processes may be running jobs on the same file; they
        then recover run by run with `running_runs` and `interrupt`.
        """
        path = Path(path)
        try:
            private_file(path)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA busy_timeout = 5000")
            _migrate(db, path)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(
                f"cannot open run history {path}: {exc}; check the directory exists and is "
                "writable by the scheduler's user"
            ) from exc
        history = cls(db, clock, writable=True)
        if recover:
            history.mark_interrupted()
        return history

    @classmethod
    def open_read_only(cls, path: str | Path) -> RunHistory:
        """Open for reading while a scheduler may be writing (e.g. for `status`)."""
        path = Path(path)
        if not path.exists():
            raise HistoryError(f"no run history at {path}; the scheduler creates it on start")
        try:
            db = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
            db.execute("PRAGMA busy_timeout = 5000")
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot read run history {path}: {exc}") from exc
        return cls(db, _now_utc, writable=False)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunHistory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def mark_interrupted(self) -> int:
        """Close every run still "running"; call only when no other scheduler uses this file."""
        count = self._write(
            "UPDATE runs SET outcome = ?, finished_at = ?, "
            "error = COALESCE(error, 'the scheduler stopped before the run finished') "
            "WHERE outcome = ?",
            (Outcome.INTERRUPTED.value, _text(self._clock()), Outcome.RUNNING.value),
        ).rowcount
        if count:
            _log.warning("runs marked interrupted count=%d", count)
        return count

    def running_runs(self) -> list[RunRecord]:
        """Runs recorded as still running, newest first."""
        return self._select("WHERE outcome = ?", (Outcome.RUNNING.value,), limit=-1)

    def interrupt(self, run_id: int, reason: str) -> bool:
        """Mark one run interrupted if it is still running; False when it had already ended."""
        count = self._write(
            "UPDATE runs SET outcome = ?, finished_at = ?, error = COALESCE(error, ?) "
            "WHERE run_id = ? AND outcome = ?",
            (
                Outcome.INTERRUPTED.value,
                _text(self._clock()),
                reason,
                run_id,
                Outcome.RUNNING.value,
            ),
        ).rowcount
        return bool(count)

    def last_scheduled(self) -> dict[str, datetime]:
        """Each job's latest recorded scheduled instant, whatever the outcome, in one query."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT job_name, MAX(scheduled_for) FROM runs GROUP BY job_name"
                ).fetchall()
            except sqlite3.Error as exc:
                raise HistoryError(f"cannot read the run history: {exc}") from exc
        return {str(name): datetime.fromisoformat(str(moment)) for name, moment in rows}

    def first_scheduled(self, job_name: str) -> datetime | None:
        """The earliest scheduled instant recorded for a job, whatever the outcome."""
        with self._lock:
            try:
                (moment,) = self._db.execute(
                    "SELECT MIN(scheduled_for) FROM runs WHERE job_name = ?", (job_name,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise HistoryError(f"cannot read the run history: {exc}") from exc
        return _moment(_opt(moment))

    def start_run(
        self,
        job_name: str,
        job_type: str,
        scheduled_for: datetime,
        *,
        cluster_id: str | None = None,
        cluster_name: str | None = None,
        base_snapshot_id: str | None = None,
    ) -> RunRecord:
        """Record a run before its work begins, so a crash leaves a trace."""
        started = self._clock()
        cursor = self._write(
            "INSERT INTO runs (job_name, job_type, cluster_id, cluster_name, base_snapshot_id, "
            "scheduled_for, started_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_name,
                job_type,
                cluster_id,
                cluster_name,
                base_snapshot_id,
                _text(scheduled_for),
                _text(started),
                Outcome.RUNNING.value,
            ),
        )
        assert cursor.lastrowid is not None
        return self.get_run(cursor.lastrowid)

    def finish_run(
        self,
        run_id: int,
        outcome: Outcome,
        *,
        snapshot_id: str | None = None,
        cluster_id: str | None = None,
        cluster_name: str | None = None,
        base_snapshot_id: str | None = None,
        error: str | None = None,
        nodes: Sequence[NodeStatus] = (),
    ) -> RunRecord:
        """Record how a run ended; identifiers learnt during the run fill empty columns."""
        if not outcome.is_final:
            raise HistoryError(f"finish_run needs a final outcome, not {outcome.value!r}")
        with self._lock:
            self._require_writable()
            try:
                with _transaction(self._db):
                    updated = self._db.execute(
                        "UPDATE runs SET outcome = ?, finished_at = ?, error = ?, "
                        "snapshot_id = COALESCE(?, snapshot_id), "
                        "cluster_id = COALESCE(?, cluster_id), "
                        "cluster_name = COALESCE(?, cluster_name), "
                        "base_snapshot_id = COALESCE(?, base_snapshot_id) WHERE run_id = ?",
                        (
                            outcome.value,
                            _text(self._clock()),
                            error,
                            snapshot_id,
                            cluster_id,
                            cluster_name,
                            base_snapshot_id,
                            run_id,
                        ),
                    ).rowcount
                    if not updated:
                        raise HistoryError(f"no run {run_id} in the history to finish")
                    self._db.executemany(
                        "INSERT OR REPLACE INTO run_nodes (run_id, node_ip, status, reason) "
                        "VALUES (?, ?, ?, ?)",
                        [(run_id, n.node_ip, n.status.name, n.reason) for n in nodes],
                    )
            except sqlite3.Error as exc:
                raise HistoryError(f"cannot record the end of run {run_id}: {exc}") from exc
        return self.get_run(run_id)

    def record_skipped(
        self, job_name: str, job_type: str, scheduled_for: datetime, reason: str
    ) -> RunRecord:
        """Record a run that was due but deliberately not started (e.g. missed while down)."""
        now = _text(self._clock())
        cursor = self._write(
            "INSERT INTO runs (job_name, job_type, scheduled_for, finished_at, outcome, error) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (job_name, job_type, _text(scheduled_for), now, Outcome.SKIPPED.value, reason),
        )
        assert cursor.lastrowid is not None
        return self.get_run(cursor.lastrowid)

    def get_run(self, run_id: int) -> RunRecord:
        runs = self._select("WHERE run_id = ?", (run_id,), limit=1)
        if not runs:
            raise HistoryError(f"no run {run_id} in the history")
        return runs[0]

    def last_run(self, job_name: str, *, skipped: bool = True) -> RunRecord | None:
        """The most recently recorded run of a job, whatever its outcome; with
        `skipped=False` the most recent one that was not skipped."""
        if skipped:
            runs = self._select("WHERE job_name = ?", (job_name,), limit=1)
        else:
            runs = self._select(
                "WHERE job_name = ? AND outcome != ?", (job_name, Outcome.SKIPPED.value), limit=1
            )
        return runs[0] if runs else None

    def last_success(self, job_name: str) -> RunRecord | None:
        runs = self._select(
            "WHERE job_name = ? AND outcome = ?", (job_name, Outcome.SUCCEEDED.value), limit=1
        )
        return runs[0] if runs else None

    def list_runs(self, job_name: str | None = None, limit: int = 50) -> list[RunRecord]:
        """Runs newest first, of one job or of all."""
        if job_name is None:
            return self._select("", (), limit=limit)
        return self._select("WHERE job_name = ?", (job_name,), limit=limit)

    # -- the request a run made, for runs a stopped process left --

    def note_request(
        self,
        run_id: int,
        cluster_id: str,
        backup_type: BackupType,
        base_snapshot_id: str | None,
        after_ms: int,
    ) -> None:
        """Before TakeBackup: enough to find the request later, should its answer be lost."""
        self._write(
            "INSERT OR REPLACE INTO run_requests (run_id, cluster_id, backup_type, "
            "base_snapshot_id, after_ms) VALUES (?, ?, ?, ?, ?)",
            (run_id, cluster_id, int(backup_type), base_snapshot_id, after_ms),
        )

    def note_accepted(self, run_id: int, snapshot_id: str, created_ms: int) -> None:
        """The server's answer: the run's snapshot id is recorded at once, not at its end."""
        with self._lock:
            self._require_writable()
            try:
                with _transaction(self._db):
                    self._db.execute(
                        "UPDATE run_requests SET snapshot_id = ?, created_ms = ? WHERE run_id = ?",
                        (snapshot_id, created_ms, run_id),
                    )
                    self._db.execute(
                        "UPDATE runs SET snapshot_id = ? WHERE run_id = ?", (snapshot_id, run_id)
                    )
            except sqlite3.Error as exc:
                raise HistoryError(f"cannot note the request of run {run_id}: {exc}") from exc

    def unsettled_requests(self, limit: int = 50) -> list[BackupRequest]:
        """Requests of interrupted runs whose server outcome is not known yet, newest first."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT q.run_id, q.cluster_id, q.backup_type, q.base_snapshot_id, "
                    "q.after_ms, q.snapshot_id, q.created_ms, q.server_outcome "
                    "FROM run_requests q JOIN runs r ON r.run_id = q.run_id "
                    "WHERE r.outcome = ? AND q.server_outcome IS NULL "
                    "ORDER BY q.run_id DESC LIMIT ?",
                    (Outcome.INTERRUPTED.value, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise HistoryError(f"cannot read the run history: {exc}") from exc
        return [
            BackupRequest(
                int(run_id),
                str(cluster_id),
                BackupType(int(kind)),
                _opt(base),
                int(after),
                _opt(snapshot),
                None if created is None else int(created),
                _opt(outcome),
            )
            for run_id, cluster_id, kind, base, after, snapshot, created, outcome in rows
        ]

    def settle(
        self,
        request: BackupRequest,
        server_outcome: str,
        *,
        snapshot_id: str | None,
        created_ms: int | None,
        nodes: Sequence[NodeStatus] = (),
    ) -> None:
        """Record what the server did with an interrupted run's request; the run's outcome
        stays interrupted, this stands beside it."""
        with self._lock:
            self._require_writable()
            try:
                with _transaction(self._db):
                    self._db.execute(
                        "UPDATE run_requests SET server_outcome = ?, "
                        "snapshot_id = COALESCE(?, snapshot_id), "
                        "created_ms = COALESCE(?, created_ms) WHERE run_id = ?",
                        (server_outcome, snapshot_id, created_ms, request.run_id),
                    )
                    self._db.execute(
                        "UPDATE runs SET snapshot_id = COALESCE(snapshot_id, ?) WHERE run_id = ?",
                        (snapshot_id, request.run_id),
                    )
                    self._db.executemany(
                        "INSERT OR REPLACE INTO run_nodes (run_id, node_ip, status, reason) "
                        "VALUES (?, ?, ?, ?)",
                        [(request.run_id, n.node_ip, n.status.name, n.reason) for n in nodes],
                    )
            except sqlite3.Error as exc:
                raise HistoryError(f"cannot settle run {request.run_id}: {exc}") from exc

    # -- notification deliveries --

    def record_delivery(self, delivery: DeliveryRecord) -> None:
        """Record one delivery attempt, whatever its result."""
        self._write(
            "INSERT INTO deliveries (run_id, job_name, target, kind, attempt, at, delivered, "
            "error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                delivery.run_id,
                delivery.job_name,
                delivery.target,
                delivery.kind,
                delivery.attempt,
                _text(delivery.at),
                int(delivery.delivered),
                delivery.error,
            ),
        )

    def deliveries(
        self, run_id: int | None = None, job_name: str | None = None
    ) -> list[DeliveryRecord]:
        """Delivery attempts, oldest first, of one run or one job (or all)."""
        where: str = ""
        params: tuple[object, ...] = ()
        if run_id is not None:
            where, params = "WHERE run_id = ?", (run_id,)
        elif job_name is not None:
            where, params = "WHERE job_name = ?", (job_name,)
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT run_id, job_name, target, kind, attempt, at, delivered, error "
                    f"FROM deliveries {where} ORDER BY delivery_id",
                    params,
                ).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []  # written by an older program: nothing was notified
                raise HistoryError(f"cannot read notification deliveries: {exc}") from exc
            except sqlite3.Error as exc:
                raise HistoryError(f"cannot read notification deliveries: {exc}") from exc
        return [
            DeliveryRecord(
                job_name=str(job),
                target=str(target),
                kind=str(kind),
                attempt=int(attempt),
                at=datetime.fromisoformat(str(at)),
                delivered=bool(delivered),
                run_id=None if run is None else int(run),
                error=_opt(error),
            )
            for run, job, target, kind, attempt, at, delivered, error in rows
        ]

    # -- staleness --

    def stale_state(self, job_name: str) -> StaleState | None:
        """The staleness watch's state for a job; None when it never looked (or an older
        program wrote this file)."""
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT watched_since, stale_since FROM staleness WHERE job_name = ?",
                    (job_name,),
                ).fetchone()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return None
                raise HistoryError(f"cannot read the staleness state: {exc}") from exc
            except sqlite3.Error as exc:
                raise HistoryError(f"cannot read the staleness state: {exc}") from exc
        if row is None:
            return None
        since = _moment(str(row[0]))
        assert since is not None
        return StaleState(job_name, since, _moment(_opt(row[1])))

    def save_stale_state(self, state: StaleState) -> None:
        self._write(
            "INSERT OR REPLACE INTO staleness (job_name, watched_since, stale_since) "
            "VALUES (?, ?, ?)",
            (
                state.job_name,
                _text(state.watched_since),
                None if state.stale_since is None else _text(state.stale_since),
            ),
        )

    def _require_writable(self) -> None:
        if not self._writable:
            raise HistoryError("this run history was opened read-only")

    def _write(self, sql: str, params: Sequence[object]) -> sqlite3.Cursor:
        with self._lock:
            self._require_writable()
            try:
                return self._db.execute(sql, params)
            except sqlite3.Error as exc:
                raise HistoryError(f"cannot write to the run history: {exc}") from exc

    def _select(self, where: str, params: Sequence[object], *, limit: int) -> list[RunRecord]:
        with self._lock:
            try:
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM runs {where} ORDER BY run_id DESC LIMIT ?",
                    (*params, limit),
                ).fetchall()
                nodes = self._nodes([row[0] for row in rows])
                settled = self._server_outcomes([row[0] for row in rows])
            except sqlite3.Error as exc:
                raise HistoryError(f"cannot read the run history: {exc}") from exc
        return [
            replace(_record(row, nodes.get(row[0], ())), server_outcome=settled.get(row[0]))
            for row in rows
        ]

    def _server_outcomes(self, run_ids: list[int]) -> dict[int, str]:
        if not run_ids:
            return {}
        marks = ", ".join("?" for _ in run_ids)
        try:
            found = self._db.execute(
                f"SELECT run_id, server_outcome FROM run_requests WHERE run_id IN ({marks}) "
                "AND server_outcome IS NOT NULL",
                run_ids,
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}  # opened read-only, written by an older program
            raise
        return {int(run_id): str(outcome) for run_id, outcome in found}

    def _nodes(self, run_ids: list[int]) -> dict[int, tuple[NodeStatus, ...]]:
        if not run_ids:
            return {}
        marks = ", ".join("?" for _ in run_ids)
        found: dict[int, list[NodeStatus]] = {}
        for run_id, ip, status, reason in self._db.execute(
            f"SELECT run_id, node_ip, status, reason FROM run_nodes WHERE run_id IN ({marks}) "
            "ORDER BY node_ip",
            run_ids,
        ):
            found.setdefault(run_id, []).append(NodeStatus(ip, OperationStatus[status], reason))
        return {run_id: tuple(statuses) for run_id, statuses in found.items()}


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN/COMMIT around a block on an autocommit connection, ROLLBACK on error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > _SCHEMA_VERSION:
        raise HistoryError(
            f"run history {path} was written by a newer cassy-scheduler (schema {version}); "
            "upgrade this program or point it at another file"
        )
    db.executescript(_SCHEMA)
    db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")


def _text(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise HistoryError(f"{moment.isoformat()} has no timezone; pass aware datetimes")
    return moment.astimezone(UTC).isoformat()


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None


def _record(row: Iterable[object], nodes: tuple[NodeStatus, ...]) -> RunRecord:
    (
        run_id,
        job_name,
        job_type,
        cluster_id,
        cluster_name,
        snapshot_id,
        base_snapshot_id,
        scheduled_for,
        started_at,
        finished_at,
        outcome,
        error,
    ) = row
    scheduled = _moment(str(scheduled_for))
    assert scheduled is not None
    return RunRecord(
        run_id=int(str(run_id)),
        job_name=str(job_name),
        job_type=str(job_type),
        scheduled_for=scheduled,
        outcome=Outcome(str(outcome)),
        started_at=_moment(_opt(started_at)),
        finished_at=_moment(_opt(finished_at)),
        cluster_id=_opt(cluster_id),
        cluster_name=_opt(cluster_name),
        snapshot_id=_opt(snapshot_id),
        base_snapshot_id=_opt(base_snapshot_id),
        error=_opt(error),
        nodes=nodes,
    )


def _opt(value: object) -> str | None:
    return None if value is None else str(value)
