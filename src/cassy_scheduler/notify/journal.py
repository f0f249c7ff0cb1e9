"""What notifications remember: every delivery attempt, and the staleness watch's state.

Kept in the state directory's SQLite file beside the run history (one file to back up), in
tables of its own, through a connection of its own: the history knows runs, this knows who
was told about them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cassy_scheduler.closing import Closing
from cassy_scheduler.statefile import StateError, StateFile, optional_text, read_time, stored_time

_SCHEMA = """
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
CREATE TABLE IF NOT EXISTS staleness (
    job_name TEXT PRIMARY KEY,
    watched_since TEXT NOT NULL,
    stale_since TEXT
);
"""


class JournalError(StateError):
    """The notification journal cannot be opened, read or written."""


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


class NoticeJournal(Closing):
    """Delivery attempts and staleness state; open it with `open` or `open_read_only`."""

    def __init__(self, file: StateFile) -> None:
        self._file = file

    @classmethod
    def open(cls, path: Path) -> NoticeJournal:
        return cls(StateFile(path, JournalError, writable=True, schema=_SCHEMA))

    @classmethod
    def open_read_only(cls, path: Path) -> NoticeJournal:
        return cls(StateFile(path, JournalError, writable=False))

    def close(self) -> None:
        self._file.close()

    def record_delivery(self, delivery: DeliveryRecord) -> None:
        """Record one delivery attempt, whatever its result."""
        self._file.write(
            "INSERT INTO deliveries (run_id, job_name, target, kind, attempt, at, delivered, "
            "error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                delivery.run_id,
                delivery.job_name,
                delivery.target,
                delivery.kind,
                delivery.attempt,
                stored_time(delivery.at),
                int(delivery.delivered),
                delivery.error,
            ),
            "record a notice's delivery",
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
        rows = self._file.select(
            "SELECT run_id, job_name, target, kind, attempt, at, delivered, error "
            f"FROM deliveries {where} ORDER BY delivery_id",
            params,
            "read notification deliveries",
            missing_ok=True,  # written by an older program: nothing was notified
        )
        records = []
        for run, job, target, kind, attempt, at, delivered, error in rows:
            moment = read_time(at)
            assert moment is not None
            records.append(
                DeliveryRecord(
                    job_name=str(job),
                    target=str(target),
                    kind=str(kind),
                    attempt=int(str(attempt)),
                    at=moment,
                    delivered=bool(delivered),
                    run_id=None if run is None else int(str(run)),
                    error=optional_text(error),
                )
            )
        return records

    def stale_state(self, job_name: str) -> StaleState | None:
        """The staleness watch's state for a job; None when it never looked (or an older
        program wrote this file)."""
        rows = self._file.select(
            "SELECT watched_since, stale_since FROM staleness WHERE job_name = ?",
            (job_name,),
            "read the staleness state",
            missing_ok=True,
        )
        if not rows:
            return None
        since = read_time(rows[0][0])
        assert since is not None
        return StaleState(job_name, since, read_time(rows[0][1]))

    def save_stale_state(self, state: StaleState) -> None:
        self._file.write(
            "INSERT OR REPLACE INTO staleness (job_name, watched_since, stale_since) "
            "VALUES (?, ?, ?)",
            (
                state.job_name,
                stored_time(state.watched_since),
                None if state.stale_since is None else stored_time(state.stale_since),
            ),
            "save the staleness state",
        )
