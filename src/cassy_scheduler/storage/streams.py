"""Copying a byte stream while hashing it, so an upload reads its source exactly once; and
copying a file by the kernel while the copy is hashed beside it."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from io import FileIO
from pathlib import Path
from typing import Protocol

from cassy_scheduler.storage.errors import LocalFileNotFoundError, StorageError

DEFAULT_BUFFER_SIZE = 1 << 20
"""1 MiB: large enough that per-call overhead vanishes, small enough to bound memory per copy."""


class Reader(Protocol):
    """A stream that fills a caller's buffer (raw and buffered binary files both do)."""

    def readinto(self, buffer: bytearray, /) -> int | None: ...


class Writer(Protocol):
    """A binary stream that reports how many bytes each write took."""

    def write(self, data: memoryview, /) -> int | None: ...


class ChunksReader:
    """A Reader over pieces of bytes made one after another."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readinto(self, buffer: bytearray, /) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


def open_source(key: str, local_path: Path) -> FileIO:
    """The local file to be stored under `key`, opened unbuffered; a missing one raises
    LocalFileNotFoundError (it was removed after it was listed), another fault StorageError."""
    try:
        return open(local_path, "rb", buffering=0)
    except FileNotFoundError as exc:
        raise LocalFileNotFoundError(
            f"cannot store {key!r}: local file {str(local_path)!r} does not exist "
            "(was it removed after it was listed?)"
        ) from exc
    except OSError as exc:
        raise StorageError(
            f"{exc.strerror or exc}: cannot read local file {str(local_path)!r} to store {key!r}"
        ) from exc


@dataclass(frozen=True)
class CopyResult:
    """How many bytes were copied and the hex SHA-256 of exactly those bytes."""

    size: int
    sha256: str


def copy_and_hash(
    source: Reader, target: Writer, buffer_size: int = DEFAULT_BUFFER_SIZE
) -> CopyResult:
    """Copy `source` to `target` through one reused buffer, hashing each chunk on the way."""
    digest = hashlib.sha256()
    buffer = bytearray(buffer_size)
    view = memoryview(buffer)
    size = 0
    while True:
        count = source.readinto(buffer)
        if not count:
            break
        chunk = view[:count]
        digest.update(chunk)
        write_all(target, chunk)
        size += count
    return CopyResult(size=size, sha256=digest.hexdigest())


def write_all(target: Writer, chunk: memoryview) -> None:
    # Unbuffered (raw) files may write fewer bytes than asked.
    while chunk:
        written = target.write(chunk)
        if written is None:
            raise BlockingIOError("target would block; copy_and_hash needs a blocking stream")
        chunk = chunk[written:]


#: How much one copy_file_range call moves before the hasher is told: large enough that the
#: calls cost nothing, small enough that hashing trails the copy closely.
_KERNEL_CHUNK = 8 << 20
#: errno values of a first kernel copy that a copy by hand would meet too; any other refusal
#: (another file system, a seccomp profile, an old kernel) means: copy by hand.
_REAL_FAULTS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})


class RawFile(Protocol):
    """An open file with a descriptor; the target's must be readable too (mkstemp's is)."""

    def fileno(self) -> int: ...

    def readinto(self, buffer: bytearray, /) -> int | None: ...

    def write(self, data: memoryview, /) -> int | None: ...


def copy_file_and_hash(
    source: RawFile, target: RawFile, buffer_size: int = DEFAULT_BUFFER_SIZE
) -> CopyResult:
    """Copy one file into another by the kernel (copy_file_range: no byte passes through this
    process, and file systems that can share extents do), while a second thread hashes what
    was written, as it is written, so the hash is of the stored bytes whatever the source
    did meanwhile. Files the kernel will not copy between go through copy_and_hash; a kernel
    copy that stops short of the end is finished by hand."""
    if not hasattr(os, "copy_file_range"):
        return copy_and_hash(source, target, buffer_size)
    src, dst = source.fileno(), target.fileno()
    try:
        moved = os.copy_file_range(src, dst, _KERNEL_CHUNK)
    except OSError as exc:
        if exc.errno in _REAL_FAULTS:
            raise
        return copy_and_hash(source, target, buffer_size)  # refused: nothing was copied
    hasher = _TrailingHasher(dst, buffer_size)
    hasher.start()
    try:
        written = moved
        hasher.advance(written)
        while moved:
            moved = os.copy_file_range(src, dst, _KERNEL_CHUNK)
            written += moved
            hasher.advance(written)
        written += _copy_rest(source, target, buffer_size, hasher, written)
    except BaseException:
        hasher.abandon()
        raise
    return CopyResult(size=written, sha256=hasher.finish())


def _copy_rest(
    source: RawFile, target: RawFile, buffer_size: int, hasher: _TrailingHasher, written: int
) -> int:
    """Whatever the kernel copy left (some file systems end it early): to the end, by hand;
    0 bytes when it had reached the end."""
    buffer = bytearray(buffer_size)
    view = memoryview(buffer)
    extra = 0
    while count := source.readinto(buffer):
        write_all(target, view[:count])
        extra += count
        hasher.advance(written + extra)
    return extra


class _TrailingHasher:
    """Hashes a file's first `advance(n)` bytes on its own thread, reading them back from
    the page cache just behind the writer."""

    def __init__(self, descriptor: int, buffer_size: int) -> None:
        self._descriptor = descriptor
        self._buffer_size = buffer_size
        self._digest = hashlib.sha256()
        self._ready = 0
        self._done = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="upload-hash", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def advance(self, ready: int) -> None:
        with self._changed:
            self._ready = ready
            self._changed.notify()

    def finish(self) -> str:
        """Wait until every byte written so far is hashed; the hex digest."""
        with self._changed:
            self._done = True
            self._changed.notify()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest.hexdigest()

    def abandon(self) -> None:
        """The copy failed: end the thread, keeping the copy's error the one raised."""
        with self._changed:
            self._done = True
            self._ready = 0
            self._changed.notify()
        self._thread.join()

    def _run(self) -> None:
        hashed = 0
        try:
            while True:
                with self._changed:
                    while self._ready <= hashed and not self._done:
                        self._changed.wait()
                    ready, done = self._ready, self._done
                while hashed < ready:
                    chunk = os.pread(
                        self._descriptor, min(self._buffer_size, ready - hashed), hashed
                    )
                    if not chunk:
                        raise OSError(errno.EIO, "the copy came back shorter than written")
                    self._digest.update(chunk)
                    hashed += len(chunk)
                if done:  # nothing is written after finish() began
                    return
        except BaseException as exc:  # handed to finish()
            self._error = exc
