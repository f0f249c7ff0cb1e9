"""Uploading a node's files: skip unchanged, resend changed, manifest last and readable."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cassy_scheduler.node import transfer
from cassy_scheduler.node.manifest import (
    BackupIdentity,
    Manifest,
    ManifestEntry,
    ManifestError,
    find_manifests,
    read_manifest,
)
from cassy_scheduler.node.transfer import (
    LocalFile,
    SourceFileMissingError,
    TransferError,
    UploadCancelledError,
    upload_files,
)
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage import FilesystemStorage, ObjectInfo, open_storage
from cassy_scheduler.storage.envelope import key_id
from cassy_scheduler.storage.layout import manifest_key, node_backup_prefix
from cassy_scheduler.storage.options import StorageOptions

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
        self.hashed: list[str] = []
        self._lock = threading.Lock()

    def sha256(self, key: str) -> str:
        with self._lock:
            self.hashed.append(key)
        return super().sha256(key)

    def put_file(
        self,
        key: str,
        local_path: Path,
        *,
        sync: bool = True,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> ObjectInfo:
        info = super().put_file(key, local_path, sync=sync, cancelled=cancelled)
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
        os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))  # so any later write changes the mtime
    return root


OLD_MTIME_NS = 1_600_000_000_123_456_789


@pytest.fixture
def local_hashes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The local files the upload hashes, in the order it hashes them."""
    hashed: list[Path] = []
    real = transfer._sha256_of

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(transfer, "_sha256_of", counting)
    return hashed


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
    assert set(document["files"][0]) == {
        "path",
        "key",
        "size",
        "sha256",
        "mtime_ns",
        "inode",
        "device",
    }
    for entry in manifest.files:
        status = (data_dir / entry.path).stat()
        assert (entry.mtime_ns, entry.inode, entry.device) == (
            status.st_mtime_ns,
            status.st_ino,
            status.st_dev,
        )


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


@pytest.mark.parametrize("workers", [1, 3])
def test_a_cancelled_upload_stops_before_its_next_file_and_writes_no_manifest(
    storage: RecordingStorage, data_dir: Path, workers: int
) -> None:
    asked = 0

    def cancelled() -> bool:
        nonlocal asked
        asked += 1
        return asked > 2

    with pytest.raises(UploadCancelledError, match="stopped before it finished"):
        upload_files(
            storage, PREFIX, _files(data_dir), _identity(), workers=workers, cancelled=cancelled
        )

    assert len(storage.writes) <= 2
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


def _key(data_dir: Path, path: Path) -> str:
    return PREFIX + path.relative_to(data_dir).as_posix()


@pytest.mark.parametrize("workers", [1, 4])
def test_second_upload_of_unchanged_files_reads_neither_copy(
    storage: RecordingStorage, data_dir: Path, local_hashes: list[Path], workers: int
) -> None:
    files = _files(data_dir)
    first = upload_files(storage, PREFIX, files, _identity(1), workers=workers)
    assert local_hashes == []  # a first upload hashes while sending
    storage.writes.clear()

    second = upload_files(
        storage, PREFIX, files, _identity(2, BackupType.NODE_INCREMENTAL), workers=workers
    )

    assert local_hashes == []
    assert storage.hashed == []
    assert second.files_skipped == 6
    assert storage.writes == [second.manifest_key]
    assert second.manifest.files == first.manifest.files


def test_touched_file_is_hashed_again_and_kept_when_its_content_is_the_same(
    storage: RecordingStorage, data_dir: Path, local_hashes: list[Path]
) -> None:
    files = _files(data_dir)
    upload_files(storage, PREFIX, files, _identity(1))
    touched = files[2].path
    os.utime(touched, ns=(OLD_MTIME_NS + 1, OLD_MTIME_NS + 1))

    result = upload_files(storage, PREFIX, files, _identity(2))

    assert local_hashes == [touched]
    assert storage.hashed == [_key(data_dir, touched)]
    assert result.files_sent == 0
    (entry,) = [e for e in result.manifest.files if e.key == _key(data_dir, touched)]
    assert entry.mtime_ns == OLD_MTIME_NS + 1
    local_hashes.clear()
    storage.hashed.clear()

    upload_files(storage, PREFIX, files, _identity(3))  # the new mtime is now on record

    assert local_hashes == []
    assert storage.hashed == []


