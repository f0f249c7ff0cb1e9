"""The scheduler's own record of runs, in SQLite, so `jobs` and `history` can show them.

A run is written before its work starts, with outcome "running", and its backup request is
noted as it goes; if the scheduler dies, the row stays and the next scheduler to open the
history marks it "interrupted" (and its daemon finds out what the server did), so a crash is
visible instead of silent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from cassy_scheduler.clock import SYSTEM_CLOCK, Clock
from cassy_scheduler.closing import Closing
from cassy_scheduler.protocol.types import BackupType, NodeStatus, OperationStatus
from cassy_scheduler.records import BackupRequest, Failure, Outcome, RunRecord
from cassy_scheduler.statefile import (
    StateError,
    StateFile,
    optional_text,
    read_time,
    state_exists,
    stored_time,
)

_log = logging.getLogger(__name__)

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
CREATE TABLE IF NOT EXISTS run_skips (
    run_id INTEGER PRIMARY KEY REFERENCES runs (run_id) ON DELETE CASCADE,
    failure TEXT NOT NULL
);
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
"""
_COLUMNS = (
    "run_id, job_name, job_type, cluster_id, cluster_name, snapshot_id, base_snapshot_id, "
    "scheduled_for, started_at, finished_at, outcome, error"
)
_NODES_INSERT = (
    "INSERT OR REPLACE INTO run_nodes (run_id, node_ip, status, reason) VALUES (?, ?, ?, ?)"
)


class HistoryError(StateError):
    """The run history cannot be opened, read or written."""


