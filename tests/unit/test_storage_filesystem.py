"""The filesystem backend: keys map to files, writes are atomic, listings hide temporaries."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cassy_scheduler.storage import (
    FilesystemStorage,
    InvalidKeyError,
    LocalFileNotFoundError,
    ObjectNotFoundError,
    StorageError,
)
from cassy_scheduler.storage.base import Leftovers, ObjectInfo
from cassy_scheduler.storage.streams import copy_and_hash, copy_file_and_hash


@pytest.fixture
def storage(tmp_path: Path) -> FilesystemStorage:
    return FilesystemStorage(tmp_path / "store")


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _visible_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_put_file_stores_content_and_reports_size_and_hash(
    storage: FilesystemStorage, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # spans several copy buffers
    source = _write(tmp_path / "src" / "nb-1-big-Data.db", data)

    info = storage.put_file("node-backup/c/s/127.0.0.1/ks/t-1/nb-1-big-Data.db", source)

    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    stored = storage.base / "node-backup/c/s/127.0.0.1/ks/t-1/nb-1-big-Data.db"
    assert stored.read_bytes() == data


def test_put_file_replaces_an_existing_object(storage: FilesystemStorage, tmp_path: Path) -> None:
    storage.put_bytes("a/b", b"old content")
    source = _write(tmp_path / "new", b"new")

    storage.put_file("a/b", source)

    assert storage.get_bytes("a/b") == b"new"


def test_put_file_of_missing_source_names_the_file(
    storage: FilesystemStorage, tmp_path: Path
) -> None:
    with pytest.raises(LocalFileNotFoundError, match=r"gone\.db"):
        storage.put_file("a/gone.db", tmp_path / "gone.db")
    assert storage.stat("a/gone.db") is None


class _FailingReader:
    """Yields some bytes, then fails as a disk read error would."""

    def __init__(self, chunks: int) -> None:
        self._chunks = chunks

    def readinto(self, buffer: bytearray, /) -> int:
        if self._chunks == 0:
            raise OSError(5, "Input/output error")
        self._chunks -= 1
        buffer[:4] = b"data"
        return 4


def test_failed_write_leaves_nothing_under_the_key(
    storage: FilesystemStorage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = _write(tmp_path / "src", b"x" * 100)

    def failing_copy(_source: object, target: object, buffer_size: int = 0) -> object:
        return copy_and_hash(_FailingReader(3), target, buffer_size or 8)  # type: ignore[arg-type]

    monkeypatch.setattr("cassy_scheduler.storage.filesystem.copy_file_and_hash", failing_copy)

    with pytest.raises(StorageError, match="nothing was left under the key"):
        storage.put_file("dir/obj", source)

    assert storage.stat("dir/obj") is None
    assert _visible_files(storage.base) == []  # the temporary was removed too


def test_failed_replace_keeps_the_old_object(
    storage: FilesystemStorage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    storage.put_bytes("dir/obj", b"complete old object")
    source = _write(tmp_path / "src", b"y" * 100)

    def interrupted(_source: object, _target: object, _buffer_size: int = 0) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr("cassy_scheduler.storage.filesystem.copy_file_and_hash", interrupted)
    with pytest.raises(KeyboardInterrupt):
        storage.put_file("dir/obj", source)

    assert storage.get_bytes("dir/obj") == b"complete old object"
    assert _visible_files(storage.base) == ["dir/obj"]


def test_temporary_files_are_hidden_from_listing(storage: FilesystemStorage) -> None:
    storage.put_bytes("k/a", b"1")
    _write(storage.base / "k" / ".a.x1y2.partial", b"half written")

    assert [info.key for info in storage.list("k/")] == ["k/a"]


def test_get_file_streams_to_a_local_path(storage: FilesystemStorage, tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    storage.put_bytes("x/y.db", data)

    info = storage.get_file("x/y.db", tmp_path / "restore" / "deep" / "y.db")

    assert (tmp_path / "restore" / "deep" / "y.db").read_bytes() == data
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.size == len(data)


def test_get_file_of_missing_object_raises(storage: FilesystemStorage, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFoundError, match="'no/such'"):
        storage.get_file("no/such", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_stat_and_sha256(storage: FilesystemStorage) -> None:
    storage.put_bytes("a/b/c", b"hello")

    info = storage.stat("a/b/c")
    assert info is not None
    assert (info.key, info.size) == ("a/b/c", 5)
    assert storage.sha256("a/b/c") == hashlib.sha256(b"hello").hexdigest()
    assert storage.stat("a/b") is None  # a directory is not an object
    assert storage.stat("a/b/c/d") is None
    assert storage.stat("nothing") is None
    with pytest.raises(ObjectNotFoundError):
        storage.sha256("nothing")


def test_list_is_sorted_and_filtered_by_prefix(storage: FilesystemStorage) -> None:
    for key in ["b/2", "a/x/1", "a/x.db", "a/y", "ab", "a/x/0", "c"]:
        storage.put_bytes(key, key.encode())

    assert [i.key for i in storage.list()] == ["a/x.db", "a/x/0", "a/x/1", "a/y", "ab", "b/2", "c"]
    assert [i.key for i in storage.list("a/")] == ["a/x.db", "a/x/0", "a/x/1", "a/y"]
    assert [i.key for i in storage.list("a/x")] == ["a/x.db", "a/x/0", "a/x/1"]
    assert [i.key for i in storage.list("a")] == ["a/x.db", "a/x/0", "a/x/1", "a/y", "ab"]
    assert [(i.key, i.size) for i in storage.list("b/")] == [("b/2", 3)]
    assert list(storage.list("zzz/")) == []


def test_list_of_a_base_that_does_not_exist_yet_is_empty(tmp_path: Path) -> None:
    assert list(FilesystemStorage(tmp_path / "later").list()) == []


def test_delete_is_idempotent(storage: FilesystemStorage) -> None:
    storage.put_bytes("a/b", b"1")

    storage.delete("a/b")
    storage.delete("a/b")

    assert storage.stat("a/b") is None
    with pytest.raises(ObjectNotFoundError):
        storage.get_bytes("a/b")


def test_put_bytes_reports_hash(storage: FilesystemStorage) -> None:
    info = storage.put_bytes("m.json", b"{}")
    assert info.sha256 == hashlib.sha256(b"{}").hexdigest()
    assert storage.get_bytes("m.json") == b"{}"


@pytest.mark.parametrize(
    "key",
    ["", "/abs", "a//b", "a/", "./a", "a/../b", "..", "a/.", "a\\b", "a/.b.1234.partial"],
)
def test_invalid_keys_are_rejected_by_every_operation(
    storage: FilesystemStorage, tmp_path: Path, key: str
) -> None:
    source = _write(tmp_path / "src", b"1")
    calls: list[Callable[[], object]] = [
        lambda: storage.put_file(key, source),
        lambda: storage.get_file(key, tmp_path / "out"),
        lambda: storage.stat(key),
        lambda: storage.sha256(key),
        lambda: storage.delete(key),
        lambda: storage.put_bytes(key, b""),
        lambda: storage.get_bytes(key),
    ]
    for call in calls:
        with pytest.raises(InvalidKeyError):
            call()


@pytest.mark.parametrize("prefix", ["/abs/", "a//", "../", "a/../", "a/..", "."])
def test_invalid_prefixes_are_rejected(storage: FilesystemStorage, prefix: str) -> None:
    with pytest.raises(InvalidKeyError):
        list(storage.list(prefix))


def test_key_that_would_need_a_file_as_directory_fails_clearly(
    storage: FilesystemStorage,
) -> None:
    storage.put_bytes("a", b"1")
    with pytest.raises(StorageError, match="'a/b'"):
        storage.put_bytes("a/b", b"2")


def test_base_must_be_absolute_and_a_directory(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="relative"):
        FilesystemStorage(Path("relative/dir"))
    _write(tmp_path / "file", b"")
    with pytest.raises(StorageError, match="not a directory"):
        FilesystemStorage(tmp_path / "file")


def test_durable_off_still_writes(tmp_path: Path) -> None:
    storage = FilesystemStorage(tmp_path / "s", durable=False)
    storage.put_bytes("a", b"1")
    assert storage.get_bytes("a") == b"1"


class _ShortWriter:
    """Accepts at most 3 bytes per write, as a raw file may."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: memoryview, /) -> int:
        self.data += data[:3]
        return min(3, len(data))


