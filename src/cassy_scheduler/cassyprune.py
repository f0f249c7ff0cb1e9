"""Pruning behind Scalar's Cassy: its API has no call to delete a backup, so a prune deletes
the objects from the storage Cassy writes to (the key layout ours shares), and Cassy's
ListBackups goes on listing the rows, COMPLETED.

Since those rows stay, what storage holds decides which backups are still there:
- a snapshot with nothing stored on any node is gone (deleted earlier, or never stored where
  this storage points) and left out, so it is never counted good again; a node with nothing
  stored but the others with files is left as Cassy says (a node may hold no data of the
  registered keyspaces);
- a deletion writes a marker first, under a root Cassy never reads
  (`cassy-scheduler-deletions/<cluster>/<snapshot>`), then removes the manifests (an
  `import` may have written ours), then every other object, then the marker. A snapshot
  with a marker is described as being deleted, so one cut short is finished by the next
  prune and never taken for whole.
Failed incrementals are left out: Cassy keeps their rows for ever, and their files (if any)
share the snapshot's prefix, so there is nothing of their own to delete. Cassy cannot refuse
a restore, so a restore it starts after the check that none runs, and before the deletion
ends, reads a snapshot going away: prune from cron at an hour no one restores.

This module bridges the two sides (Cassy's client and our storage code) for one command,
`prune --storage`; neither side imports it.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import grpc

from cassy_scheduler.client import (
    BackupEntry,
    CassyClient,
    CassyFailedPrecondition,
    CassyInvalidArgument,
    CassyUnavailable,
    Cluster,
    DeleteResult,
    StoredBackup,
)
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.storage.base import Storage
from cassy_scheduler.storage.errors import StorageError
from cassy_scheduler.storage.layout import (
    CLUSTER_BACKUP_ROOT,
    MANIFEST_DIRECTORY,
    NODE_BACKUP_ROOT,
    snapshot_prefixes,
)

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

DELETION_ROOT = "cassy-scheduler-deletions"
ROWS_STAY = (
    "Scalar's Cassy has no delete: its ListBackups still lists the deleted backups' rows; "
    "what the storage holds is what is left"
)


def deletion_marker(cluster_id: str, snapshot_id: str) -> str:
    return f"{DELETION_ROOT}/{cluster_id}/{snapshot_id}"


class CassyStorageBackups:
    """What a prune asks of the built-in server's Backups service, answered from Scalar's
    Cassy (its rows and restores) and the storage it writes to."""

    def __init__(self, client: CassyClient, storage: Storage) -> None:
        self._client = client
        self._storage = storage

    def list_clusters(
        self, cluster_id: str | None = None, limit: int = 0, *, timeout_s: float | None = None
    ) -> list[Cluster]:
        return self._client.list_clusters(cluster_id, limit, timeout_s=timeout_s)

    def register_cluster(self, cassandra_host: str, *, timeout_s: float | None = None) -> Cluster:
        return self._client.register_cluster(cassandra_host, timeout_s=timeout_s)

    def describe_backups(
        self, cluster_id: str, *, timeout_s: float | None = None
    ) -> list[StoredBackup]:
        # Cassy's listings are quick calls: its client's own deadline, not a deletion's.
        rows = self._client.list_backups(cluster_id=cluster_id)
        restoring = self._restoring(cluster_id, {r.target_ip for r in rows})
        sizes, marked = self._guarded(lambda: self._stored(cluster_id))
        held = {sid for sid, _ in sizes}
        described = []
        for row in rows:
            failed = row.status.is_final and row.status is not OperationStatus.COMPLETED
            if row.backup_type is BackupType.NODE_INCREMENTAL and failed:
                continue  # nothing of its own to delete, and its row cannot go
            if row.status.is_final and row.snapshot_id not in held | marked:
                continue  # gone: deleted earlier, or never stored here
            size = sizes.get((row.snapshot_id, row.target_ip))
            own = size if row.backup_type is not BackupType.NODE_INCREMENTAL else None
            described.append(
                StoredBackup(
                    target_ip=row.target_ip,
                    snapshot_id=row.snapshot_id,
                    created_at_ms=row.created_at_ms,
                    backup_type=row.backup_type,
                    status=row.status,
                    files=own[0] if own else None,
                    bytes=own[1] if own else None,
                    deleting=row.snapshot_id in marked,
                    restoring=row.snapshot_id in restoring,
                )
            )
        return described

    def delete_backup(
        self,
        cluster_id: str,
        snapshot_id: str,
        created_at_ms: int = 0,
        *,
        dry_run: bool = False,
        timeout_s: float | None = None,
    ) -> DeleteResult:
        """A snapshot with its incrementals: marker, manifests, objects, marker."""
        if created_at_ms:
            raise CassyInvalidArgument(
                "DeleteBackup",
                self._storage.uri,
                grpc.StatusCode.INVALID_ARGUMENT,
                "an incremental of Scalar's Cassy has no files of its own to delete",
            )
        rows = [
            r
            for r in self._client.list_backups(snapshot_id=snapshot_id)
            if r.cluster_id == cluster_id
        ]
        self._refuse_if_used(cluster_id, snapshot_id, rows)
        return self._guarded(lambda: self._delete(cluster_id, snapshot_id, dry_run))

    def _delete(self, cluster_id: str, snapshot_id: str, dry_run: bool) -> DeleteResult:
        keys = [
            i for p in snapshot_prefixes(cluster_id, snapshot_id) for i in self._storage.list(p)
        ]
        size = sum(info.size for info in keys)
        if dry_run:
            return DeleteResult(len(keys), size, 0, dry_run=True)
        marker = deletion_marker(cluster_id, snapshot_id)
        began = {"snapshot_id": snapshot_id, "started_at": datetime.now(UTC).isoformat()}
        self._storage.put_bytes(marker, json.dumps(began).encode())
        _log.warning(
            "deleting backup from Cassy's storage cluster=%s snapshot=%s objects=%d bytes=%d",
            cluster_id,
            snapshot_id,
            len(keys),
            size,
        )
        manifests = {i.key for i in keys if f"/{MANIFEST_DIRECTORY}/" in i.key}
        self._storage.delete_many(sorted(manifests))
        self._storage.delete_many([i.key for i in keys if i.key not in manifests])
        self._storage.delete(marker)
        return DeleteResult(len(keys), size, 0, dry_run=False)

    def _refuse_if_used(self, cluster_id: str, snapshot_id: str, rows: list[BackupEntry]) -> None:
        if any(not r.status.is_final for r in rows):
            reason = f"a backup of snapshot {snapshot_id} is still running: wait for it"
        elif snapshot_id in self._restoring(cluster_id, {r.target_ip for r in rows}):
            reason = f"a restore from snapshot {snapshot_id} is running: wait for it"
        else:
            return
        raise CassyFailedPrecondition(
            "DeleteBackup", self._storage.uri, grpc.StatusCode.FAILED_PRECONDITION, reason
        )

    def _restoring(self, cluster_id: str, nodes: set[str]) -> set[str]:
        """Snapshots a restore of Cassy's is reading now (it lists restores by node)."""
        return {
            r.snapshot_id
            for node in sorted(nodes)
            for r in self._client.list_restore_statuses(cluster_id, "", target_ip=node)
            if not r.status.is_final
        }

    def _stored(self, cluster_id: str) -> tuple[dict[tuple[str, str], tuple[int, int]], set[str]]:
        """Files and bytes per (snapshot, node), and the snapshots marked for deletion."""
        sizes: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for root in (NODE_BACKUP_ROOT, CLUSTER_BACKUP_ROOT):
            prefix = f"{root}/{cluster_id}/"
            for info in self._storage.list(prefix):
                parts = info.key[len(prefix) :].split("/")
                if len(parts) >= 3:  # snapshot/node/file...
                    size = sizes[(parts[0], parts[1])]
                    size[0] += 1
                    size[1] += info.size
        marked = {
            info.key.rsplit("/", 1)[1]
            for info in self._storage.list(f"{DELETION_ROOT}/{cluster_id}/")
        }
        return {key: (files, size) for key, (files, size) in sizes.items()}, marked

    def _guarded(self, work: Callable[[], _T]) -> _T:
        """A storage failure as a prune hears a server's: unreachable, so it stops."""
        try:
            return work()
        except StorageError as exc:
            raise CassyUnavailable(
                "DeleteBackup", self._storage.uri, grpc.StatusCode.UNAVAILABLE, str(exc)
            ) from exc
