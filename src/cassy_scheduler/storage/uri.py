"""Opening a storage backend from the base URI an operator configures."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from cassy_scheduler.storage.base import Storage
from cassy_scheduler.storage.errors import UnsupportedStorageError
from cassy_scheduler.storage.filesystem import FilesystemStorage

SUPPORTED_SCHEMES = ("file",)


def open_storage(uri: str) -> Storage:
    """The backend for `uri`, e.g. 'file:///var/backups/cassandra'."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return _open_file(uri, parts.netloc, parts.path, parts.query)
    supported = ", ".join(f"{name}://" for name in SUPPORTED_SCHEMES)
    shown = f"scheme {scheme!r}" if scheme else "no scheme"
    raise UnsupportedStorageError(
        f"storage URI {uri!r} has {shown}: supported are {supported} "
        "(for example file:///var/backups/cassandra)"
    )


def _open_file(uri: str, host: str, path: str, query: str) -> Storage:
    if host not in ("", "localhost"):
        raise UnsupportedStorageError(
            f"storage URI {uri!r} names host {host!r}: file URIs must be local, "
            "like file:///var/backups/cassandra (three slashes)"
        )
    if query:
        raise UnsupportedStorageError(f"storage URI {uri!r} has a query part: remove it")
    if not path.startswith("/"):
        raise UnsupportedStorageError(
            f"storage URI {uri!r} has no absolute path: use file:///absolute/directory"
        )
    return FilesystemStorage(Path(unquote(path)))
