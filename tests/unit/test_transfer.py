"""Uploading a node's files: skip unchanged, resend changed, manifest last and readable."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cassy_scheduler.node.transfer import (
    BackupIdentity,
    LocalFile,
    Manifest,
    ManifestError,
    SourceFileMissingError,
    TransferError,
    find_manifests,
    read_manifest,
    upload_files,
)
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage import FilesystemStorage, ObjectInfo
from cassy_scheduler.storage.layout import manifest_key, node_backup_prefix

PREFIX = node_backup_prefix("prod-1", "snap-1", "127.0.0.1")


def _identity(
    created_at_ms: int = 1_700_000_000_000, backup_type: BackupType = BackupType.NODE_SNAPSHOT
) -> BackupIdentity:
    return BackupIdentity("prod-1", "snap-1", "127.0.0.1", backup_type, created_at_ms)


class RecordingStorage(FilesystemStorage):
    """The filesystem backend, noting the order of writes to check the manifest comes last."""

    def __init__(self, base: Path) -> None:
        super().__init__(base, durable=False)
        self.writes: list[str] = []
        self._lock = threading.Lock()

    def put_file(self, key: str, local_path: Path) -> ObjectInfo:
        info = super().put_file(key, local_path)
        with self._lock:
            self.writes.append(key)
        return info

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        info = super().put_bytes(key, data)
        with self._lock:
            self.writes.append(key)
        return info


@pytest.fixture
def storage(tmp_path: Path) -> RecordingStorage:
    return RecordingStorage(tmp_path / "store")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for index in range(6):
        path = root / "ks" / "t-0123" / "snapshots" / "snap-1" / f"nb-{index}-big-Data.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes([index]) * (1000 * (index + 1)))
    return root


def _files(data_dir: Path) -> list[LocalFile]:
    return [
        LocalFile(path, path.relative_to(data_dir).as_posix())
        for path in sorted(data_dir.rglob("*"))
        if path.is_file()
    ]


@pytest.mark.parametrize("workers", [1, 4])
def test_upload_stores_every_file_then_the_manifest(
    storage: RecordingStorage, data_dir: Path, workers: int
) -> None:
    files = _files(data_dir)

    result = upload_files(storage, PREFIX, files, _identity(), workers=workers)

    assert result.files_sent == 6
    assert result.files_skipped == 0
    assert result.bytes_sent == sum(f.path.stat().st_size for f in files)
    assert result.bytes_skipped == 0
    assert result.manifest_key == manifest_key(PREFIX, BackupType.NODE_SNAPSHOT, 1_700_000_000_000)
    assert storage.writes[-1] == result.manifest_key
    assert sorted(storage.writes[:-1]) == sorted(PREFIX + f.relative_key for f in files)
    for local in files:
        assert storage.get_bytes(PREFIX + local.relative_key) == local.path.read_bytes()


def test_second_upload_of_unchanged_files_sends_nothing(
    storage: RecordingStorage, data_dir: Path
) -> None:
    files = _files(data_dir)
    first = upload_files(storage, PREFIX, files, _identity(1_700_000_000_000))
    storage.writes.clear()

    second = upload_files(
        storage, PREFIX, files, _identity(1_700_000_100_000, BackupType.NODE_INCREMENTAL)
    )

    assert second.bytes_sent == 0
    assert second.files_sent == 0
    assert second.files_skipped == 6
    assert second.bytes_skipped == first.bytes_sent
    assert storage.writes == [second.manifest_key]  # only the new manifest was written
    assert second.manifest.files == first.manifest.files
    assert second.manifest_key != first.manifest_key


def test_changed_file_is_sent_again(storage: RecordingStorage, data_dir: Path) -> None:
    files = _files(data_dir)
    upload_files(storage, PREFIX, files, _identity(1))
    same_size = files[0].path
    same_size.write_bytes(b"\xff" * same_size.stat().st_size)
    longer = files[1].path
    longer.write_bytes(longer.read_bytes() + b"more")

    result = upload_files(storage, PREFIX, files, _identity(2))

    assert result.files_sent == 2
    assert result.bytes_sent == same_size.stat().st_size + longer.stat().st_size
    assert result.files_skipped == 4
    for changed in (same_size, longer):
        key = PREFIX + changed.relative_to(data_dir).as_posix()
        assert storage.get_bytes(key) == changed.read_bytes()


def test_manifest_lists_every_file_with_size_and_hash(
    storage: RecordingStorage, data_dir: Path
) -> None:
    files = _files(data_dir)
    result = upload_files(storage, PREFIX, files, _identity())

    manifest = read_manifest(storage, result.manifest_key)

    assert manifest == result.manifest
    assert manifest.identity == _identity()
    assert manifest.prefix == PREFIX
    assert [e.path for e in manifest.files] == sorted(f.relative_key for f in files)
    for entry in manifest.files:
        content = (data_dir / entry.path).read_bytes()
        assert entry.key == PREFIX + entry.path
        assert entry.size == len(content)
        assert entry.sha256 == hashlib.sha256(content).hexdigest()
    assert manifest.total_size == result.bytes_sent
    document = json.loads(storage.get_bytes(result.manifest_key))
    assert document["format_version"] == 1
    assert document["backup_type"] == 2
    assert document["created_at"] == 1_700_000_000_000
    assert set(document["files"][0]) == {"path", "key", "size", "sha256"}


def test_empty_upload_still_writes_a_manifest(storage: RecordingStorage) -> None:
    result = upload_files(storage, PREFIX, [], _identity())
    assert read_manifest(storage, result.manifest_key).files == ()


def test_missing_source_file_is_named_and_no_manifest_is_written(
    storage: RecordingStorage, data_dir: Path
) -> None:
    files = _files(data_dir)
    files[3].path.unlink()

    with pytest.raises(SourceFileMissingError, match=files[3].path.name):
        upload_files(storage, PREFIX, files, _identity(), workers=2)

    assert list(storage.list(PREFIX + "upload-manifests/")) == []


def test_duplicate_and_reserved_keys_are_refused_before_sending(
    storage: RecordingStorage, data_dir: Path
) -> None:
    files = _files(data_dir)
    with pytest.raises(TransferError, match="both map to key"):
        upload_files(
            storage, PREFIX, [*files, LocalFile(files[0].path, files[1].relative_key)], _identity()
        )
    with pytest.raises(TransferError, match="reserved"):
        upload_files(storage, PREFIX, [LocalFile(files[0].path, "upload-manifests/x")], _identity())
    assert storage.writes == []


def test_workers_must_be_positive(storage: RecordingStorage) -> None:
    with pytest.raises(ValueError, match="workers"):
        upload_files(storage, PREFIX, [], _identity(), workers=0)


def test_find_manifests_returns_uploads_oldest_first(
    storage: RecordingStorage, data_dir: Path
) -> None:
    files = _files(data_dir)
    upload_files(storage, PREFIX, files[:2], _identity(3, BackupType.NODE_INCREMENTAL))
    upload_files(storage, PREFIX, files, _identity(1))
    upload_files(storage, PREFIX, files[2:], _identity(2, BackupType.NODE_INCREMENTAL))

    found = find_manifests(storage, PREFIX)

    assert [m.identity.created_at_ms for m in found] == [1, 2, 3]
    assert [len(m.files) for m in found] == [6, 4, 2]


def test_read_manifest_reports_missing_and_corrupt(storage: RecordingStorage) -> None:
    with pytest.raises(ManifestError, match="never completed"):
        read_manifest(storage, PREFIX + "upload-manifests/0-node_snapshot.json")
    storage.put_bytes("bad.json", b"{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(storage, "bad.json")


def _document() -> dict[str, object]:
    manifest = Manifest(identity=_identity(), prefix=PREFIX, files=())
    loaded: dict[str, object] = json.loads(manifest.to_json())
    return loaded


def _variants() -> Iterator[tuple[dict[str, object], str]]:
    yield {**_document(), "format_version": 99}, "format version 99"
    yield {**_document(), "backup_type": 7}, "unknown backup_type 7"
    yield {**_document(), "created_at": "soon"}, "'created_at' must be an integer"
    yield {**_document(), "size": True, "files": [{"path": "a"}]}, r"files\[0\] lacks 'key'"
    without_prefix = _document()
    del without_prefix["prefix"]
    yield without_prefix, "lacks 'prefix'"


@pytest.mark.parametrize(("document", "message"), list(_variants()))
def test_manifest_from_json_checks_its_fields(document: dict[str, object], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        Manifest.from_json(json.dumps(document))


def test_manifest_round_trips() -> None:
    manifest = Manifest(identity=_identity(), prefix=PREFIX, files=())
    assert Manifest.from_json(manifest.to_json()) == manifest
