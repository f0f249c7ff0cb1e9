"""Storage in a local (or mounted) directory: each key is a file path under the base.

Every write goes to a hidden temporary name in the target's own directory, is flushed to
disk, then renamed over the key, so a crash leaves either the old object or the new one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from io import FileIO
from pathlib import Path
from stat import S_ISREG
from typing import BinaryIO, TypeVar

from cassy_scheduler.durable import fsync_directory, sync_files
from cassy_scheduler.storage.base import Leftovers, ObjectInfo, Storage
from cassy_scheduler.storage.errors import (
    ObjectNotFoundError,
    StorageError,
)
from cassy_scheduler.storage.keys import (
    TEMP_SUFFIX,
    is_temporary_name,
    validate_key,
    validate_prefix,
)
from cassy_scheduler.storage.streams import (
    DEFAULT_BUFFER_SIZE,
    CopyResult,
    Reader,
    copy_and_hash,
    copy_file_and_hash,
    open_source,
    write_all,
)

_log = logging.getLogger(__name__)

_T = TypeVar("_T")


class FilesystemStorage(Storage):
    """Objects as files under `base`; keys map to relative paths.

    `durable=False` skips fsync: renames stay atomic against a crashed process but not against
    power loss. It exists for scratch storage and tests, not for real backups.
    """

    def __init__(
        self,
        base: Path,
        *,
        durable: bool = True,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        if not base.is_absolute():
            raise StorageError(f"storage base {str(base)!r} is relative: give an absolute path")
        if base.exists() and not base.is_dir():
            raise StorageError(
                f"storage base {str(base)!r} exists and is not a directory: "
                "point the storage URI at a directory"
            )
        self._base = base
        self._durable = durable
        self._buffer_size = buffer_size

    @property
    def uri(self) -> str:
        return self._base.as_uri()

    @property
    def base(self) -> Path:
        return self._base

    def path_of(self, key: str) -> Path:
        """The file that holds (or would hold) the object `key`."""
        return self._base.joinpath(*validate_key(key).split("/"))

    def put_file(
        self,
        key: str,
        local_path: Path,
        *,
        sync: bool = True,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> ObjectInfo:
        """The kernel copies the file in one go: `cancelled` is not polled."""
        target = self.path_of(key)
        source = open_source(key, local_path)
        with source:
            copied = self._write_atomically(
                target,
                key,
                lambda out: copy_file_and_hash(source, out, self._buffer_size),
                sync=sync,
            )
        _log.debug("stored key=%s size=%d source=%s", key, copied.size, local_path)
        return ObjectInfo(key=key, size=copied.size, sha256=copied.sha256)

    def put_stream(
        self, key: str, source: Reader, *, sync: bool = True, size: int | None = None
    ) -> ObjectInfo:
        copied = self._write_atomically(
            self.path_of(key),
            key,
            lambda out: copy_and_hash(source, out, self._buffer_size),
            sync=sync,
        )
        _log.debug("stored key=%s size=%d from a stream", key, copied.size)
        return ObjectInfo(key=key, size=copied.size, sha256=copied.sha256)

    def put_chunks(
        self, key: str, chunks: Iterable[bytes], *, sync: bool = True, size: int | None = None
    ) -> ObjectInfo:
        """Each piece written as it comes; not hashed (the maker of the pieces knows what
        they hold), so the result has no SHA-256."""

        def write(out: FileIO) -> CopyResult:
            written = 0
            for chunk in chunks:
                write_all(out, memoryview(chunk))
                written += len(chunk)
            return CopyResult(size=written, sha256="")

        copied = self._write_atomically(self.path_of(key), key, write, sync=sync)
        return ObjectInfo(key=key, size=copied.size)

    def get_file(self, key: str, local_path: Path, *, sync: bool = True) -> ObjectInfo:
        source_path = self.path_of(key)
        try:
            source = open(source_path, "rb", buffering=0)  # noqa: SIM115 - closed below
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(f"object {key!r} not found in {self.uri}") from exc
        with source:
            copied = self._write_atomically(
                local_path,
                key,
                lambda out: copy_file_and_hash(source, out, self._buffer_size),
                sync=sync,
            )
        return ObjectInfo(key=key, size=copied.size, sha256=copied.sha256)

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            result = self.path_of(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not S_ISREG(result.st_mode):
            return None
        return ObjectInfo(key=key, size=result.st_size)

    def sha256(self, key: str) -> str:
        path = self.path_of(key)
        try:
            with open(path, "rb") as source:
                return hashlib.file_digest(source, "sha256").hexdigest()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(f"object {key!r} not found in {self.uri}") from exc

    def chunks(self, key: str) -> Iterator[bytes]:
        path = self.path_of(key)
        try:
            source = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the generator
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(f"object {key!r} not found in {self.uri}") from exc
        return _read_chunks(source, self._buffer_size)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        directory, _, _ = prefix.rpartition("/")
        root = self._base.joinpath(*directory.split("/")) if directory else self._base
        key_root = f"{directory}/" if directory else ""
        found = sorted(_walk(root, key_root, prefix))
        return (ObjectInfo(key=key, size=size, modified=modified) for key, size, modified in found)

    def delete(self, key: str) -> None:
        path = self.path_of(key)
        with suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()
            _log.debug("deleted key=%s", key)

    def delete_many(self, keys: Sequence[str]) -> None:
        """Unlink each file, then remove the directories this left empty, deepest first,
        so a pruned backup leaves no empty tree behind."""
        parents: set[Path] = set()
        for key in keys:
            self.delete(key)
            parents.update(self.path_of(key).parents)
        root = self._base
        for directory in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            if directory != root and root in directory.parents:
                with suppress(OSError):  # not empty, or gone already
                    directory.rmdir()

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        target = self.path_of(key)
        self._write_atomically(target, key, lambda out: out.write(data))
        return ObjectInfo(key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest())

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path_of(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(f"object {key!r} not found in {self.uri}") from exc

    def copy(self, source_key: str, target_key: str) -> ObjectInfo | None:
        """A hard link: objects are never changed in place (every write renames a new file
        over the key), so two keys may share one file and stay independent."""
        source = self.path_of(source_key)
        target = self.path_of(target_key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.parent / f".{target.name}.{os.getpid()}.link{TEMP_SUFFIX}"
            with suppress(FileNotFoundError):
                temporary.unlink()
            os.link(source, temporary)
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(f"object {source_key!r} not found in {self.uri}") from exc
        except OSError as exc:  # too many links, a file system without them: upload instead
            _log.debug("no hard link key=%s error=%s", target_key, exc.strerror or exc)
            return None
        try:
            size = temporary.stat().st_size  # the file linked, whatever the source became
            os.replace(temporary, target)
        except OSError as exc:
            with suppress(FileNotFoundError):
                temporary.unlink()
            raise StorageError(
                f"{exc.strerror or exc}: linking {target_key!r} to {source_key!r} failed"
            ) from exc
        return ObjectInfo(key=target_key, size=size)

    def sync(self, keys: Sequence[str]) -> None:
        if not self._durable:
            return
        try:
            sync_files([self.path_of(key) for key in keys])
        except OSError as exc:
            raise StorageError(
                f"{exc.strerror or exc}: flushing the objects to disk failed "
                f"({exc.filename}); the backup is not complete"
            ) from exc

    def write_clock(self) -> float:
        """The modification time a file written now gets: the file system's clock."""
        self._base.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self._base, prefix=".clock.", suffix=TEMP_SUFFIX) as f:
            return os.fstat(f.fileno()).st_mtime

    def remove_leftovers(self, older_than: float) -> Leftovers:
        count = size = 0
        for directory, _, names in os.walk(self._base):
            for name in names:
                if not is_temporary_name(name):
                    continue
                path = os.path.join(directory, name)
                try:
                    status = os.stat(path)
                    if status.st_mtime >= older_than:
                        continue  # written since: a write of this process
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    _log.warning("leftover not removed path=%s error=%s", path, exc.strerror)
                    continue
                count += 1
                size += status.st_size
        return Leftovers(count, size)

    def _write_atomically(
        self, target: Path, key: str, write: Callable[[FileIO], _T], *, sync: bool = True
    ) -> _T:
        """Run `write` into a temporary sibling of `target`, then rename it into place;
        with `sync`, flushed to disk first and the rename after."""
        sync = sync and self._durable
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(
                prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent
            )
        except OSError as exc:
            raise StorageError(
                f"{exc.strerror or exc}: cannot write {key!r} at {str(target)!r}; "
                "check that the path is a writable directory and not a file"
            ) from exc
        try:
            with open(descriptor, "wb", buffering=0) as out:
                result = write(out)
                if sync:
                    os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException as exc:
            with suppress(FileNotFoundError):
                os.unlink(temporary)
            if isinstance(exc, OSError):
                raise StorageError(
                    f"{exc.strerror or exc}: writing {key!r} to {str(target)!r} failed; "
                    "nothing was left under the key (check free space and permissions)"
                ) from exc
            raise
        if sync:
            fsync_directory(target.parent)
        return result


def _read_chunks(source: BinaryIO, size: int) -> Iterator[bytes]:
    with source:
        while chunk := source.read(size):
            yield chunk


def _walk(directory: Path, key_root: str, prefix: str) -> Iterator[tuple[str, int, float]]:
    """(key, size, mtime) of each regular file below `directory` whose key starts with `prefix`."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if is_temporary_name(entry.name):
            continue
        key = key_root + entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                below = key + "/"
                if below.startswith(prefix) or prefix.startswith(below):
                    yield from _walk(Path(entry.path), below, prefix)
            elif entry.is_file() and key.startswith(prefix):
                status = entry.stat()
                yield key, status.st_size, status.st_mtime
        except FileNotFoundError:
            continue  # removed while listing