class _Chunks:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)

    def readinto(self, buffer: bytearray, /) -> int:
        chunk = next(self._chunks, b"")
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_copy_and_hash_handles_short_writes() -> None:
    target = _ShortWriter()
    result = copy_and_hash(_Chunks([b"hello ", b"world"]), target, buffer_size=8)
    assert bytes(target.data) == b"hello world"
    assert result.size == 11
    assert result.sha256 == hashlib.sha256(b"hello world").hexdigest()


def test_leftovers_of_interrupted_writes_older_than_a_moment_are_removed(
    storage: FilesystemStorage,
) -> None:
    storage.put_bytes("a/b/nb-1-big-Data.db", b"kept")
    old = storage.base / "a" / "b" / ".nb-2-big-Data.db.x1y2.partial"
    new = storage.base / "a" / ".manifest.json.z9.partial"
    old.write_bytes(b"x" * 1000)
    new.write_bytes(b"y" * 10)
    os.utime(old, (1_000_000, 1_000_000))
    left = storage.remove_leftovers(older_than=2_000_000)
    assert (left.count, left.bytes) == (1, 1000)
    assert not old.exists() and new.exists()
    assert storage.get_bytes("a/b/nb-1-big-Data.db") == b"kept"


def test_the_write_clock_is_the_file_systems_and_leaves_nothing(
    storage: FilesystemStorage,
) -> None:
    before = storage.write_clock()
    leftover = storage.base / ".nb-3-big-Data.db.q1.partial"
    leftover.write_bytes(b"z")
    assert leftover.stat().st_mtime >= before
    assert storage.remove_leftovers(before) == Leftovers()  # written since: kept
    assert sorted(p.name for p in storage.base.iterdir()) == [leftover.name]


