"""Making files and renames survive power loss, for the two places that publish files by
renaming them: the filesystem storage and a restore placing SSTables in a node's data
directory. Many files wait for the disk together (`sync_files`), not one after another."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

_SYNC_THREADS = 8


def fsync_directory(directory: Path) -> None:
    """Flush `directory`'s entries to disk; a filesystem that refuses is left as it is, since
    the rename is still atomic against a crashed process."""
    try:
        descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sync_files(paths: Sequence[Path]) -> None:
    """fsync every file, then every directory holding one, once; in parallel, since each
    waits for the disk. An OSError names the file (its `filename`)."""
    if not paths:
        return
    directories = sorted({path.parent for path in paths})
    with ThreadPoolExecutor(min(_SYNC_THREADS, len(paths)), "sync") as pool:
        list(pool.map(_fsync_file, paths))
        list(pool.map(fsync_directory, directories))


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
