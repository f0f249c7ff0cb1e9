"""Deleting backups, and what each one holds: the server's side of retention.

The order makes a deletion cut short (a crash, SIGKILL) impossible to take for a backup:
1. the rows are marked FAILED ("being deleted") in one transaction with the checks that no
   backup of the snapshot runs and no restore reads it, and restores of it are refused from
   then on (metadata.begin_deletion);
2. every manifest goes, so no restore or `verify` can find the backup whole;
3. then every other object under the snapshot's prefixes;
4. then the rows.
Asked again after a crash, it picks up where it stopped. A snapshot goes with every
incremental that extends it (they share its prefixes); an incremental alone can be deleted
only when it did not complete, and then only its rows and manifest go, since a later
incremental may have written the same keys again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from cassy_scheduler.node.manifest import ManifestError, read_manifest
from cassy_scheduler.protocol.echo import echo
from cassy_scheduler.protocol.types import OperationStatus
from cassy_scheduler.server.errors import InvalidRequestError, PreconditionError
from cassy_scheduler.server.rows import BackupRecord, BackupSize, MetadataStore
from cassy_scheduler.storage import Storage
from cassy_scheduler.storage.base import ObjectInfo
from cassy_scheduler.storage.errors import StorageError
from cassy_scheduler.storage.layout import (
    MANIFEST_DIRECTORY,
    backup_prefix,
    manifest_key,
    snapshot_prefixes,
)

log = logging.getLogger(__name__)

DELETING_REASON = "being deleted: its manifests may already be gone, so it restores nothing"


@dataclass(frozen=True)
class Described:
    """One node's part of one backup, with what it holds (None: not known)."""

    row: BackupRecord
    size: BackupSize | None
    deleting: bool
    restoring: bool


@dataclass(frozen=True)
class Deleted:
    """What a deletion removed, or with dry_run, would remove."""

    objects: int
    bytes: int
    rows: int
    dry_run: bool


