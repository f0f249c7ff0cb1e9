"""The storage interface every backend implements, and the description of a stored object.

Backups and restores talk only to `Storage`, so filesystem, S3 and Azure backends can be
swapped by the base URI alone.
"""

from __future__ import annotations

import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cassy_scheduler.storage.streams import ChunksReader, Reader, copy_and_hash


@dataclass(frozen=True)
class Leftovers:
    """What interrupted writes had left in a store, now removed."""

    count: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class ObjectInfo:
    """A stored object: its key, its size in bytes and, when known, its SHA-256 (hex), the
    store's ETag, which changes whenever the object is written again (None where a backend
    has none: a file system), and when it was last written (a Unix time; listings give it)."""

    key: str
    size: int
    sha256: str | None = None
    etag: str | None = None
    modified: float | None = None


class Storage(ABC):
    """A flat namespace of objects addressed by '/'-separated relative keys.

    Writes are atomic: an object is either absent or complete under its key, never partial.
    """

    @property
    @abstractmethod
    def uri(self) -> str:
        """The base URI this storage was opened from, for logs and messages."""

    @property
    def sealed_with(self) -> str | None:
        """The id of the key that seals what is written here (client-side encryption), or
        None: objects are stored as given."""
        return None

    def head(self, key: str, size: int) -> bytes:
        """The object's first `size` bytes (all of it when it is shorter); stores that can
        read a range override this, so that a header costs no more than its bytes."""
        pieces = self.chunks(key)
        head = b""
        try:
            for piece in pieces:
                head += piece
                if len(head) >= size:
                    break
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
        return head[:size]

    def sealed_by(self, key: str) -> str | None:
        """The id of the key that sealed the object under `key` (None where nothing is
        sealed). An upload sends again what an earlier key sealed, so that a retired key is
        no longer needed once the backups made before the rotation are gone."""
        return None

    @abstractmethod
    def put_file(
        self,
        key: str,
        local_path: Path,
        *,
        sync: bool = True,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> ObjectInfo:
        """Store a local file under `key`, streaming it; the result carries its SHA-256 (of
        the bytes stored). With sync=False the object is complete and atomic against a crash
        of this process, but may not survive a power loss until `sync([key, ...])` returns:
        many files then wait for the disk once, at the end. A backend that sends a file in
        pieces polls `cancelled` between them and raises WriteCancelledError, leaving
        nothing under the key."""

    def put_stream(
        self, key: str, source: Reader, *, sync: bool = True, size: int | None = None
    ) -> ObjectInfo:
        """Store what `source` yields until its end under `key`, as put_file does; a source
        that raises leaves nothing under the key. `size`, when the caller knows how long the
        stream is, lets a backend plan its parts. This default keeps the bytes in a
        temporary local file first; a backend that can write a stream directly does so."""
        with tempfile.NamedTemporaryFile(prefix="cassy-stream-") as spool:
            copy_and_hash(source, spool)
            spool.flush()
            return self.put_file(key, Path(spool.name), sync=sync)

    def put_chunks(
        self, key: str, chunks: Iterable[bytes], *, sync: bool = True, size: int | None = None
    ) -> ObjectInfo:
        """Store the concatenation of `chunks` under `key`, as put_stream does, for a caller
        that makes its bytes in pieces (sealing); a backend that can send the pieces as they
        are does so, without copying them."""
        return self.put_stream(key, ChunksReader(chunks), sync=sync, size=size)

    @abstractmethod
    def get_file(self, key: str, local_path: Path, *, sync: bool = True) -> ObjectInfo:
        """Fetch the object into `local_path`, streaming it; the result carries its SHA-256
        (of the bytes written). With sync=False the local file is complete but not yet
        flushed to disk: the caller syncs many at once (durable.sync_files)."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """Describe the object (its size; the SHA-256 and ETag the store keeps, if any), or
        None when it does not exist. Never reads the content."""

    @abstractmethod
    def sha256(self, key: str) -> str:
        """The hex SHA-256 of the object's content; ObjectNotFoundError if absent."""

    @abstractmethod
    def chunks(self, key: str) -> Iterator[bytes]:
        """The object's content in pieces of bounded size, for checks that read it once;
        ObjectNotFoundError if absent."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; removing an absent object is not an error."""

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every object of `keys`, absent ones included, in as few requests as the
        backend allows (an object store deletes up to a thousand keys per request). This
        default deletes them one by one."""
        for key in keys:
            self.delete(key)

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """Store a small object held in memory (manifests, dumps)."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read a small object into memory; ObjectNotFoundError if absent."""

    def sync(self, keys: Sequence[str]) -> None:
        """Make what was written under `keys` with sync=False (put_file, copy) durable.
        Backends whose writes are durable when they return have nothing to do."""
        return None

    def copy(self, source_key: str, target_key: str) -> ObjectInfo | None:
        """Store under `target_key` the object at `source_key` without sending its bytes
        again (a hard link on a file system, a server-side copy in object storage), as
        put_file with sync=False does; None when this backend cannot, and the caller
        uploads. ObjectNotFoundError when `source_key` is absent. The two objects stay
        independent: deleting or replacing either leaves the other as it was."""
        return None

    def write_clock(self) -> float:
        """Now (a Unix time) by the clock that stamps this store's writes: a network file
        system's server may be behind or ahead of this host. Take it before writing starts
        and pass it to remove_leftovers."""
        return time.time()

    def remove_leftovers(self, older_than: float) -> Leftovers:
        """Remove what writes interrupted before `older_than` (a write_clock reading) left
        behind, such as temporary files, which are never objects but hold space. Writes
        begun since are left alone, so this may run beside new ones; one that cannot be
        removed is skipped. A backend whose writes leave nothing behind has nothing to do."""
        return Leftovers()
