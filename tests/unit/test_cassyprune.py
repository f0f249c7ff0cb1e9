"""Pruning behind Scalar's Cassy, against an in-memory Cassy and a real directory in its
key layout: storage decides what a backup is, since Cassy's rows stay after a deletion, and
a deletion cut short is marked so no prune takes it for whole."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cassy_scheduler.cassyprune import CassyStorageBackups, deletion_marker
from cassy_scheduler.client import CassyFailedPrecondition, CassyUnavailable, RestoreEntry
from cassy_scheduler.protocol.types import BackupType, OperationStatus, RestoreType
from cassy_scheduler.storage.base import ObjectInfo
from cassy_scheduler.storage.errors import StorageError
from cassy_scheduler.storage.filesystem import FilesystemStorage
from tests.unit.fakes import FakeCassy

NODES = ("127.0.0.2", "127.0.0.3")


@dataclass
class CassyWithRestores(FakeCassy):
    restores: list[RestoreEntry] = field(default_factory=list)

    def list_restore_statuses(
        self,
        cluster_id: str,
        snapshot_id: str,
        target_ip: str | None = None,
        limit: int = 0,
        *,
        timeout_s: float | None = None,
    ) -> list[RestoreEntry]:
        return [r for r in self.restores if r.target_ip == target_ip]


def stored(storage: FilesystemStorage, cluster: str, sid: str, nodes: tuple[str, ...]) -> None:
    for node in nodes:
        for name in ("ks/t-1/nb-1-big-Data.db", "ks/t-1/nb-1-big-TOC.txt"):
            storage.put_bytes(f"node-backup/{cluster}/{sid}/{node}/{name}", b"x" * 100)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[CassyWithRestores, FilesystemStorage, str]:
    cassy = CassyWithRestores()
    cluster = cassy.add_cluster("prod", NODES)
    storage = FilesystemStorage(tmp_path / "bucket", durable=False)
    for n in range(3):
        sid = cassy.add_backup(cluster, BackupType.NODE_SNAPSHOT, snapshot_id=f"snap-{n}")
        stored(storage, cluster.cluster_id, sid, NODES)
    return cassy, storage, cluster.cluster_id


def test_rows_are_described_by_what_storage_holds(
    setup: tuple[CassyWithRestores, FilesystemStorage, str],
) -> None:
    cassy, storage, cid = setup
    cluster = cassy.clusters[0]
    cassy.add_backup(cluster, BackupType.NODE_SNAPSHOT, snapshot_id="gone")  # nothing stored
    cassy.add_backup(cluster, BackupType.NODE_SNAPSHOT, snapshot_id="half")
    stored(storage, cid, "half", NODES[:1])  # one node's files only
    cassy.add_backup(
        cluster,
        BackupType.NODE_INCREMENTAL,
        {ip: OperationStatus.FAILED for ip in NODES},
        snapshot_id="snap-2",
    )
    described = CassyStorageBackups(cassy, storage).describe_backups(cid)  # type: ignore[arg-type]
    snapshots = {(b.snapshot_id, b.target_ip): b for b in described}
    assert {sid for sid, _ in snapshots} == {"snap-0", "snap-1", "snap-2", "half"}
    assert snapshots[("snap-0", NODES[0])].bytes == 200
    assert snapshots[("half", NODES[0])].status is OperationStatus.COMPLETED
    # a node may hold no data of the registered keyspaces: Cassy's word stands for it
    assert snapshots[("half", NODES[1])].status is OperationStatus.COMPLETED
    assert snapshots[("half", NODES[1])].bytes is None
    assert not any(b.backup_type is BackupType.NODE_INCREMENTAL for b in described)


def test_a_deletion_goes_marker_first_and_a_cut_short_one_is_described_deleting(
    setup: tuple[CassyWithRestores, FilesystemStorage, str],
) -> None:
    cassy, storage, cid = setup
    backups = CassyStorageBackups(cassy, storage)  # type: ignore[arg-type]
    preview = backups.delete_backup(cid, "snap-0", dry_run=True)
    assert (preview.objects, preview.bytes, preview.dry_run) == (4, 400, True)
    done = backups.delete_backup(cid, "snap-0")
    assert (done.objects, done.bytes) == (4, 400)
    assert list(storage.list(f"node-backup/{cid}/snap-0/")) == []
    assert storage.stat(deletion_marker(cid, "snap-0")) is None  # removed last
    assert "snap-0" not in {b.snapshot_id for b in backups.describe_backups(cid)}
    assert len(cassy.list_backups(snapshot_id="snap-0")) == 2  # Cassy's rows stay

    storage.put_bytes(deletion_marker(cid, "snap-1"), b"{}")  # as a crash would leave it
    storage.delete(f"node-backup/{cid}/snap-1/{NODES[0]}/ks/t-1/nb-1-big-TOC.txt")
    marked = [b for b in backups.describe_backups(cid) if b.snapshot_id == "snap-1"]
    assert marked and all(b.deleting for b in marked)


def test_a_snapshot_in_use_is_refused_before_anything_is_written(
    setup: tuple[CassyWithRestores, FilesystemStorage, str],
) -> None:
    cassy, storage, cid = setup
    now = datetime(2026, 1, 1, tzinfo=UTC)
    cassy.restores.append(
        RestoreEntry(
            cid, NODES[0], "snap-1", now, 1, now, RestoreType.NODE, OperationStatus.STARTED
        )
    )
    backups = CassyStorageBackups(cassy, storage)  # type: ignore[arg-type]
    with pytest.raises(CassyFailedPrecondition, match="a restore from snapshot snap-1"):
        backups.delete_backup(cid, "snap-1")
    assert storage.stat(deletion_marker(cid, "snap-1")) is None
    assert [b.restoring for b in backups.describe_backups(cid) if b.snapshot_id == "snap-1"] == [
        True,
        True,
    ]


class DownStorage(FilesystemStorage):
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        raise StorageError("s3://bucket: connection refused")


def test_a_storage_failure_is_heard_as_an_unreachable_server(
    setup: tuple[CassyWithRestores, FilesystemStorage, str], tmp_path: Path
) -> None:
    cassy, _, cid = setup
    backups = CassyStorageBackups(cassy, DownStorage(tmp_path))  # type: ignore[arg-type]
    with pytest.raises(CassyUnavailable, match="connection refused") as caught:
        backups.describe_backups(cid)
    assert caught.value.is_transient  # so a prune stops rather than trying each backup