class BackupDeletions:
    """DescribeBackups and DeleteBackup over the metadata and the store."""

    def __init__(self, metadata: MetadataStore, storage: Storage) -> None:
        self._metadata = metadata
        self._storage = storage
        self._busy: set[tuple[str, str]] = set()  # snapshots being deleted by a call now
        self._busy_lock = threading.Lock()

    def describe(self, cluster_id: str) -> list[Described]:
        """Every row of the cluster, newest first, with its size; a completed row without
        one (taken before sizes were recorded, or imported) has it read from its manifest."""
        self._cluster(cluster_id)
        sizes = self._metadata.sizes(cluster_id)
        deleting = self._metadata.deletions(cluster_id)
        restoring = {
            r.snapshot_id
            for r in self._metadata.list_restores(cluster_id=cluster_id)
            if not r.status.is_final
        }
        described = []
        for row in self._metadata.list_backups(cluster_id=cluster_id):
            size = sizes.get(row.key)
            gone = (row.snapshot_id, 0) in deleting or (row.snapshot_id, row.created_at) in deleting
            if size is None and row.status is OperationStatus.COMPLETED and not gone:
                size = self._size_from_manifest(row)
            described.append(Described(row, size, gone, row.snapshot_id in restoring))
        return described

    def delete(
        self, cluster_id: str, snapshot_id: str, created_at: int, *, dry_run: bool
    ) -> Deleted:
        if dry_run:
            return self._delete(cluster_id, snapshot_id, created_at, dry_run=True)
        with self._busy_lock:
            if (cluster_id, snapshot_id) in self._busy:
                raise PreconditionError(
                    f"snapshot {echo(snapshot_id)} is being deleted by another call: wait for it"
                )
            self._busy.add((cluster_id, snapshot_id))
        try:
            return self._delete(cluster_id, snapshot_id, created_at, dry_run=False)
        finally:
            with self._busy_lock:
                self._busy.discard((cluster_id, snapshot_id))

    def _delete(
        self, cluster_id: str, snapshot_id: str, created_at: int, *, dry_run: bool
    ) -> Deleted:
        self._cluster(cluster_id)
        if not snapshot_id:
            raise InvalidRequestError("snapshot_id must be specified (ListBackups shows them)")
        rows = [
            r
            for r in self._metadata.list_backups(snapshot_id=snapshot_id)
            if r.cluster_id == cluster_id
        ]
        if created_at:
            rows = [r for r in rows if r.created_at == created_at]
        if not rows:
            raise InvalidRequestError(
                f"cluster {cluster_id} has no backup {echo(snapshot_id)}"
                + (f" created at {created_at}" if created_at else "")
                + ": pick one from ListBackups"
            )
        # Refused before any storage call; begin_deletion checks again, atomically.
        self._metadata.check_deletable(cluster_id, snapshot_id, created_at)
        if created_at:
            return self._delete_incremental(rows, dry_run=dry_run)
        if dry_run:
            keys = self._objects(cluster_id, snapshot_id)
            return Deleted(len(keys), sum(i.size for i in keys), len(rows), dry_run=True)
        # Marked before listing: nothing written for the snapshot from here on is missed.
        self._metadata.begin_deletion(cluster_id, snapshot_id, 0, DELETING_REASON)
        keys = self._objects(cluster_id, snapshot_id)
        size = sum(info.size for info in keys)
        log.warning(
            "deleting backup cluster=%s snapshot=%s rows=%d objects=%d bytes=%d",
            cluster_id,
            snapshot_id,
            len(rows),
            len(keys),
            size,
        )
        manifests = {i.key for i in keys if f"/{MANIFEST_DIRECTORY}/" in i.key}
        self._storage.delete_many(sorted(manifests))
        self._storage.delete_many([i.key for i in keys if i.key not in manifests])
        removed = self._metadata.finish_deletion(cluster_id, snapshot_id, 0)
        log.info("backup deleted cluster=%s snapshot=%s", cluster_id, snapshot_id)
        return Deleted(len(keys), size, removed, dry_run=False)

    def _delete_incremental(self, rows: list[BackupRecord], *, dry_run: bool) -> Deleted:
        """The rows of the nodes where an incremental did not complete, and a manifest one
        of them may have left; the nodes where it completed keep theirs (their files are
        part of the chain, and go with its snapshot)."""
        first = rows[0]
        if first.backup_type.is_snapshot:
            raise InvalidRequestError(
                f"{echo(first.snapshot_id)} created at {first.created_at} is a snapshot: it "
                "goes with its incrementals, so send created_at 0"
            )
        failed = [r for r in rows if r.status is not OperationStatus.COMPLETED]
        if not failed:
            raise PreconditionError(
                f"the incremental of {first.snapshot_id} created at {first.created_at} "
                "completed: a completed incremental goes with the snapshot it extends "
                "(send created_at 0 to delete them together)"
            )
        manifests = [
            manifest_key(
                backup_prefix(r.backup_type, r.cluster_id, r.snapshot_id, r.target_ip),
                r.backup_type,
                r.created_at,
            )
            for r in failed
        ]
        present = [s for s in (self._storage.stat(k) for k in manifests) if s is not None]
        size = sum(info.size for info in present)
        if dry_run:
            return Deleted(len(present), size, len(failed), dry_run=True)
        self._storage.delete_many([info.key for info in present])
        removed = self._metadata.remove_failed_rows([r.key for r in failed])
        return Deleted(len(present), size, removed, dry_run=False)

    def _objects(self, cluster_id: str, snapshot_id: str) -> list[ObjectInfo]:
        found: list[ObjectInfo] = []
        for prefix in snapshot_prefixes(cluster_id, snapshot_id):
            found.extend(self._storage.list(prefix))
        return found

    def _size_from_manifest(self, row: BackupRecord) -> BackupSize | None:
        prefix = backup_prefix(row.backup_type, row.cluster_id, row.snapshot_id, row.target_ip)
        try:
            manifest = read_manifest(
                self._storage, manifest_key(prefix, row.backup_type, row.created_at)
            )
        except (ManifestError, StorageError) as exc:
            log.warning("no size for a completed backup row=%s error=%s", row.key, exc)
            return None
        size = BackupSize(len(manifest.files), manifest.total_size)
        self._metadata.record_size(row.key, size.files, size.bytes)
        return size

    def _cluster(self, cluster_id: str) -> None:
        if not cluster_id:
            raise InvalidRequestError("cluster_id must be specified (ListClusters shows the ids)")
        if self._metadata.get_cluster(cluster_id) is None:
            raise InvalidRequestError(
                f"no cluster {echo(cluster_id)} is registered: pick an id from ListClusters"
            )
