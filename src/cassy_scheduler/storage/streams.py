"""Copying a byte stream while hashing it, so an upload reads its source exactly once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

DEFAULT_BUFFER_SIZE = 1 << 20
"""1 MiB: large enough that per-call overhead vanishes, small enough to bound memory per copy."""


class Reader(Protocol):
    """A stream that fills a caller's buffer (raw and buffered binary files both do)."""

    def readinto(self, buffer: bytearray, /) -> int | None: ...


class Writer(Protocol):
    """A binary stream that reports how many bytes each write took."""

    def write(self, data: memoryview, /) -> int | None: ...


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
        _write_all(target, chunk)
        size += count
    return CopyResult(size=size, sha256=digest.hexdigest())


def _write_all(target: Writer, chunk: memoryview) -> None:
    # Unbuffered (raw) files may write fewer bytes than asked.
    while chunk:
        written = target.write(chunk)
        if written is None:
            raise BlockingIOError("target would block; copy_and_hash needs a blocking stream")
        chunk = chunk[written:]
