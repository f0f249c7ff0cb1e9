"""The server's memory in one SQLite file: the rows of server/rows.py, stored.

Every RPC reads or writes it, and callers learn a backup's outcome only by polling it, so it
must be safe under the gRPC server's many threads and must not leave rows "in progress"
forever after a crash (see `fail_unfinished`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from cassy_scheduler.clock import SYSTEM_CLOCK, Clock, epoch_ms
from cassy_scheduler.protocol.types import BackupType, OperationStatus, RestoreType
from cassy_scheduler.server.rows import (
    AuditRecord,
    BackupInUseError,
    BackupRecord,
    BackupSize,
    ClusterRecord,
    DuplicateRecordError,
    HistoryKey,
    MetadataError,
    RecordNotFoundError,
    RestoreRecord,
)
from cassy_scheduler.server.sqltables import (
    BACKUPS,
    KEY_MATCH,
    MIGRATIONS,
    RESTORES,
    SCHEMA,
    SCHEMA_VERSION,
    HistoryTable,
    RecordT,
    cluster_record,
    history_filter,
    integer_of,
    key_values,
    sql_limit,
)

_UNFINISHED = (int(OperationStatus.INITIALIZED), int(OperationStatus.STARTED))


class SqliteMetadataStore:
    """The metadata store in one SQLite file (WAL mode), shared by all server threads.

    One connection guarded by a lock: the load is a few rows per request, so serialising
    is simpler than a connection per thread and keeps writes ordered.
    """

    def __init__(self, path: Path | str, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._path = str(path)
        self._clock = clock
        self._lock = threading.RLock()
        try:
            self._connection = sqlite3.connect(
                self._path, check_same_thread=False, isolation_level=None, timeout=10.0
            )
        except sqlite3.Error as exc:
            raise MetadataError(
                f"cannot open metadata database {self._path!r}: {exc}; "
                "check that its directory exists and is writable"
            ) from exc
        try:
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA foreign_keys=ON")
            self._ensure_schema()
        except BaseException:
            self._connection.close()
            raise

    def _now_ms(self) -> int:
        return epoch_ms(self._clock.now())

    @property
    def path(self) -> str:
        return self._path

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    # clusters

    def add_cluster(
        self,
        *,
        cluster_id: str,
        cluster_name: str,
        target_ips: Sequence[str],
        keyspaces: Sequence[str],
        data_dir: str,
    ) -> ClusterRecord:
        now = self._now_ms()
        record = ClusterRecord(
            cluster_id=cluster_id,
            cluster_name=cluster_name,
            target_ips=tuple(target_ips),
            keyspaces=tuple(keyspaces),
            data_dir=data_dir,
            created_at=now,
            updated_at=now,
        )
        with self._transaction() as connection:
            try:
                connection.execute(
                    "INSERT INTO cluster_info (cluster_id, cluster_name, target_ips, keyspaces, "
                    "data_dir, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.cluster_id,
                        record.cluster_name,
                        json.dumps(record.target_ips),
                        json.dumps(record.keyspaces),
                        record.data_dir,
                        record.created_at,
                        record.updated_at,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise DuplicateRecordError(
                    f"cluster {cluster_id!r} is already registered: use a new cluster id"
                ) from exc
        return record

    def get_cluster(self, cluster_id: str) -> ClusterRecord | None:
        found = self.list_clusters(cluster_id)
        return found[0] if found else None

    def list_clusters(self, cluster_id: str | None = None, limit: int = 0) -> list[ClusterRecord]:
        """With `cluster_id`, that cluster (or none); else all, newest first."""
        query = (
            "SELECT cluster_id, cluster_name, target_ips, keyspaces, data_dir, created_at, "
            "updated_at FROM cluster_info"
        )
        parameters: tuple[object, ...] = ()
        if cluster_id:
            query += " WHERE cluster_id = ?"
            parameters = (cluster_id,)
        query += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        rows = self._select(query, (*parameters, sql_limit(limit)))
        return [cluster_record(row) for row in rows]

    # backups

    def insert_backups(
        self,
        *,
        cluster_id: str,
        target_ips: Sequence[str],
        snapshot_id: str,
        backup_type: BackupType,
        created_at: int | None = None,
        status: OperationStatus = OperationStatus.INITIALIZED,
    ) -> list[BackupRecord]:
        """One row per node, all sharing one `created_at` (now, unless given), INITIALIZED
        unless told (an imported backup's rows are COMPLETED from the start)."""
        stamp = self._now_ms() if created_at is None else created_at
        records = [
            BackupRecord(
                cluster_id=cluster_id,
                target_ip=ip,
                snapshot_id=snapshot_id,
                created_at=stamp,
                updated_at=stamp,
                backup_type=backup_type,
                status=status,
            )
            for ip in target_ips
        ]
        # A deletion removes every row of the snapshot when it ends: none may join it now.
        self._insert(BACKUPS, records, unless_deleting=(cluster_id, snapshot_id))
        return records

    def update_backup_status(
        self, key: HistoryKey, status: OperationStatus, reason: str | None = None
    ) -> BackupRecord:
        """Set a row's status and reason (None clears it); `updated_at` becomes now."""
        return self._set_status(BACKUPS, key, status, reason)

    def get_backup(self, key: HistoryKey) -> BackupRecord | None:
        return self._get(BACKUPS, key)

    def list_backups(
        self,
        cluster_id: str | None = None,
        target_ip: str | None = None,
        snapshot_id: str | None = None,
        limit: int = 0,
    ) -> list[BackupRecord]:
        """Cassy's ListBackups: node, else snapshot, else cluster; newest first."""
        return self._list(BACKUPS, cluster_id, target_ip, snapshot_id, limit)

    # restores

    def insert_restores(
        self,
        *,
        cluster_id: str,
        target_ips: Sequence[str],
        snapshot_id: str,
        restore_type: RestoreType,
        snapshot_only: bool,
        created_at: int | None = None,
    ) -> list[RestoreRecord]:
        """One INITIALIZED row per node, all sharing one `created_at` (now, unless given)."""
        stamp = self._now_ms() if created_at is None else created_at
        records = [
            RestoreRecord(
                cluster_id=cluster_id,
                target_ip=ip,
                snapshot_id=snapshot_id,
                created_at=stamp,
                updated_at=stamp,
                restore_type=restore_type,
                snapshot_only=snapshot_only,
                status=OperationStatus.INITIALIZED,
            )
            for ip in target_ips
        ]
        self._insert(RESTORES, records, unless_deleting=(cluster_id, snapshot_id))
        return records

    def update_restore_status(
        self, key: HistoryKey, status: OperationStatus, reason: str | None = None
    ) -> RestoreRecord:
        """Set a row's status and reason (None clears it); `updated_at` becomes now."""
        return self._set_status(RESTORES, key, status, reason)

    def get_restore(self, key: HistoryKey) -> RestoreRecord | None:
        return self._get(RESTORES, key)

    def list_restores(
        self,
        cluster_id: str | None = None,
        target_ip: str | None = None,
        snapshot_id: str | None = None,
        limit: int = 0,
    ) -> list[RestoreRecord]:
        """Cassy's ListRestoreStatuses: node, else snapshot, else cluster; newest first."""
        return self._list(RESTORES, cluster_id, target_ip, snapshot_id, limit)

    # sizes and deletions

    def record_size(self, key: HistoryKey, files: int, size: int) -> None:
        """What one node's part of a backup holds: written when it completes, or learnt
        later from its manifest."""
        with self._transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO backup_sizes (cluster_id, target_ip, snapshot_id, "
                "created_at, files, bytes) VALUES (?, ?, ?, ?, ?, ?)",
                (*key_values(key), files, size),
            )

    def sizes(self, cluster_id: str) -> dict[HistoryKey, BackupSize]:
        rows = self._select(
            "SELECT cluster_id, target_ip, snapshot_id, created_at, files, bytes "
            "FROM backup_sizes WHERE cluster_id = ?",
            (cluster_id,),
        )
        found: dict[HistoryKey, BackupSize] = {}
        for cluster, ip, snapshot, created, files, size in rows:
            key = HistoryKey(str(cluster), str(ip), str(snapshot), integer_of(created))
            found[key] = BackupSize(integer_of(files), integer_of(size))
        return found

    def deletions(self, cluster_id: str) -> set[tuple[str, int]]:
        """(snapshot_id, created_at) of each deletion begun and not finished; created_at 0
        stands for a snapshot with its incrementals."""
        rows = self._select(
            "SELECT snapshot_id, created_at FROM backup_deletions WHERE cluster_id = ?",
            (cluster_id,),
        )
        return {(str(snapshot), integer_of(created)) for snapshot, created in rows}

    def begin_deletion(
        self, cluster_id: str, snapshot_id: str, created_at: int, reason: str
    ) -> list[BackupRecord]:
        """Mark the rows of a deletion FAILED with `reason`, in one transaction with the
        checks that nothing uses them: no node of them running, no restore of the snapshot
        unfinished. From here on they prove nothing, so the manifests may go; begun again
        after a crash, it only re-marks. `created_at` 0: the snapshot with its incrementals."""
        where, params = _deletion_rows(cluster_id, snapshot_id, created_at)
        with self._transaction() as connection:
            _refuse_if_used(connection, cluster_id, snapshot_id, created_at)
            connection.execute(
                "INSERT OR IGNORE INTO backup_deletions (cluster_id, snapshot_id, created_at, "
                "started_at) VALUES (?, ?, ?, ?)",
                (cluster_id, snapshot_id, created_at, self._now_ms()),
            )
            connection.execute(
                f"UPDATE backup_history SET status = ?, reason = ?, updated_at = ? WHERE {where}",
                (int(OperationStatus.FAILED), reason, self._now_ms(), *params),
            )
            rows = connection.execute(
                f"SELECT {BACKUPS.columns} FROM backup_history WHERE {where}", params
            ).fetchall()
        return [BACKUPS.to_record(row) for row in rows]

    def remove_failed_rows(self, keys: Sequence[HistoryKey]) -> int:
        """Remove these rows (and their sizes) where they ended without completing; a row
        that completed, or still runs, stays. Returns how many went."""
        removed = 0
        with self._transaction() as connection:
            for key in keys:
                removed += connection.execute(
                    f"DELETE FROM backup_history WHERE {KEY_MATCH} AND status NOT IN (?, ?, ?)",
                    (*key_values(key), int(OperationStatus.COMPLETED), *_UNFINISHED),
                ).rowcount
                connection.execute(f"DELETE FROM backup_sizes WHERE {KEY_MATCH}", key_values(key))
        return removed

    def check_deletable(self, cluster_id: str, snapshot_id: str, created_at: int) -> None:
        """What begin_deletion would refuse, without marking anything (BackupInUseError)."""
        with self._lock:
            _refuse_if_used(self._connection, cluster_id, snapshot_id, created_at)

    def finish_deletion(self, cluster_id: str, snapshot_id: str, created_at: int) -> int:
        """Remove the rows of a deletion whose objects are gone; returns how many went."""
        where, params = _deletion_rows(cluster_id, snapshot_id, created_at)
        with self._transaction() as connection:
            removed = connection.execute(
                f"DELETE FROM backup_history WHERE {where}", params
            ).rowcount
            connection.execute(f"DELETE FROM backup_sizes WHERE {where}", params)
            connection.execute(
                "DELETE FROM backup_deletions WHERE cluster_id = ? AND snapshot_id = ? "
                "AND created_at = ?",
                (cluster_id, snapshot_id, created_at),
            )
        return int(removed)

    # maintenance

    def fail_unfinished(self, reason: str) -> int:
        """Mark every INITIALIZED or STARTED row FAILED; run once at server start.

        Work does not survive a restart, so such rows would otherwise stay in progress and
        leave pollers waiting forever. Returns how many rows changed.
        """
        return self._fail_unfinished(reason, (BACKUPS.name, RESTORES.name))

    def fail_unfinished_backups(self, reason: str) -> int:
        return self._fail_unfinished(reason, (BACKUPS.name,))

    def fail_unfinished_restores(self, reason: str) -> int:
        return self._fail_unfinished(reason, (RESTORES.name,))

    def _fail_unfinished(self, reason: str, tables: Sequence[str]) -> int:
        now = self._now_ms()
        changed = 0
        with self._transaction() as connection:
            for table in tables:
                cursor = connection.execute(
                    f"UPDATE {table} SET status = ?, reason = ?, updated_at = ? "
                    "WHERE status IN (?, ?)",
                    (int(OperationStatus.FAILED), reason, now, *_UNFINISHED),
                )
                changed += cursor.rowcount
        return changed

    # the audit log

    def record_call(self, record: AuditRecord) -> None:
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO audit_log (at, identity, peer, method, request, code, message) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.at,
                    record.identity,
                    record.peer,
                    record.method,
                    record.request,
                    record.code,
                    record.message,
                ),
            )

    def audit(
        self, limit: int, identity: str | None = None, before_id: int | None = None
    ) -> list[AuditRecord]:
        """Newest first; `before_id` (exclusive) pages back from the oldest entry seen (ids,
        not times: many calls share a millisecond)."""
        where: list[str] = ["1 = 1"]
        params: list[object] = []
        if identity is not None:
            where.append("identity = ?")
            params.append(identity)
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        rows = self._select(
            "SELECT id, at, identity, peer, method, request, code, message FROM audit_log "
            f"WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*params, sql_limit(limit)),
        )
        return [
            AuditRecord(
                at=integer_of(at),
                identity=str(identity),
                peer=str(peer),
                method=str(method),
                request=str(request),
                code=str(code),
                message=str(message),
                id=integer_of(row_id),
            )
            for row_id, at, identity, peer, method, request, code, message in rows
        ]

    def prune_audit(self, before_ms: int) -> int:
        """Remove the audit rows written before `before_ms`; how many went."""
        with self._transaction() as connection:
            removed = connection.execute("DELETE FROM audit_log WHERE at < ?", (before_ms,))
            return int(removed.rowcount)

    def dump_sql(self) -> str:
        """The whole database as SQL text (what `sqlite3 db .dump` prints), for backups."""
        with self._lock:
            return "\n".join(self._connection.iterdump()) + "\n"

    # internals

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            connection = self._connection
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise MetadataError(f"metadata database {self._path!r}: {exc}") from exc
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            try:
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                connection.execute("ROLLBACK")
                raise MetadataError(f"metadata database {self._path!r}: {exc}") from exc

    def _select(self, query: str, parameters: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self._lock:
            try:
                rows: list[tuple[object, ...]] = self._connection.execute(
                    query, parameters
                ).fetchall()
            except sqlite3.Error as exc:
                raise MetadataError(f"metadata database {self._path!r}: {exc}") from exc
        return rows

    def _insert(
        self,
        table: HistoryTable[RecordT],
        records: Sequence[RecordT],
        *,
        unless_deleting: tuple[str, str] | None = None,
    ) -> None:
        if not records:
            return
        rows = [table.to_row(record) for record in records]
        placeholders = ", ".join("?" * len(rows[0]))
        with self._transaction() as connection:
            if unless_deleting is not None and _deleting(connection, *unless_deleting):
                cluster_id, snapshot_id = unless_deleting
                instead = (
                    "restore another snapshot (ListBackups shows them)"
                    if table is RESTORES
                    else "extend a newer snapshot, or take one"
                )
                raise BackupInUseError(
                    f"snapshot {snapshot_id!r} of cluster {cluster_id!r} is being deleted: "
                    + instead
                )
            try:
                connection.executemany(
                    f"INSERT INTO {table.name} ({table.columns}) VALUES ({placeholders})", rows
                )
            except sqlite3.IntegrityError as exc:
                raise DuplicateRecordError(
                    f"{table.name} already has a row with key {rows[0][:4]} or a sibling of "
                    "it: each request needs its own created_at"
                ) from exc

    def _set_status(
        self,
        table: HistoryTable[RecordT],
        key: HistoryKey,
        status: OperationStatus,
        reason: str | None,
    ) -> RecordT:
        with self._transaction() as connection:
            cursor = connection.execute(
                f"UPDATE {table.name} SET status = ?, reason = ?, updated_at = ? WHERE {KEY_MATCH}",
                (int(status), reason, self._now_ms(), *key_values(key)),
            )
            if cursor.rowcount != 1:
                raise RecordNotFoundError(
                    f"no {table.name} row for cluster {key.cluster_id!r}, node "
                    f"{key.target_ip!r}, snapshot {key.snapshot_id!r}, created_at "
                    f"{key.created_at}: insert the rows before updating them"
                )
        record = self._get(table, key)
        if record is None:  # deleted between the two statements: not done by this store
            raise RecordNotFoundError(f"{table.name} row {key} disappeared while being updated")
        return record

    def _get(self, table: HistoryTable[RecordT], key: HistoryKey) -> RecordT | None:
        rows = self._select(
            f"SELECT {table.columns} FROM {table.name} WHERE {KEY_MATCH}", key_values(key)
        )
        return table.to_record(rows[0]) if rows else None

    def _list(
        self,
        table: HistoryTable[RecordT],
        cluster_id: str | None,
        target_ip: str | None,
        snapshot_id: str | None,
        limit: int,
    ) -> list[RecordT]:
        where, parameters = history_filter(cluster_id, target_ip, snapshot_id, table.what)
        rows = self._select(
            f"SELECT {table.columns} FROM {table.name} WHERE {where} "
            "ORDER BY created_at DESC, target_ip ASC LIMIT ?",
            (*parameters, sql_limit(limit)),
        )
        return [table.to_record(row) for row in rows]

    def _ensure_schema(self) -> None:
        with self._lock:
            tables = {
                row[0]
                for row in self._connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
            if "schema_version" not in tables:
                if tables:
                    raise MetadataError(
                        f"{self._path!r} is an SQLite database without our schema_version "
                        "table: point the server at a new file or at its own metadata database"
                    )
                with self._transaction() as connection:
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            connection.execute(statement)
                    connection.execute(
                        "INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,)
                    )
                return
            row = self._connection.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0] if row else None
            while version in MIGRATIONS:
                with self._transaction() as connection:
                    for statement in MIGRATIONS[version].split(";"):
                        if statement.strip():
                            connection.execute(statement)
                    version += 1
                    connection.execute(
                        "INSERT INTO schema_version (version) VALUES (?)", (version,)
                    )
            if version != SCHEMA_VERSION:
                raise MetadataError(
                    f"metadata database {self._path!r} has schema version {version}, this "
                    f"server knows only {SCHEMA_VERSION}: use the matching cassy-scheduler"
                )


def _deleting(connection: sqlite3.Connection, cluster_id: str, snapshot_id: str) -> bool:
    row = connection.execute(
        "SELECT 1 FROM backup_deletions WHERE cluster_id = ? AND snapshot_id = ? "
        "AND created_at = 0 LIMIT 1",
        (cluster_id, snapshot_id),
    ).fetchone()
    return row is not None


def _refuse_if_used(
    connection: sqlite3.Connection, cluster_id: str, snapshot_id: str, created_at: int
) -> None:
    where, params = _deletion_rows(cluster_id, snapshot_id, created_at)
    busy = connection.execute(
        f"SELECT COUNT(*) FROM backup_history WHERE {where} AND status IN (?, ?)",
        (*params, *_UNFINISHED),
    ).fetchone()[0]
    if busy:
        raise BackupInUseError(
            f"a backup of snapshot {snapshot_id!r} is still running: wait for it to "
            "finish (ListBackups shows it), then delete"
        )
    restoring = connection.execute(
        "SELECT COUNT(*) FROM restore_history WHERE cluster_id = ? AND snapshot_id = ? "
        "AND status IN (?, ?)",
        (cluster_id, snapshot_id, *_UNFINISHED),
    ).fetchone()[0]
    if restoring:
        raise BackupInUseError(
            f"a restore from snapshot {snapshot_id!r} is running: wait for it to "
            "finish (ListRestoreStatuses shows it), then delete"
        )


def _deletion_rows(
    cluster_id: str, snapshot_id: str, created_at: int
) -> tuple[str, tuple[object, ...]]:
    """The rows one deletion removes: every row of the snapshot, or one backup's rows."""
    if created_at == 0:
        return "cluster_id = ? AND snapshot_id = ?", (cluster_id, snapshot_id)
    return (
        "cluster_id = ? AND snapshot_id = ? AND created_at = ?",
        (cluster_id, snapshot_id, created_at),
    )