def test_touched_file_with_new_content_of_the_same_size_is_sent(
    storage: RecordingStorage, data_dir: Path, local_hashes: list[Path]
) -> None:
    files = _files(data_dir)
    upload_files(storage, PREFIX, files, _identity(1))
    changed = files[0].path
    changed.write_bytes(b"\xff" * changed.stat().st_size)  # same inode, new mtime

    result = upload_files(storage, PREFIX, files, _identity(2))

    assert local_hashes == [changed]
    assert result.files_sent == 1
    assert storage.get_bytes(_key(data_dir, changed)) == changed.read_bytes()


@pytest.mark.parametrize("same_content", [True, False])
def test_replaced_file_with_the_same_name_size_and_mtime_is_hashed(
    storage: RecordingStorage, data_dir: Path, local_hashes: list[Path], same_content: bool
) -> None:
    files = _files(data_dir)
    first = upload_files(storage, PREFIX, files, _identity(1))
    target = files[1].path
    content = target.read_bytes() if same_content else b"\x07" * target.stat().st_size
    replacement = target.with_name("replacement.tmp")
    replacement.write_bytes(content)
    os.utime(replacement, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    old_inode = target.stat().st_ino
    os.replace(replacement, target)  # a new inode; only it differs from the manifest's entry
    assert target.stat().st_ino != old_inode

    result = upload_files(storage, PREFIX, files, _identity(2))

    assert local_hashes == [target]
    assert storage.hashed == [_key(data_dir, target)]
    assert result.files_sent == (0 if same_content else 1)
    assert storage.get_bytes(_key(data_dir, target)) == content
    (entry,) = [e for e in result.manifest.files if e.key == _key(data_dir, target)]
    assert entry.inode == target.stat().st_ino
    assert entry.sha256 == hashlib.sha256(content).hexdigest()
    assert len(first.manifest.files) == len(result.manifest.files)


def test_stored_object_gone_or_resized_is_sent_again(
    storage: RecordingStorage, data_dir: Path, local_hashes: list[Path]
) -> None:
    files = _files(data_dir)
    upload_files(storage, PREFIX, files, _identity(1))
    gone, resized = (_key(data_dir, f.path) for f in files[:2])
    storage.delete(gone)
    storage.put_bytes(resized, b"short")
    storage.writes.clear()

    result = upload_files(storage, PREFIX, files, _identity(2))

    assert result.files_sent == 2
    assert sorted(storage.writes[:-1]) == sorted([gone, resized])
    assert local_hashes == []
    for local in files[:2]:
        assert storage.get_bytes(_key(data_dir, local.path)) == local.path.read_bytes()


def _strip_identity(storage: RecordingStorage, key: str) -> None:
    document = json.loads(storage.get_bytes(key))
    for entry in document["files"]:
        for name in ("mtime_ns", "inode", "device"):
            del entry[name]
    storage.put_bytes(key, json.dumps(document).encode())


def test_manifests_without_identity_are_read_and_their_files_hashed_once_more(
    storage: RecordingStorage, data_dir: Path, local_hashes: list[Path]
) -> None:
    files = _files(data_dir)
    first = upload_files(storage, PREFIX, files, _identity(1))
    _strip_identity(storage, first.manifest_key)

    old = read_manifest(storage, first.manifest_key)
    assert all(e.mtime_ns is None and e.inode is None and e.device is None for e in old.files)
    assert [(e.key, e.size, e.sha256) for e in old.files] == [
        (e.key, e.size, e.sha256) for e in first.manifest.files
    ]
    assert Manifest.from_json(old.to_json()) == old
    assert find_manifests(storage, PREFIX) == [old]

    second = upload_files(storage, PREFIX, files, _identity(2))

    assert second.files_sent == 0
    assert sorted(local_hashes) == sorted(f.path for f in files)
    assert sorted(storage.hashed) == sorted(e.key for e in first.manifest.files)
    assert second.manifest.files == first.manifest.files  # identity recorded again
    local_hashes.clear()

    upload_files(storage, PREFIX, files, _identity(3))

    assert local_hashes == []


def _store_manifest(storage: RecordingStorage, manifest: Manifest) -> None:
    identity = manifest.identity
    key = manifest_key(PREFIX, identity.backup_type, identity.created_at_ms)
    storage.put_bytes(key, manifest.to_json().encode())


def test_newest_manifest_entry_wins_and_unreadable_manifests_are_ignored(
    storage: RecordingStorage, data_dir: Path, local_hashes: list[Path]
) -> None:
    files = _files(data_dir)
    base = upload_files(storage, PREFIX, files, _identity(2)).manifest
    wrong = [replace(e, inode=(e.inode or 0) + 1) for e in base.files]
    _store_manifest(storage, replace(base, identity=_identity(1), files=tuple(wrong)))
    _store_manifest(storage, replace(base, identity=_identity(3), files=(wrong[0],)))
    storage.put_bytes(manifest_key(PREFIX, BackupType.NODE_SNAPSHOT, 4), b"{bad")

    result = upload_files(storage, PREFIX, files, _identity(5))

    assert result.files_sent == 0
    assert local_hashes == [data_dir / base.files[0].path]  # only the newest entry is wrong


def test_entry_round_trips_with_and_without_identity() -> None:
    entries = (
        ManifestEntry("a", PREFIX + "a", 1, "00" * 32, mtime_ns=5, inode=6, device=7),
        ManifestEntry("b", PREFIX + "b", 2, "11" * 32),
    )
    manifest = Manifest(identity=_identity(), prefix=PREFIX, files=entries)
    document = json.loads(manifest.to_json())
    assert set(document["files"][1]) == {"path", "key", "size", "sha256"}
    assert Manifest.from_json(manifest.to_json()) == manifest
    document["files"][0]["inode"] = "six"
    with pytest.raises(ManifestError, match="'inode' must be an integer"):
        Manifest.from_json(json.dumps(document))


# --- a new snapshot of SSTables an earlier one stored -------------------------------------


def _snapshot(data_dir: Path, tag: str) -> list[LocalFile]:
    """A snapshot `tag` of the same SSTables: hard links, as `nodetool snapshot` makes."""
    files = []
    for path in sorted((data_dir / "ks" / "t-0123" / "snapshots" / "snap-1").iterdir()):
        linked = data_dir / "ks" / "t-0123" / "snapshots" / tag / path.name
        linked.parent.mkdir(parents=True, exist_ok=True)
        if not linked.exists():
            os.link(path, linked)
        files.append(LocalFile(linked, linked.relative_to(data_dir).as_posix()))
    return files


SECOND = "node-backup/prod-1/snap-2/127.0.0.1/"


def test_a_new_snapshot_of_unchanged_sstables_sends_no_byte_and_reads_none(
    storage: RecordingStorage, data_dir: Path, local_hashes: list[Path]
) -> None:
    first = upload_files(storage, PREFIX, _files(data_dir), _identity())
    local_hashes.clear()
    storage.writes.clear()
    second = upload_files(
        storage, SECOND, _snapshot(data_dir, "snap-2"), _identity(1_700_000_500_000),
        earlier=[first.manifest],
    )  # fmt: skip
    assert (second.files_copied, second.files_sent, second.bytes_sent) == (6, 0, 0)
    assert second.bytes_copied == first.bytes_sent
    assert local_hashes == [] and storage.hashed == []
    assert storage.writes == [second.manifest_key]  # only the manifest is written
    assert [e.sha256 for e in second.manifest.files] == [e.sha256 for e in first.manifest.files]
    # Each snapshot stands alone: the first one gone, the second still holds every byte.
    for entry in first.manifest.files:
        storage.delete(entry.key)
    for entry in second.manifest.files:
        assert hashlib.sha256(storage.get_bytes(entry.key)).hexdigest() == entry.sha256


def test_only_the_same_sstable_with_the_same_bytes_is_stored_from_an_earlier_one(
    storage: RecordingStorage, data_dir: Path
) -> None:
    first = upload_files(storage, PREFIX, _files(data_dir), _identity())
    files = _snapshot(data_dir, "snap-2")
    rewritten = files[0].path
    rewritten.unlink()  # a new file of the same name and size, other bytes
    rewritten.write_bytes(b"\xff" * 1000)
    pruned = first.manifest.files[1]
    storage.delete(pruned.key)  # the earlier object is gone: sent again
    second = upload_files(
        storage, SECOND, files, _identity(1_700_000_500_000), earlier=[first.manifest]
    )
    assert (second.files_copied, second.files_sent) == (4, 2)
    assert storage.get_bytes(SECOND + files[0].relative_key) == b"\xff" * 1000


def test_a_storage_that_cannot_copy_sends_the_files(
    storage: RecordingStorage, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = upload_files(storage, PREFIX, _files(data_dir), _identity())
    monkeypatch.setattr(storage, "copy", lambda source, target: None)
    second = upload_files(
        storage, SECOND, _snapshot(data_dir, "snap-2"), _identity(1_700_000_500_000),
        earlier=[first.manifest],
    )  # fmt: skip
    assert (second.files_copied, second.files_sent) == (0, 6)


class EtagStorage(RecordingStorage):
    """Like an object store: every write gives the object a new ETag, which stat reports;
    `metadata` decides whether stat also reports the SHA-256 (a single-PUT object's)."""

    def __init__(self, base: Path, *, metadata: bool) -> None:
        super().__init__(base)
        self.metadata = metadata
        self.etags: dict[str, str] = {}
        self._sha: dict[str, str] = {}
        self._writes = 0

    def put_file(
        self,
        key: str,
        local_path: Path,
        *,
        sync: bool = True,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> ObjectInfo:
        info = super().put_file(key, local_path, sync=sync, cancelled=cancelled)
        self._writes += 1
        self.etags[key] = f"etag-{self._writes}"
        assert info.sha256 is not None
        self._sha[key] = info.sha256
        return replace(info, etag=self.etags[key])

    def stat(self, key: str) -> ObjectInfo | None:
        info = super().stat(key)
        if info is None:
            return None
        sha = self._sha.get(key) if self.metadata else None
        return replace(info, etag=self.etags.get(key), sha256=sha)

    def rewrite(self, key: str) -> None:
        """Another writer replaced the object with one of the same size: a new ETag."""
        self._writes += 1
        self.etags[key] = f"etag-{self._writes}"


@pytest.mark.parametrize("metadata", [False, True])
def test_on_an_object_store_the_manifest_is_trusted_only_for_the_same_etag(
    tmp_path: Path, data_dir: Path, local_hashes: list[Path], metadata: bool
) -> None:
    storage = EtagStorage(tmp_path / "store", metadata=metadata)
    files = _files(data_dir)
    first = upload_files(storage, PREFIX, files, _identity(1))
    assert {e.etag for e in first.manifest.files} == set(storage.etags.values())

    second = upload_files(storage, PREFIX, files, _identity(2, BackupType.NODE_INCREMENTAL))
    assert second.files_skipped == 6 and storage.hashed == [] and local_hashes == []

    rewritten = first.manifest.files[0].key
    storage.rewrite(rewritten)
    third = upload_files(storage, PREFIX, files, _identity(3, BackupType.NODE_INCREMENTAL))
    assert third.files_skipped == 6
    assert len(local_hashes) == 1  # the one whose object changed is hashed locally
    # and compared with the object: its metadata's SHA-256, else its content, read back
    assert storage.hashed == ([] if metadata else [rewritten])
    entry = next(e for e in third.manifest.files if e.key == rewritten)
    assert entry.etag == storage.etags[rewritten]


def test_after_a_key_rotation_a_new_upload_seals_every_object_with_the_new_key(
    tmp_path: Path, data_dir: Path
) -> None:
    """Skips and copies keep an object's seal, so they take only objects sealed with the
    current key: once the backups made before a rotation are gone, so is the need of the old
    key (docs/encryption.md, rotating the key)."""
    old, new = os.urandom(32), os.urandom(32)
    uri = (tmp_path / "sealed").as_uri()
    before = open_storage(StorageOptions(uri=uri, client_keys=(old,)))
    files = _files(data_dir)
    first = upload_files(before, PREFIX, files, _identity())
    # An attempt that stopped before its manifest: its objects are there, no manifest says so.
    stopped = upload_files(before, THIRD, _snapshot(data_dir, "snap-3"), _identity(2))
    before.delete(stopped.manifest_key)
    rotated = open_storage(StorageOptions(uri=uri, client_keys=(new, old)))
    same_prefix = upload_files(rotated, PREFIX, files, _identity(1_700_000_100_000))
    copied_from = upload_files(
        rotated, SECOND, _snapshot(data_dir, "snap-2"), _identity(1_700_000_500_000),
        earlier=[first.manifest],
    )  # fmt: skip
    resumed = upload_files(rotated, THIRD, _snapshot(data_dir, "snap-3"), _identity(3))
    results = (same_prefix, copied_from, resumed)
    assert [(r.files_sent, r.files_skipped, r.files_copied) for r in results] == [(6, 0, 0)] * 3
    only_new = open_storage(StorageOptions(uri=uri, client_keys=(new,)))
    for result in results:
        assert result.manifest.key_id == key_id(new)
        for entry in result.manifest.files:
            assert only_new.sealed_by(entry.key) == key_id(new)
            assert hashlib.sha256(only_new.get_bytes(entry.key)).hexdigest() == entry.sha256
    # Under the new key, unchanged files are skipped again without reading them.
    again = upload_files(rotated, PREFIX, files, _identity(1_700_000_200_000))
    assert (again.files_sent, again.files_skipped) == (0, 6)


THIRD = "node-backup/prod-1/snap-3/127.0.0.1/"
