"""A node's failure reason leads with its cause: a reason is cut short on its way to people,
and the key and path of a full disk's error would fill what is left."""

from __future__ import annotations

import errno
import os

from cassy_scheduler.server.errors import reason_of
from cassy_scheduler.storage import StorageError


def test_the_operating_systems_cause_comes_first() -> None:
    key = "node-backup/prod-1/" + "s" * 200 + "/nb-1-big-Data.db"
    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as full:
            raise StorageError(f"writing {key!r} failed (a message naming the key)") from full
    except StorageError as exc:
        reason = reason_of(exc)
    assert reason.startswith("No space left on device: writing")
    assert reason_of(RuntimeError("plain\nsecond line")) == "plain"


def test_a_cause_already_first_is_not_repeated() -> None:
    error = OSError(errno.EACCES, "Permission denied")
    assert reason_of(StorageError("Permission denied: cannot write").with_traceback(None)) == (
        "Permission denied: cannot write"
    )
    assert reason_of(error).count("Permission denied") == 1