def test_a_leftover_that_cannot_be_removed_does_not_stop_the_rest(
    storage: FilesystemStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck = storage.base / "a" / ".a.x.partial"
    gone = storage.base / "b" / ".b.y.partial"
    for path, data in ((stuck, b"a"), (gone, b"bb")):
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        os.utime(path, (1_000_000, 1_000_000))
    unlink = os.unlink

    def refuse_one(path: str) -> None:
        if path == str(stuck):
            raise PermissionError(13, "Permission denied", path)
        unlink(path)

    monkeypatch.setattr(os, "unlink", refuse_one)
    left = storage.remove_leftovers(older_than=2_000_000)
    assert (left.count, left.bytes) == (1, 2)
    assert stuck.exists() and not gone.exists()


def test_a_kernel_copy_is_hashed_as_written(tmp_path: Path) -> None:
    data = os.urandom(3 * (8 << 20) + 12345)  # several copy_file_range calls
    source = _write(tmp_path / "src", data)
    target = tmp_path / "dst"
    descriptor = os.open(target, os.O_RDWR | os.O_CREAT, 0o600)
    with open(source, "rb", buffering=0) as inp, open(descriptor, "wb", buffering=0) as out:
        result = copy_file_and_hash(inp, out, buffer_size=1 << 16)
    assert target.read_bytes() == data
    assert (result.size, result.sha256) == (len(data), hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize("code", [errno.EXDEV, errno.EPERM, errno.EINVAL, errno.ENOSYS])
def test_files_the_kernel_will_not_copy_between_are_copied_by_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def refuse(*_args: object) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "copy_file_range", refuse)
    storage = FilesystemStorage(tmp_path / "store", durable=False)
    info = storage.put_file("a/b", _write(tmp_path / "src", b"by hand"))
    assert info.sha256 == hashlib.sha256(b"by hand").hexdigest()
    assert storage.get_bytes("a/b") == b"by hand"


def test_a_copy_shares_the_file_and_stays_independent(storage: FilesystemStorage) -> None:
    storage.put_bytes("snap-1/nb-1-big-Data.db", b"rows")
    info = storage.copy("snap-1/nb-1-big-Data.db", "snap-2/nb-1-big-Data.db")
    assert info == ObjectInfo("snap-2/nb-1-big-Data.db", 4)
    first, second = (storage.path_of(f"snap-{n}/nb-1-big-Data.db") for n in (1, 2))
    assert first.stat().st_ino == second.stat().st_ino
    storage.sync(["snap-2/nb-1-big-Data.db"])
    storage.delete("snap-1/nb-1-big-Data.db")
    assert storage.get_bytes("snap-2/nb-1-big-Data.db") == b"rows"
    storage.put_bytes("snap-2/nb-1-big-Data.db", b"new")  # replaced, not written through
    with pytest.raises(ObjectNotFoundError):
        storage.copy("snap-1/nb-1-big-Data.db", "snap-3/x")
    assert _visible_files(storage.base) == ["snap-2/nb-1-big-Data.db"]


def test_a_kernel_copy_that_ends_early_is_finished_by_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some file systems answer copy_file_range with 0 before the end: not a short object."""
    real = os.copy_file_range
    calls: list[int] = []

    def stops_after_one(src: int, dst: int, count: int, *args: object) -> int:
        calls.append(count)
        return real(src, dst, 1000) if len(calls) == 1 else 0

    monkeypatch.setattr(os, "copy_file_range", stops_after_one)
    data = os.urandom(300_000)
    storage = FilesystemStorage(tmp_path / "store", durable=False)
    info = storage.put_file("a/b", _write(tmp_path / "src", data))
    assert (info.size, info.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert storage.get_bytes("a/b") == data
