"""Where backups are kept: one interface, a filesystem backend today, object stores later."""

from cassy_scheduler.storage.base import ObjectInfo, Storage
from cassy_scheduler.storage.errors import (
    InvalidKeyError,
    LocalFileNotFoundError,
    ObjectNotFoundError,
    StorageError,
    UnsupportedStorageError,
)
from cassy_scheduler.storage.filesystem import FilesystemStorage
from cassy_scheduler.storage.uri import SUPPORTED_SCHEMES, open_storage

__all__ = [
    "SUPPORTED_SCHEMES",
    "FilesystemStorage",
    "InvalidKeyError",
    "LocalFileNotFoundError",
    "ObjectInfo",
    "ObjectNotFoundError",
    "Storage",
    "StorageError",
    "UnsupportedStorageError",
    "open_storage",
]
