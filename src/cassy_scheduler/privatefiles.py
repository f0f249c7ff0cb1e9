"""Files only the program's own user may read: run history, locks, the server's metadata.

They hold cluster ids, node addresses, failure reasons and error texts, so they are created
0600 (SQLite gives its -wal and -shm files the database file's mode) in directories created
0700, whatever the umask. Files and directories that already exist keep their modes: an
operator who set them chose them.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


def private_directory(path: Path) -> None:
    """Create `path` and any missing parents, each new one 0700."""
    missing = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIRECTORY_MODE)
        except FileExistsError:
            continue  # made meanwhile by another process
        os.chmod(directory, DIRECTORY_MODE)  # mkdir's mode is cut by the umask


def private_file(path: Path) -> None:
    """Create `path` empty and 0600 unless it exists (its directory too, 0700)."""
    private_directory(path.parent)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.fchmod(descriptor, FILE_MODE)
    os.close(descriptor)
