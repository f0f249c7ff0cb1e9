"""The server's side of a deletion, on a real directory and a real SQLite metadata store: the
order (rows marked, manifests, objects, rows), a deletion cut short and finished by the next
call, and what is refused while a backup or a restore uses the snapshot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from cassy_scheduler.node.manifest import BackupIdentity, Manifest, ManifestEntry
from cassy_scheduler.protocol.types import BackupType, OperationStatus, RestoreType
from cassy_scheduler.server.deletion import DELETING_REASON, BackupDeletions
from cassy_scheduler.server.errors import InvalidRequestError, PreconditionError
from cassy_scheduler.server.metadata import SqliteMetadataStore
from cassy_scheduler.server.rows import BackupInUseError
from cassy_scheduler.storage.errors import StorageError
from cassy_scheduler.storage.filesystem import FilesystemStorage
from cassy_scheduler.storage.layout import backup_prefix, manifest_key

CLUSTER = "prod-1"
NODES = ("127.0.0.2", "127.0.0.3")
SNAPSHOT = BackupType.NODE_SNAPSHOT
INCREMENTAL = BackupType.NODE_INCREMENTAL


class CrashAfterManifests(FilesystemStorage):
    """Dies (as a SIGKILL would stop it) on the deletion of the objects after the manifests."""

    calls = 0

    def delete_many(self, keys: Sequence[str]) -> None:
        CrashAfterManifests.calls += 1
        if CrashAfterManifests.calls == 2:
            raise StorageError("the server was killed here")
        super().delete_many(keys)


def upload(storage: FilesystemStorage, sid: str, kind: BackupType, at: int) -> None:
    for node in NODES:
        prefix = backup_prefix(SNAPSHOT, CLUSTER, sid, node)
        entries = []
        for name in (f"ks/t/{kind.name}-{at}-Data.db", f"ks/t/{kind.name}-{at}-TOC.txt"):
            info = storage.put_bytes(prefix + name, b"x" * 50)
            entries.append(ManifestEntry(name, prefix + name, 50, info.sha256 or "0" * 64))
        identity = BackupIdentity(CLUSTER, sid, node, kind, at)
        manifest = Manifest(identity=identity, prefix=prefix, files=tuple(entries))
        storage.put_bytes(manifest_key(prefix, kind, at), manifest.to_json().encode())


@pytest.fixture
def metadata(tmp_path: Path) -> SqliteMetadataStore:
    store = SqliteMetadataStore(tmp_path / "metadata.db")
    store.add_cluster(
        cluster_id=CLUSTER, cluster_name="prod", target_ips=NODES, keyspaces=["ks"], data_dir="/d"
    )
    return store


def chain(
    storage: FilesystemStorage,
    metadata: SqliteMetadataStore,
    sid: str = "snap",
    incremental: OperationStatus = OperationStatus.COMPLETED,
) -> None:
    upload(storage, sid, SNAPSHOT, 1000)
    for kind, at, status in (
        (SNAPSHOT, 1000, OperationStatus.COMPLETED),
        (INCREMENTAL, 2000, incremental),
    ):
        metadata.insert_backups(
            cluster_id=CLUSTER,
            target_ips=NODES,
            snapshot_id=sid,
            backup_type=kind,
            created_at=at,
            status=status,
        )
    if incremental is OperationStatus.COMPLETED:
        upload(storage, sid, INCREMENTAL, 2000)


def test_a_snapshot_goes_with_its_incrementals_objects_and_rows(
    tmp_path: Path, metadata: SqliteMetadataStore
) -> None:
    storage = FilesystemStorage(tmp_path / "store", durable=False)
    chain(storage, metadata)
    deletions = BackupDeletions(metadata, storage)
    preview = deletions.delete(CLUSTER, "snap", 0, dry_run=True)
    assert (preview.objects, preview.rows, preview.dry_run) == (12, 4, True)
    assert len(list(storage.list("node-backup/"))) == 12  # a dry run deletes nothing
    done = deletions.delete(CLUSTER, "snap", 0, dry_run=False)
    assert (done.objects, done.bytes, done.rows) == (12, preview.bytes, 4)
    assert list(storage.list("node-backup/")) == []
    assert metadata.list_backups(cluster_id=CLUSTER) == []
    assert metadata.deletions(CLUSTER) == set()


def test_a_deletion_cut_short_is_no_backup_and_the_next_call_finishes_it(
    tmp_path: Path, metadata: SqliteMetadataStore
) -> None:
    storage = CrashAfterManifests(tmp_path / "store", durable=False)
    chain(storage, metadata)
    deletions = BackupDeletions(metadata, storage)
    with pytest.raises(StorageError):
        deletions.delete(CLUSTER, "snap", 0, dry_run=False)
    left = [i.key for i in storage.list("node-backup/")]
    assert left and not any("/upload-manifests/" in key for key in left)  # manifests first
    rows = metadata.list_backups(cluster_id=CLUSTER)
    assert {(r.status, r.reason) for r in rows} == {(OperationStatus.FAILED, DELETING_REASON)}
    assert all(d.deleting for d in deletions.describe(CLUSTER))
    with pytest.raises(BackupInUseError):  # no restore starts from what is left
        metadata.insert_restores(
            cluster_id=CLUSTER,
            target_ips=NODES[:1],
            snapshot_id="snap",
            restore_type=RestoreType.NODE,
            snapshot_only=False,
        )
    deletions.delete(CLUSTER, "snap", 0, dry_run=False)  # the next prune's call
    assert list(storage.list("node-backup/")) == []
    assert metadata.list_backups(cluster_id=CLUSTER) == []


def test_a_backup_or_a_restore_in_use_is_refused_and_nothing_is_marked(
    tmp_path: Path, metadata: SqliteMetadataStore
) -> None:
    storage = FilesystemStorage(tmp_path / "store", durable=False)
    chain(storage, metadata, incremental=OperationStatus.STARTED)
    deletions = BackupDeletions(metadata, storage)
    for dry_run in (True, False):
        with pytest.raises(BackupInUseError, match="still running"):
            deletions.delete(CLUSTER, "snap", 0, dry_run=dry_run)
    chain(storage, metadata, "other")
    metadata.insert_restores(
        cluster_id=CLUSTER,
        target_ips=NODES[:1],
        snapshot_id="other",
        restore_type=RestoreType.NODE,
        snapshot_only=False,
    )
    with pytest.raises(BackupInUseError, match="a restore from snapshot"):
        deletions.delete(CLUSTER, "other", 0, dry_run=False)
    assert metadata.deletions(CLUSTER) == set()
    statuses = {r.status for r in metadata.list_backups(snapshot_id="other")}
    assert statuses == {OperationStatus.COMPLETED}


def test_an_incremental_alone_goes_only_when_it_failed_and_only_its_record(
    tmp_path: Path, metadata: SqliteMetadataStore
) -> None:
    storage = FilesystemStorage(tmp_path / "store", durable=False)
    chain(storage, metadata, incremental=OperationStatus.FAILED)
    chain(storage, metadata, "whole")
    deletions = BackupDeletions(metadata, storage)
    with pytest.raises(PreconditionError, match="goes with the snapshot it extends"):
        deletions.delete(CLUSTER, "whole", 2000, dry_run=False)
    with pytest.raises(InvalidRequestError, match="is a snapshot"):
        deletions.delete(CLUSTER, "snap", 1000, dry_run=False)
    before = len(list(storage.list("node-backup/")))
    done = deletions.delete(CLUSTER, "snap", 2000, dry_run=False)
    assert (done.objects, done.rows) == (0, 2)  # it wrote no manifest; its two rows go
    assert len(list(storage.list("node-backup/"))) == before
    assert {r.backup_type for r in metadata.list_backups(snapshot_id="snap")} == {SNAPSHOT}


def test_an_incremental_failed_on_one_node_loses_that_nodes_record_only(
    tmp_path: Path, metadata: SqliteMetadataStore
) -> None:
    storage = FilesystemStorage(tmp_path / "store", durable=False)
    chain(storage, metadata)
    incremental = [r for r in metadata.list_backups(snapshot_id="snap") if r.created_at == 2000]
    metadata.update_backup_status(incremental[1].key, OperationStatus.FAILED, "disk full")
    done = BackupDeletions(metadata, storage).delete(CLUSTER, "snap", 2000, dry_run=False)
    assert done.rows == 1
    left = [r for r in metadata.list_backups(snapshot_id="snap") if r.created_at == 2000]
    assert [(r.target_ip, r.status) for r in left] == [
        (incremental[0].target_ip, OperationStatus.COMPLETED)
    ]
    with pytest.raises(PreconditionError, match="completed"):  # nothing failed is left
        BackupDeletions(metadata, storage).delete(CLUSTER, "snap", 2000, dry_run=False)
    metadata.insert_backups(  # and a deletion under way takes no new rows
        cluster_id=CLUSTER, target_ips=NODES, snapshot_id="fresh", backup_type=SNAPSHOT
    )
    metadata.begin_deletion(CLUSTER, "snap", 0, DELETING_REASON)
    with pytest.raises(BackupInUseError, match="is being deleted"):
        metadata.insert_backups(
            cluster_id=CLUSTER, target_ips=NODES, snapshot_id="snap", backup_type=INCREMENTAL
        )
