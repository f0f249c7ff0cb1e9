"""Restore placement: which stored files go where, checked in staging, moved only when all
are good, and nothing left behind when they are not."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cassy_scheduler.node.manifest import BackupIdentity, Manifest, ManifestEntry
from cassy_scheduler.node.placement import (
    STAGING_PREFIX,
    DirectoriesNotEmptyError,
    NodeDirectories,
    RestoreCancelledError,
    RestorePlanError,
    StoredFileError,
    occupied_directories,
    plan_restore,
    remove_leftover_staging,
    restore_files,
    target_path,
)
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage import FilesystemStorage
from cassy_scheduler.storage.layout import node_backup_prefix

SID = "snap-1"
PREFIX = node_backup_prefix("prod-1", SID, "127.0.0.1")
TABLE = "shop/orders-0123456789abcdef0123456789abcdef"


def _manifest(
    kind: BackupType, created_at: int, files: dict[str, bytes], snapshot_id: str = SID
) -> Manifest:
    entries = tuple(
        ManifestEntry(path, PREFIX + path, len(data), hashlib.sha256(data).hexdigest())
        for path, data in sorted(files.items())
    )
    identity = BackupIdentity("prod-1", snapshot_id, "127.0.0.1", kind, created_at)
    return Manifest(identity=identity, prefix=PREFIX, files=entries)


def _store(storage: FilesystemStorage, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        storage.put_bytes(PREFIX + path, data)


SNAPSHOT_FILES = {
    f"{TABLE}/snapshots/{SID}/nb-1-big-Data.db": b"one" * 100,
    f"{TABLE}/snapshots/{SID}/nb-1-big-TOC.txt": b"Data.db\n",
    f"{TABLE}/snapshots/{SID}/.orders_by_day/nb-1-big-Data.db": b"index",
    f"{TABLE}/snapshots/{SID}/manifest.json": b"{}",
    f"{TABLE}/snapshots/{SID}/schema.cql": b"CREATE TABLE",
}
FIRST_INCREMENTAL = {f"{TABLE}/backups/nb-2-big-Data.db": b"two" * 50}
SECOND_INCREMENTAL = {
    f"{TABLE}/backups/nb-2-big-Data.db": b"two" * 50,
    f"{TABLE}/backups/nb-3-big-Data.db": b"three",
    f"{TABLE}/backups/.orders_by_day/nb-3-big-Data.db": b"index3",
}


def _all_manifests() -> list[Manifest]:
    return [
        _manifest(BackupType.NODE_SNAPSHOT, 100, SNAPSHOT_FILES),
        _manifest(BackupType.NODE_INCREMENTAL, 200, FIRST_INCREMENTAL),
        _manifest(BackupType.NODE_INCREMENTAL, 300, SECOND_INCREMENTAL),
    ]


@pytest.mark.parametrize(
    ("stored", "target"),
    [
        (f"{TABLE}/snapshots/{SID}/nb-1-big-Data.db", f"{TABLE}/nb-1-big-Data.db"),
        (f"{TABLE}/snapshots/{SID}/.idx/nb-1-big-Data.db", f"{TABLE}/.idx/nb-1-big-Data.db"),
        (f"{TABLE}/backups/nb-2-big-Data.db", f"{TABLE}/nb-2-big-Data.db"),
        (f"{TABLE}/backups/.idx/nb-2-big-Index.db", f"{TABLE}/.idx/nb-2-big-Index.db"),
        (f"{TABLE}/snapshots/{SID}/manifest.json", None),
        (f"{TABLE}/snapshots/{SID}/schema.cql", None),
    ],
)
def test_target_path(stored: str, target: str | None) -> None:
    assert target_path(stored, SID) == target


@pytest.mark.parametrize(
    "stored",
    [
        f"{TABLE}/snapshots/other-snap/nb-1-big-Data.db",
        f"{TABLE}/nb-1-big-Data.db",
        "shop/not-a-table-dir/backups/nb-1-big-Data.db",
        f"{TABLE}/backups/..",
        f"{TABLE}/backups/a/b/c",
        f"{TABLE}/backups/plain/nb-1-big-Data.db",
    ],
)
def test_target_path_refuses_what_is_not_a_table_file(stored: str) -> None:
    with pytest.raises(RestorePlanError):
        target_path(stored, SID)


def test_plan_joins_snapshot_and_every_later_incremental() -> None:
    plan = plan_restore(_all_manifests(), SID, snapshot_only=False)
    assert [f.target for f in plan.files] == [
        f"{TABLE}/.orders_by_day/nb-1-big-Data.db",
        f"{TABLE}/.orders_by_day/nb-3-big-Data.db",
        f"{TABLE}/nb-1-big-Data.db",
        f"{TABLE}/nb-1-big-TOC.txt",
        f"{TABLE}/nb-2-big-Data.db",
        f"{TABLE}/nb-3-big-Data.db",
    ]
    assert plan.manifests == ("100-node_snapshot", "200-node_incremental", "300-node_incremental")


def test_snapshot_only_plan_leaves_incrementals_out() -> None:
    plan = plan_restore(_all_manifests(), SID, snapshot_only=True)
    assert {f.target for f in plan.files} == {
        f"{TABLE}/.orders_by_day/nb-1-big-Data.db",
        f"{TABLE}/nb-1-big-Data.db",
        f"{TABLE}/nb-1-big-TOC.txt",
    }
    assert plan.manifests == ("100-node_snapshot",)


def test_newest_manifest_describes_a_key_listed_twice() -> None:
    changed = {f"{TABLE}/backups/nb-2-big-Data.db": b"rewritten"}
    manifests = [*_all_manifests(), _manifest(BackupType.NODE_INCREMENTAL, 400, changed)]
    plan = plan_restore(manifests, SID, snapshot_only=False)
    (nb2,) = [f for f in plan.files if f.target.endswith("nb-2-big-Data.db")]
    assert nb2.sha256 == hashlib.sha256(b"rewritten").hexdigest()


def test_an_sstable_in_both_snapshot_and_backups_is_restored_once() -> None:
    same = {f"{TABLE}/backups/nb-1-big-Data.db": b"one" * 100}
    manifests = [*_all_manifests(), _manifest(BackupType.NODE_INCREMENTAL, 400, same)]
    plan = plan_restore(manifests, SID, snapshot_only=False)
    assert [f.target for f in plan.files].count(f"{TABLE}/nb-1-big-Data.db") == 1


def test_same_name_with_different_content_is_a_conflict() -> None:
    clash = {f"{TABLE}/backups/nb-1-big-Data.db": b"something else"}
    manifests = [*_all_manifests(), _manifest(BackupType.NODE_INCREMENTAL, 400, clash)]
    with pytest.raises(RestorePlanError, match=r"nb-1-big-Data\.db.*differ"):
        plan_restore(manifests, SID, snapshot_only=False)


def test_no_snapshot_upload_means_no_plan() -> None:
    only_incremental = [_manifest(BackupType.NODE_INCREMENTAL, 200, FIRST_INCREMENTAL)]
    with pytest.raises(RestorePlanError, match="no completed snapshot upload"):
        plan_restore(only_incremental, SID, snapshot_only=False)


def test_incrementals_older_than_the_snapshot_or_of_other_snapshots_are_ignored() -> None:
    manifests = [
        _manifest(BackupType.NODE_INCREMENTAL, 50, {f"{TABLE}/backups/nb-0-big-Data.db": b"0"}),
        _manifest(BackupType.NODE_SNAPSHOT, 100, SNAPSHOT_FILES),
        _manifest(BackupType.NODE_INCREMENTAL, 200, FIRST_INCREMENTAL, snapshot_id="other"),
    ]
    plan = plan_restore(manifests, SID, snapshot_only=False)
    assert plan.manifests == ("100-node_snapshot",)


# ------------------------------------------------------------------------------- on disk


@pytest.fixture
def storage(tmp_path: Path) -> FilesystemStorage:
    store = FilesystemStorage(tmp_path / "store", durable=False)
    _store(store, {**SNAPSHOT_FILES, **FIRST_INCREMENTAL, **SECOND_INCREMENTAL})
    return store


@pytest.fixture
def dirs(tmp_path: Path) -> NodeDirectories:
    node = tmp_path / "node"
    node.mkdir()
    return NodeDirectories.beside(node / "data")


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_defaults_follow_cassandras_layout(tmp_path: Path) -> None:
    dirs = NodeDirectories.beside(tmp_path / "cassandra" / "data")
    assert dirs.commitlog_dir == tmp_path / "cassandra" / "commitlog"
    assert dirs.hints_dir == tmp_path / "cassandra" / "hints"
    assert dirs.saved_caches_dir == tmp_path / "cassandra" / "saved_caches"
    assert dirs.staging_parent == tmp_path / "cassandra"


def test_restore_places_every_file_and_leaves_no_staging(
    storage: FilesystemStorage, dirs: NodeDirectories
) -> None:
    plan = plan_restore(_all_manifests(), SID, snapshot_only=False)
    placed = restore_files(storage, plan, dirs, "t1", workers=3)
    assert placed.files == 6 and placed.keyspaces == ("shop",)
    assert _tree(dirs.data_dir) == {
        f"{TABLE}/nb-1-big-Data.db": b"one" * 100,
        f"{TABLE}/nb-1-big-TOC.txt": b"Data.db\n",
        f"{TABLE}/.orders_by_day/nb-1-big-Data.db": b"index",
        f"{TABLE}/nb-2-big-Data.db": b"two" * 50,
        f"{TABLE}/nb-3-big-Data.db": b"three",
        f"{TABLE}/.orders_by_day/nb-3-big-Data.db": b"index3",
    }
    assert not list(dirs.staging_parent.glob(f"{STAGING_PREFIX}*"))


@pytest.mark.parametrize("workers", [1, 4])
def test_a_corrupt_object_fails_naming_it_and_leaves_the_data_dir_as_it_was(
    storage: FilesystemStorage, dirs: NodeDirectories, workers: int
) -> None:
    bad = f"{TABLE}/backups/nb-3-big-Data.db"
    storage.put_bytes(PREFIX + bad, b"thrEe")  # same size, other bytes
    plan = plan_restore(_all_manifests(), SID, snapshot_only=False)
    with pytest.raises(StoredFileError, match="corrupt") as failed:
        restore_files(storage, plan, dirs, "t1", workers=workers)
    assert failed.value.path == bad
    assert bad in str(failed.value)
    assert not dirs.data_dir.exists()
    assert not list(dirs.staging_parent.glob(f"{STAGING_PREFIX}*"))


def test_a_missing_or_truncated_object_fails_naming_it(
    storage: FilesystemStorage, dirs: NodeDirectories
) -> None:
    plan = plan_restore(_all_manifests(), SID, snapshot_only=False)
    gone = f"{TABLE}/snapshots/{SID}/nb-1-big-TOC.txt"
    storage.delete(PREFIX + gone)
    with pytest.raises(StoredFileError, match="missing") as failed:
        restore_files(storage, plan, dirs, "t1")
    assert failed.value.path == gone
    _store(storage, {gone: b"Data"})
    with pytest.raises(StoredFileError, match="4 bytes"):
        restore_files(storage, plan, dirs, "t1")
    assert not dirs.data_dir.exists()


def test_occupied_directories_name_each_one(dirs: NodeDirectories) -> None:
    assert occupied_directories(dirs) == []  # absent counts as empty
    dirs.data_dir.mkdir()
    dirs.commitlog_dir.mkdir()
    assert occupied_directories(dirs) == []
    (dirs.data_dir / "system").mkdir()
    (dirs.hints_dir).mkdir()
    (dirs.hints_dir / "h-1.hints").write_bytes(b"")
    problems = occupied_directories(dirs)
    assert problems == [
        f"data directory {dirs.data_dir} is not empty (system)",
        f"hints directory {dirs.hints_dir} is not empty (h-1.hints)",
    ]


def test_restore_refuses_occupied_directories_and_writes_nothing(
    storage: FilesystemStorage, dirs: NodeDirectories
) -> None:
    dirs.commitlog_dir.mkdir(parents=True)
    (dirs.commitlog_dir / "CommitLog-7-1.log").write_bytes(b"x")
    plan = plan_restore(_all_manifests(), SID, snapshot_only=False)
    with pytest.raises(DirectoriesNotEmptyError, match="commit log directory"):
        restore_files(storage, plan, dirs, "t1")
    assert not dirs.data_dir.exists()
    assert not list(dirs.staging_parent.glob(f"{STAGING_PREFIX}*"))


def test_a_cancelled_restore_moves_nothing(
    storage: FilesystemStorage, dirs: NodeDirectories
) -> None:
    plan = plan_restore(_all_manifests(), SID, snapshot_only=False)
    with pytest.raises(RestoreCancelledError):
        restore_files(storage, plan, dirs, "t1", cancelled=lambda: True)
    assert not dirs.data_dir.exists()


def test_leftover_staging_is_removed(dirs: NodeDirectories) -> None:
    leftover = dirs.staging_parent / f"{STAGING_PREFIX}old-1"
    (leftover / "shop").mkdir(parents=True)
    unrelated = dirs.staging_parent / "keep-me"
    unrelated.mkdir()
    assert remove_leftover_staging(dirs) == [leftover]
    assert not leftover.exists() and unrelated.exists()