class RunHistory(Closing):
    """Reads and writes runs in one SQLite file; open it with `open` or `open_read_only`."""

    def __init__(self, file: StateFile, clock: Clock) -> None:
        self._file = file
        self._clock = clock

    @classmethod
    def open(
        cls, path: str | Path, clock: Clock = SYSTEM_CLOCK, *, recover: bool = True
    ) -> RunHistory:
        """Open for the scheduler that runs jobs: create the file if needed, and (with
        `recover`) mark runs a previous scheduler left "running" as interrupted.

        Pass recover=False when other processes may be running jobs on the same file; they
        then recover run by run with `running_runs` and `interrupt`.
        """
        file = StateFile(Path(path), HistoryError, writable=True)
        try:
            _migrate(file)
        except BaseException:
            file.close()
            raise
        history = cls(file, clock)
        if recover:
            history.mark_interrupted()
        return history

    @classmethod
    def open_read_only(cls, path: str | Path) -> RunHistory:
        """Open for reading while a scheduler may be writing (e.g. for `history`)."""
        path = Path(path)
        try:
            there = state_exists(path)
        except StateError as exc:
            raise HistoryError(str(exc)) from exc
        if not there:
            raise HistoryError(f"no run history at {path}; the scheduler creates it on start")
        return cls(StateFile(path, HistoryError, writable=False), SYSTEM_CLOCK)

    def close(self) -> None:
        self._file.close()

    def mark_interrupted(self) -> int:
        """Close every run still "running"; call only when no other scheduler uses this file."""
        count = self._file.write(
            "UPDATE runs SET outcome = ?, finished_at = ?, "
            "error = COALESCE(error, 'the scheduler stopped before the run finished') "
            "WHERE outcome = ?",
            (Outcome.INTERRUPTED.value, stored_time(self._clock.now()), Outcome.RUNNING.value),
            "mark runs interrupted",
        ).rowcount
        if count:
            _log.warning("runs marked interrupted count=%d", count)
        return count

    def running_runs(self) -> list[RunRecord]:
        """Runs recorded as still running, newest first."""
        return self._select("WHERE outcome = ?", (Outcome.RUNNING.value,), limit=-1)

    def interrupt(self, run_id: int, reason: str) -> bool:
        """Mark one run interrupted if it is still running; False when it had already ended."""
        count = self._file.write(
            "UPDATE runs SET outcome = ?, finished_at = ?, error = COALESCE(error, ?) "
            "WHERE run_id = ? AND outcome = ?",
            (
                Outcome.INTERRUPTED.value,
                stored_time(self._clock.now()),
                reason,
                run_id,
                Outcome.RUNNING.value,
            ),
            f"mark run {run_id} interrupted",
        ).rowcount
        return bool(count)

    def last_scheduled(self) -> dict[str, datetime]:
        """Each job's latest recorded scheduled instant, whatever the outcome, in one query."""
        rows = self._file.select(
            "SELECT job_name, MAX(scheduled_for) FROM runs GROUP BY job_name",
            (),
            "read the run history",
        )
        return {str(name): datetime.fromisoformat(str(moment)) for name, moment in rows}

    def first_scheduled(self, job_name: str) -> datetime | None:
        """The earliest scheduled instant recorded for a job, whatever the outcome."""
        ((moment,),) = self._file.select(
            "SELECT MIN(scheduled_for) FROM runs WHERE job_name = ?",
            (job_name,),
            "read the run history",
        )
        return read_time(moment)

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
        cursor = self._file.write(
            "INSERT INTO runs (job_name, job_type, cluster_id, cluster_name, base_snapshot_id, "
            "scheduled_for, started_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_name,
                job_type,
                cluster_id,
                cluster_name,
                base_snapshot_id,
                stored_time(scheduled_for),
                stored_time(self._clock.now()),
                Outcome.RUNNING.value,
            ),
            "write to the run history",
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
        with self._file.transaction(f"record the end of run {run_id}") as db:
            updated = db.execute(
                "UPDATE runs SET outcome = ?, finished_at = ?, error = ?, "
                "snapshot_id = COALESCE(?, snapshot_id), "
                "cluster_id = COALESCE(?, cluster_id), "
                "cluster_name = COALESCE(?, cluster_name), "
                "base_snapshot_id = COALESCE(?, base_snapshot_id) WHERE run_id = ?",
                (
                    outcome.value,
                    stored_time(self._clock.now()),
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
            db.executemany(_NODES_INSERT, _node_rows(run_id, nodes))
        return self.get_run(run_id)

    def record_skipped(
        self,
        job_name: str,
        job_type: str,
        scheduled_for: datetime,
        reason: str,
        failure: Failure | None = None,
    ) -> RunRecord:
        """Record a run that was due but deliberately not started (e.g. missed while down),
        and why in a word (`failure`), which notify's policies read back."""
        with self._file.transaction("write to the run history") as db:
            cursor = db.execute(
                "INSERT INTO runs (job_name, job_type, scheduled_for, finished_at, outcome, "
                "error) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    job_name,
                    job_type,
                    stored_time(scheduled_for),
                    stored_time(self._clock.now()),
                    Outcome.SKIPPED.value,
                    reason,
                ),
            )
            run_id = cursor.lastrowid
            assert run_id is not None
            if failure is not None:
                db.execute(
                    "INSERT INTO run_skips (run_id, failure) VALUES (?, ?)", (run_id, failure.value)
                )
        return self.get_run(run_id)

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
        self._file.write(
            "INSERT OR REPLACE INTO run_requests (run_id, cluster_id, backup_type, "
            "base_snapshot_id, after_ms) VALUES (?, ?, ?, ?, ?)",
            (run_id, cluster_id, int(backup_type), base_snapshot_id, after_ms),
            f"note the request of run {run_id}",
        )

    def note_accepted(self, run_id: int, snapshot_id: str, created_ms: int) -> None:
        """The server's answer: the run's snapshot id is recorded at once, not at its end."""
        with self._file.transaction(f"note the request of run {run_id}") as db:
            db.execute(
                "UPDATE run_requests SET snapshot_id = ?, created_ms = ? WHERE run_id = ?",
                (snapshot_id, created_ms, run_id),
            )
            db.execute("UPDATE runs SET snapshot_id = ? WHERE run_id = ?", (snapshot_id, run_id))

    def unsettled_requests(self, limit: int = 50) -> list[BackupRequest]:
        """Requests of interrupted runs whose server outcome is not known yet, newest first."""
        rows = self._file.select(
            "SELECT q.run_id, q.cluster_id, q.backup_type, q.base_snapshot_id, "
            "q.after_ms, q.snapshot_id, q.created_ms, q.server_outcome "
            "FROM run_requests q JOIN runs r ON r.run_id = q.run_id "
            "WHERE r.outcome = ? AND q.server_outcome IS NULL "
            "ORDER BY q.run_id DESC LIMIT ?",
            (Outcome.INTERRUPTED.value, limit),
            "read the run history",
            missing_ok=True,
        )
        return [
            BackupRequest(
                _integer(run_id),
                str(cluster_id),
                BackupType(_integer(kind)),
                optional_text(base),
                _integer(after),
                optional_text(snapshot),
                None if created is None else _integer(created),
                optional_text(outcome),
            )
            for run_id, cluster_id, kind, base, after, snapshot, created, outcome in rows
        ]

    def answered_requests(self, cluster_id: str) -> set[tuple[str, int]]:
        """(snapshot id, created_at ms) of every request of the cluster the server answered:
        whatever else a lost answer's lookup finds, these belong to their own runs."""
        rows = self._file.select(
            "SELECT snapshot_id, created_ms FROM run_requests "
            "WHERE cluster_id = ? AND created_ms IS NOT NULL AND snapshot_id IS NOT NULL",
            (cluster_id,),
            "read the run history",
            missing_ok=True,
        )
        return {(str(snapshot), _integer(created)) for snapshot, created in rows}

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
        with self._file.transaction(f"settle run {request.run_id}") as db:
            db.execute(
                "UPDATE run_requests SET server_outcome = ?, "
                "snapshot_id = COALESCE(?, snapshot_id), "
                "created_ms = COALESCE(?, created_ms) WHERE run_id = ?",
                (server_outcome, snapshot_id, created_ms, request.run_id),
            )
            db.execute(
                "UPDATE runs SET snapshot_id = COALESCE(snapshot_id, ?) WHERE run_id = ?",
                (snapshot_id, request.run_id),
            )
            db.executemany(_NODES_INSERT, _node_rows(request.run_id, nodes))

    # -- reading --

    def _select(self, where: str, params: Sequence[object], *, limit: int) -> list[RunRecord]:
        what = "read the run history"
        rows = self._file.select(
            f"SELECT {_COLUMNS} FROM runs {where} ORDER BY run_id DESC LIMIT ?",
            (*params, limit),
            what,
        )
        run_ids = [_integer(row[0]) for row in rows]
        if not run_ids:
            return []
        marks = ", ".join("?" for _ in run_ids)
        nodes: dict[int, list[NodeStatus]] = {}
        for run_id, ip, status, reason in self._file.select(
            f"SELECT run_id, node_ip, status, reason FROM run_nodes WHERE run_id IN ({marks}) "
            "ORDER BY node_ip",
            run_ids,
            what,
        ):
            nodes.setdefault(_integer(run_id), []).append(
                NodeStatus(str(ip), OperationStatus[str(status)], optional_text(reason))
            )
        settled = {
            _integer(run_id): str(outcome)
            for run_id, outcome in self._file.select(
                f"SELECT run_id, server_outcome FROM run_requests WHERE run_id IN ({marks}) "
                "AND server_outcome IS NOT NULL",
                run_ids,
                what,
                missing_ok=True,  # opened read-only, written by an older program
            )
        }
        skips = {
            _integer(run_id): _failure(failure)
            for run_id, failure in self._file.select(
                f"SELECT run_id, failure FROM run_skips WHERE run_id IN ({marks})",
                run_ids,
                what,
                missing_ok=True,  # opened read-only, written by an older program
            )
        }
        return [
            replace(
                _record(row, tuple(nodes.get(run_id, ()))),
                server_outcome=settled.get(run_id),
                skipped_for=skips.get(run_id),
            )
            for row, run_id in zip(rows, run_ids, strict=True)
        ]


def _migrate(file: StateFile) -> None:
    ((version,),) = file.select("PRAGMA user_version", (), "read the schema version")
    if _integer(version) > _SCHEMA_VERSION:
        raise HistoryError(
            f"run history {file.path} was written by a newer cassy-scheduler (schema "
            f"{version}); upgrade this program or point it at another file"
        )
    file.script(
        f"{_SCHEMA};\nPRAGMA user_version = {_SCHEMA_VERSION};", "create the run history's tables"
    )


def _node_rows(run_id: int, nodes: Sequence[NodeStatus]) -> list[tuple[object, ...]]:
    return [(run_id, n.target_ip, n.status.name, n.reason) for n in nodes]


def _integer(value: object) -> int:
    return int(str(value))


def _failure(text: object) -> Failure | None:
    try:
        return Failure(str(text))
    except ValueError:  # a word of a newer program
        return None


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
    scheduled = read_time(scheduled_for)
    assert scheduled is not None
    return RunRecord(
        run_id=_integer(run_id),
        job_name=str(job_name),
        job_type=str(job_type),
        scheduled_for=scheduled,
        outcome=Outcome(str(outcome)),
        started_at=read_time(started_at),
        finished_at=read_time(finished_at),
        cluster_id=optional_text(cluster_id),
        cluster_name=optional_text(cluster_name),
        snapshot_id=optional_text(snapshot_id),
        base_snapshot_id=optional_text(base_snapshot_id),
        error=optional_text(error),
        nodes=nodes,
    )
