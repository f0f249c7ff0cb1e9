"""What the server keeps, as the rest of the server sees it: registered clusters, one row
per node of each backup and restore request, and the store that holds them.

Rows follow Cassy's records, plus a `reason` for failures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cassy_scheduler.protocol.types import BackupType, OperationStatus, RestoreType


class MetadataError(Exception):
    """The metadata store failed or was asked something it cannot answer."""


class InvalidQueryError(MetadataError, ValueError):
    """A listing lacks the filters it needs (the servicer answers INVALID_ARGUMENT)."""


class RecordNotFoundError(MetadataError, LookupError):
    """The history row or cluster to update does not exist."""


class BackupInUseError(MetadataError):
    """A backup cannot be deleted or restored now: something else uses it."""


class DuplicateRecordError(MetadataError):
    """A row with the same key already exists."""


@dataclass(frozen=True)
class ClusterRecord:
    """A registered cluster, as RegisterCluster discovered it."""

    cluster_id: str
    cluster_name: str
    target_ips: tuple[str, ...]
    keyspaces: tuple[str, ...]
    data_dir: str
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class HistoryKey:
    """Identifies one node's row of one backup or restore request."""

    cluster_id: str
    target_ip: str
    snapshot_id: str
    created_at: int


@dataclass(frozen=True)
class BackupRecord:
    """One node's row of one backup request."""

    cluster_id: str
    target_ip: str
    snapshot_id: str
    created_at: int
    updated_at: int
    backup_type: BackupType
    status: OperationStatus
    reason: str | None = None

    @property
    def key(self) -> HistoryKey:
        return HistoryKey(self.cluster_id, self.target_ip, self.snapshot_id, self.created_at)


@dataclass(frozen=True)
class RestoreRecord:
    """One node's row of one restore request."""

    cluster_id: str
    target_ip: str
    snapshot_id: str
    created_at: int
    updated_at: int
    restore_type: RestoreType
    snapshot_only: bool
    status: OperationStatus
    reason: str | None = None

    @property
    def key(self) -> HistoryKey:
        return HistoryKey(self.cluster_id, self.target_ip, self.snapshot_id, self.created_at)


@dataclass(frozen=True)
class AuditRecord:
    """One call that changes something: who made it, from where, what, and how it ended."""

    at: int  # ms since the epoch
    identity: str
    peer: str
    method: str
    request: str  # the request's fields as JSON
    code: str  # the gRPC status's name
    message: str
    id: int = 0  # its place in the log, given when it is stored


@dataclass(frozen=True)
class BackupSize:
    """What one node's part of one backup holds in storage."""

    files: int
    bytes: int


class MetadataStore(Protocol):
    """What the servicer and the operations need from the metadata database."""

    def add_cluster(
        self,
        *,
        cluster_id: str,
        cluster_name: str,
        target_ips: Sequence[str],
        keyspaces: Sequence[str],
        data_dir: str,
    ) -> ClusterRecord: ...

    def get_cluster(self, cluster_id: str) -> ClusterRecord | None: ...

    def list_clusters(
        self, cluster_id: str | None = None, limit: int = 0
    ) -> list[ClusterRecord]: ...

    def insert_backups(
        self,
        *,
        cluster_id: str,
        target_ips: Sequence[str],
        snapshot_id: str,
        backup_type: BackupType,
        created_at: int | None = None,
    ) -> list[BackupRecord]: ...

    def update_backup_status(
        self, key: HistoryKey, status: OperationStatus, reason: str | None = None
    ) -> BackupRecord: ...

    def get_backup(self, key: HistoryKey) -> BackupRecord | None: ...

    def list_backups(
        self,
        cluster_id: str | None = None,
        target_ip: str | None = None,
        snapshot_id: str | None = None,
        limit: int = 0,
    ) -> list[BackupRecord]: ...

    def insert_restores(
        self,
        *,
        cluster_id: str,
        target_ips: Sequence[str],
        snapshot_id: str,
        restore_type: RestoreType,
        snapshot_only: bool,
        created_at: int | None = None,
    ) -> list[RestoreRecord]: ...

    def update_restore_status(
        self, key: HistoryKey, status: OperationStatus, reason: str | None = None
    ) -> RestoreRecord: ...

    def get_restore(self, key: HistoryKey) -> RestoreRecord | None: ...

    def list_restores(
        self,
        cluster_id: str | None = None,
        target_ip: str | None = None,
        snapshot_id: str | None = None,
        limit: int = 0,
    ) -> list[RestoreRecord]: ...

    def fail_unfinished(self, reason: str) -> int: ...

    def fail_unfinished_backups(self, reason: str) -> int: ...

    def fail_unfinished_restores(self, reason: str) -> int: ...

    def record_size(self, key: HistoryKey, files: int, size: int) -> None: ...

    def sizes(self, cluster_id: str) -> dict[HistoryKey, BackupSize]: ...

    def deletions(self, cluster_id: str) -> set[tuple[str, int]]: ...

    def begin_deletion(
        self, cluster_id: str, snapshot_id: str, created_at: int, reason: str
    ) -> list[BackupRecord]: ...

    def check_deletable(self, cluster_id: str, snapshot_id: str, created_at: int) -> None: ...

    def remove_failed_rows(self, keys: Sequence[HistoryKey]) -> int: ...

    def finish_deletion(self, cluster_id: str, snapshot_id: str, created_at: int) -> int: ...

    def dump_sql(self) -> str: ...

    def close(self) -> None: ...
