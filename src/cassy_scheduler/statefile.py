"""One SQLite file in the state directory, opened by several parts of the scheduler at once.

The run history and the notification journal keep their tables in the same file (one file to
back up, one place for the state), each through its own connection: WAL mode lets a process's
daemon, a cron run and a reader of `history` use it together. Errors come out as the caller's
own exception type, with what was being done.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from cassy_scheduler.privatefiles import private_file

BUSY_TIMEOUT_MS = 5000


class StateError(Exception):
    """A file of the state directory cannot be opened, read or written."""


def state_exists(path: Path) -> bool:
    """Whether the state file is there; StateError when this user may not even look (the
    state directory is 0700: commands run as another user than the scheduler's)."""
    try:
        return path.exists()
    except OSError as exc:
        raise StateError(
            f"cannot look at {path}: {exc.strerror or exc}; run this as the scheduler's user "
            "(the state directory is readable by it alone)"
        ) from exc


class StateFile:
    """A connection to the state file, shared by one object's threads under a lock."""

    def __init__(
        self, path: Path, error: type[StateError], *, writable: bool, schema: str = ""
    ) -> None:
        self.path = path
        self._error = error
        self._writable = writable
        self.lock = threading.Lock()
        try:
            if writable:
                private_file(path)
                self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA foreign_keys = ON")
            else:
                if not state_exists(path):
                    raise error(f"no state file at {path}; the scheduler creates it on start")
                uri = f"{path.resolve().as_uri()}?mode=ro"
                self.db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if writable and schema:
                self.db.executescript(schema)
        except (OSError, sqlite3.Error) as exc:
            raise error(
                f"cannot open {path}: {exc}; check the directory exists and is writable by the "
                "scheduler's user"
            ) from exc

    def close(self) -> None:
        self.db.close()

    def write(self, sql: str, params: Sequence[object], what: str) -> sqlite3.Cursor:
        with self.lock:
            self.require_writable()
            try:
                return self.db.execute(sql, params)
            except sqlite3.Error as exc:
                raise self._error(f"cannot {what}: {exc}") from exc

    def script(self, sql: str, what: str) -> None:
        """Statements run as one script (a schema, a migration)."""
        with self.lock:
            self.require_writable()
            try:
                self.db.executescript(sql)
            except sqlite3.Error as exc:
                raise self._error(f"cannot {what}: {exc}") from exc

    def select(
        self, sql: str, params: Sequence[object], what: str, *, missing_ok: bool = False
    ) -> list[tuple[object, ...]]:
        """Rows of a query; with `missing_ok`, none when an older program wrote the file
        without the table."""
        with self.lock:
            try:
                rows: list[tuple[object, ...]] = self.db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if missing_ok and "no such table" in str(exc):
                    return []
                raise self._error(f"cannot {what}: {exc}") from exc
            except sqlite3.Error as exc:
                raise self._error(f"cannot {what}: {exc}") from exc
        return rows

    @contextmanager
    def transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT under the lock, ROLLBACK on any error."""
        with self.lock:
            self.require_writable()
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield self.db
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._error(f"cannot {what}: {exc}") from exc

    def require_writable(self) -> None:
        if not self._writable:
            raise self._error(f"{self.path} was opened read-only")


def stored_time(moment: datetime) -> str:
    """An aware instant as stored: ISO 8601 in UTC."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no timezone; pass aware datetimes")
    return moment.astimezone(UTC).isoformat()


def read_time(text: object) -> datetime | None:
    return None if text is None else datetime.fromisoformat(str(text))


def optional_text(value: object) -> str | None:
    return None if value is None else str(value)
