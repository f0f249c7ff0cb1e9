"""The start-up check of a store: write, read back and delete a small object, so a missing
bucket, refused credentials or a read-only directory stop `serve` (and `check`) with the
store's reason and the fix, before any backup is accepted."""

from __future__ import annotations

import os
import socket
import uuid

from cassy_scheduler.storage.base import Storage
from cassy_scheduler.storage.errors import StorageError, StorageProbeError

PROBE_PREFIX = "cassy-scheduler-probe-"
"""At the top of the store, so the probe leaves no directory behind on a file system."""

#: Words in a store's reason, and what to do about them; the first that matches is told.
_FIXES = (
    (
        ("NoSuchBucket", "ContainerNotFound", "bucket does not exist", "404 Not Found"),
        "create the bucket (or container) or correct [storage] uri",
    ),
    (
        (
            "AccessDenied",
            " 403 ",
            " 401 ",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AuthenticationFailed",
            "AuthorizationFailure",
            "ExpiredToken",
        ),
        "check the credentials ([storage] *_env / *_file keys, or the provider's environment) "
        "and that they may write, read and delete objects under the URI's prefix",
    ),
    (
        ("error sending request", "connect", "dns error", "timed out", "Connection refused"),
        "check [storage] endpoint and that this host reaches it",
    ),
    (
        ("Permission denied", "Read-only file system", "No space left"),
        "give the server's user a writable directory with free space",
    ),
)


def probe(storage: Storage) -> None:
    """Raise StorageProbeError, with the store's reason and a fix, unless a small object
    can be written, read back and deleted."""
    key = f"{PROBE_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
    data = b"cassy-scheduler storage probe\n"
    try:
        storage.put_bytes(key, data)
        try:
            back = storage.get_bytes(key)
        finally:
            storage.delete(key)
    except StorageError as exc:
        raise StorageProbeError(
            _with_fix(f"storage {storage.uri} refused a test write: {exc}")
        ) from None
    if back != data:
        raise StorageProbeError(
            f"storage {storage.uri} returned other bytes than were written to {key!r}: "
            "check that [storage] endpoint is an object store, not a proxy that rewrites"
        )


def _with_fix(message: str) -> str:
    """The first fix whose words are in the store's part of `message` (after the probe's key,
    whose random name could hold any digits)."""
    reason = message.rpartition(" failed: ")[2]
    for words, fix in _FIXES:
        if any(word in f" {reason} " for word in words):
            return f"{message}; {fix}"
    return message
