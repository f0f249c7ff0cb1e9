"""Making a rename survive power loss, for the two places that publish files by renaming them:
the filesystem storage and a restore placing SSTables in a node's data directory."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path


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
