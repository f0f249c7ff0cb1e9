"""The storage package's exceptions: one family, so callers can catch every storage fault."""

from __future__ import annotations


class StorageError(Exception):
    """A storage operation failed; the message says which object and what to do."""


class InvalidKeyError(StorageError, ValueError):
    """An object key or prefix is not a clean '/'-separated relative path."""


class ObjectNotFoundError(StorageError, LookupError):
    """The requested object does not exist in storage."""


class LocalFileNotFoundError(StorageError):
    """A local file to upload does not exist (it may have been removed since it was listed)."""


class UnsupportedStorageError(StorageError, ValueError):
    """A storage URI names a scheme or form that no backend handles."""


class StorageOptionRefusedError(UnsupportedStorageError):
    """The provider's client refused an option or a credential of the table (a malformed
    key, an unknown region); the message carries its reason."""


class WriteCancelledError(StorageError):
    """A write stopped because its caller asked (a server out of shutdown grace); nothing
    was left under the key."""


class StorageProbeError(StorageError):
    """The storage refused the server's trial write, read or delete at start."""
