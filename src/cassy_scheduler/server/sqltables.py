"""The metadata database's tables: the schema, and how rows and records convert.

Cassy's history tables keyed (cluster, node, snapshot, created_at); the store in metadata.py
runs the statements, this module only says what a row is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cassy_scheduler.protocol.types import BackupType, OperationStatus, RestoreType
from cassy_scheduler.server.rows import (
    BackupRecord,
    ClusterRecord,
    HistoryKey,
    InvalidQueryError,
    MetadataError,
    RestoreRecord,
)

SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE cluster_info (
    cluster_id TEXT PRIMARY KEY,
    cluster_name TEXT NOT NULL,
    target_ips TEXT NOT NULL,
    keyspaces TEXT NOT NULL,
    data_dir TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX cluster_info_by_created_at ON cluster_info (created_at);
CREATE TABLE backup_history (
    cluster_id TEXT NOT NULL,
    target_ip TEXT NOT NULL,
    snapshot_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    backup_type INTEGER NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT,
    PRIMARY KEY (cluster_id, target_ip, snapshot_id, created_at)
);
CREATE INDEX backup_history_by_snapshot ON backup_history (snapshot_id, created_at);
CREATE INDEX backup_history_by_cluster ON backup_history (cluster_id, created_at);
CREATE INDEX backup_history_by_status ON backup_history (status);
CREATE TABLE restore_history (
    cluster_id TEXT NOT NULL,
    target_ip TEXT NOT NULL,
    snapshot_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    restore_type INTEGER NOT NULL,
    snapshot_only INTEGER NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT,
    PRIMARY KEY (cluster_id, target_ip, snapshot_id, created_at)
);
CREATE INDEX restore_history_by_snapshot ON restore_history (snapshot_id, created_at);
CREATE INDEX restore_history_by_cluster ON restore_history (cluster_id, created_at);
CREATE INDEX restore_history_by_status ON restore_history (status);
"""

#: Version 2: what each node's part of a backup holds, and deletions begun (a row here
#: means the backup's rows no longer prove anything: its manifests may be gone already).
_SIZES_AND_DELETIONS = """
CREATE TABLE backup_sizes (
    cluster_id TEXT NOT NULL,
    target_ip TEXT NOT NULL,
    snapshot_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    files INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (cluster_id, target_ip, snapshot_id, created_at)
);
CREATE TABLE backup_deletions (
    cluster_id TEXT NOT NULL,
    snapshot_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    PRIMARY KEY (cluster_id, snapshot_id, created_at)
);
"""
SCHEMA += _SIZES_AND_DELETIONS

#: Version 3: every call that changes something, allowed or refused (server/gate.py).
_AUDIT = """
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    identity TEXT NOT NULL,
    peer TEXT NOT NULL,
    method TEXT NOT NULL,
    request TEXT NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX audit_log_by_at ON audit_log (at);
"""
SCHEMA += _AUDIT

#: What takes a database from the version of the key to the next one.
MIGRATIONS: dict[int, str] = {1: _SIZES_AND_DELETIONS, 2: _AUDIT}

_BACKUP_COLUMNS = (
    "cluster_id, target_ip, snapshot_id, created_at, updated_at, backup_type, status, reason"
)
_RESTORE_COLUMNS = (
    "cluster_id, target_ip, snapshot_id, created_at, updated_at, restore_type, snapshot_only, "
    "status, reason"
)
RecordT = TypeVar("RecordT", bound="BackupRecord | RestoreRecord")
KEY_MATCH = "cluster_id = ? AND target_ip = ? AND snapshot_id = ? AND created_at = ?"


def sql_limit(limit: int) -> int:
    # As in Cassy: 0 (and any negative) means no limit, which SQLite spells -1.
    return limit if limit > 0 else -1


def key_values(key: HistoryKey) -> tuple[str, str, str, int]:
    return (key.cluster_id, key.target_ip, key.snapshot_id, key.created_at)


def history_filter(
    cluster_id: str | None, target_ip: str | None, snapshot_id: str | None, what: str
) -> tuple[str, tuple[object, ...]]:
    """Cassy's precedence: cluster and node; else snapshot; else cluster; else an error."""
    if cluster_id and target_ip:
        return "cluster_id = ? AND target_ip = ?", (cluster_id, target_ip)
    if snapshot_id:
        return "snapshot_id = ?", (snapshot_id,)
    if cluster_id:
        return "cluster_id = ?", (cluster_id,)
    raise InvalidQueryError(
        f"listing {what} needs cluster_id with target_ip, or snapshot_id, or cluster_id: "
        "give at least one of them"
    )


def cluster_record(row: tuple[object, ...]) -> ClusterRecord:
    cluster_id, cluster_name, target_ips, keyspaces, data_dir, created_at, updated_at = row
    return ClusterRecord(
        cluster_id=str(cluster_id),
        cluster_name=str(cluster_name),
        target_ips=tuple(json.loads(str(target_ips))),
        keyspaces=tuple(json.loads(str(keyspaces))),
        data_dir=str(data_dir),
        created_at=integer_of(created_at),
        updated_at=integer_of(updated_at),
    )


def _backup_record(row: tuple[object, ...]) -> BackupRecord:
    cluster_id, target_ip, snapshot_id, created_at, updated_at, kind, status, reason = row
    return BackupRecord(
        cluster_id=str(cluster_id),
        target_ip=str(target_ip),
        snapshot_id=str(snapshot_id),
        created_at=integer_of(created_at),
        updated_at=integer_of(updated_at),
        backup_type=BackupType(integer_of(kind)),
        status=OperationStatus(integer_of(status)),
        reason=None if reason is None else str(reason),
    )


def _restore_record(row: tuple[object, ...]) -> RestoreRecord:
    (
        cluster_id,
        target_ip,
        snapshot_id,
        created_at,
        updated_at,
        kind,
        snapshot_only,
        status,
        reason,
    ) = row
    return RestoreRecord(
        cluster_id=str(cluster_id),
        target_ip=str(target_ip),
        snapshot_id=str(snapshot_id),
        created_at=integer_of(created_at),
        updated_at=integer_of(updated_at),
        restore_type=RestoreType(integer_of(kind)),
        snapshot_only=bool(snapshot_only),
        status=OperationStatus(integer_of(status)),
        reason=None if reason is None else str(reason),
    )


def integer_of(value: object) -> int:
    if not isinstance(value, int):
        raise MetadataError(f"metadata database holds {value!r} where an integer belongs")
    return value


def _backup_row(record: BackupRecord) -> tuple[object, ...]:
    return (
        *key_values(record.key),
        record.updated_at,
        int(record.backup_type),
        int(record.status),
        record.reason,
    )


def _restore_row(record: RestoreRecord) -> tuple[object, ...]:
    return (
        *key_values(record.key),
        record.updated_at,
        int(record.restore_type),
        int(record.snapshot_only),
        int(record.status),
        record.reason,
    )


@dataclass(frozen=True)
class HistoryTable(Generic[RecordT]):
    """A history table (backups or restores): its columns and how rows and records convert."""

    name: str
    what: str
    columns: str
    to_record: Callable[[tuple[object, ...]], RecordT]
    to_row: Callable[[RecordT], tuple[object, ...]]


BACKUPS = HistoryTable("backup_history", "backups", _BACKUP_COLUMNS, _backup_record, _backup_row)
RESTORES = HistoryTable(
    "restore_history", "restores", _RESTORE_COLUMNS, _restore_record, _restore_row
)
