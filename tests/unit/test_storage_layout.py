"""Cassy's key layout, our manifest keys, and opening storage from a URI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage import (
    FilesystemStorage,
    InvalidKeyError,
    UnsupportedStorageError,
    open_storage,
)
from cassy_scheduler.storage.layout import (
    backup_prefix,
    cluster_backup_prefix,
    is_manifest_key,
    manifest_key,
    manifest_prefix,
    metadata_backup_key,
    node_backup_prefix,
)


def test_backup_prefixes_follow_cassy() -> None:
    assert node_backup_prefix("prod-1a2b", "snap-9", "127.0.0.2") == (
        "node-backup/prod-1a2b/snap-9/127.0.0.2/"
    )
    assert cluster_backup_prefix("prod-1a2b", "snap-9", "127.0.0.2") == (
        "cluster-backup/prod-1a2b/snap-9/127.0.0.2/"
    )
    assert backup_prefix(BackupType.CLUSTER_SNAPSHOT, "c", "s", "127.0.0.1").startswith(
        "cluster-backup/"
    )
    for kind in (BackupType.NODE_SNAPSHOT, BackupType.NODE_INCREMENTAL):
        assert backup_prefix(kind, "c", "s", "127.0.0.1") == "node-backup/c/s/127.0.0.1/"


@pytest.mark.parametrize("bad", ["", "a/b", "..", "."])
def test_prefix_parts_must_be_single_segments(bad: str) -> None:
    with pytest.raises(InvalidKeyError):
        node_backup_prefix(bad, "s", "127.0.0.1")
    with pytest.raises(InvalidKeyError):
        node_backup_prefix("c", bad, "127.0.0.1")


def test_metadata_backup_key_is_in_cassys_form() -> None:
    when = datetime(2024, 3, 5, 9, 7, 1, tzinfo=timezone(timedelta(hours=9)))
    key = metadata_backup_key(when, "cassy.db", UTC)
    assert key == "metadata-backup/2024-03-05 00:07:01/cassy.db.dump"
    tokyo = metadata_backup_key(when, "cassy.db", timezone(timedelta(hours=9)))
    assert tokyo == "metadata-backup/2024-03-05 09:07:01/cassy.db.dump"
    with pytest.raises(ValueError, match="aware"):
        metadata_backup_key(datetime(2024, 1, 1), "cassy.db")


def test_metadata_backup_key_defaults_to_the_servers_local_time() -> None:
    when = datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC)
    local = when.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert metadata_backup_key(when, "x") == f"metadata-backup/{local}/x.dump"


def test_each_upload_gets_its_own_manifest_in_time_order() -> None:
    prefix = node_backup_prefix("c", "s", "127.0.0.1")
    snapshot = manifest_key(prefix, BackupType.NODE_SNAPSHOT, 1_700_000_000_000)
    first = manifest_key(prefix, BackupType.NODE_INCREMENTAL, 1_700_000_100_000)
    second = manifest_key(prefix, BackupType.NODE_INCREMENTAL, 1_700_000_200_000)

    assert snapshot == "node-backup/c/s/127.0.0.1/upload-manifests/1700000000000-node_snapshot.json"
    assert len({snapshot, first, second}) == 3
    assert sorted([second, snapshot, first]) == [snapshot, first, second]
    assert all(is_manifest_key(prefix, key) for key in (snapshot, first, second))
    assert not is_manifest_key(prefix, prefix + "ks/t-0123/nb-1-big-Data.db")
    assert manifest_prefix(prefix) == prefix + "upload-manifests/"


def test_open_storage_file_uri(tmp_path: Path) -> None:
    storage = open_storage((tmp_path / "my backups").as_uri())
    assert isinstance(storage, FilesystemStorage)
    assert storage.base == tmp_path / "my backups"
    storage.put_bytes("a", b"1")
    assert (tmp_path / "my backups" / "a").read_bytes() == b"1"
    assert isinstance(open_storage(f"file://localhost{tmp_path}"), FilesystemStorage)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("ftp://host/path", "supported are file://, s3://, az://, gs://"),
        ("s3:///path", "names no bucket"),
        ("az:///path", "names no container"),
        ("s3://bucket/path?region=x", "put options in \\[storage\\]"),
        ("/var/backups", "no scheme"),
        ("file://otherhost/var/backups", "must be local"),
        ("file:relative/dir", "absolute path"),
    ],
)
def test_open_storage_refuses_what_it_cannot_open(uri: str, message: str) -> None:
    with pytest.raises(UnsupportedStorageError, match=message):
        open_storage(uri)
