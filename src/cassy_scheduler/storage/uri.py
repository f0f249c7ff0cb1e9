"""Opening a storage backend from the base URI an operator configures."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from cassy_scheduler.storage.base import Storage
from cassy_scheduler.storage.errors import UnsupportedStorageError
from cassy_scheduler.storage.filesystem import FilesystemStorage
from cassy_scheduler.storage.options import StorageOptions

SUPPORTED_SCHEMES = ("file", "s3", "az", "gs")


def open_storage(where: str | StorageOptions) -> Storage:
    """The backend for a URI ('file:///var/backups/cassandra', 's3://bucket/prefix') or a
    whole `[storage]` table; a bare object-store URI reaches its provider's default endpoint
    with the provider's own credential chain. Opening sends no request; obstore is loaded
    only for an object store."""
    options = where if isinstance(where, StorageOptions) else StorageOptions(uri=where)
    store = _open_plain(options)
    if not options.client_keys:
        return store
    from cassy_scheduler.storage.encrypted import EncryptedStorage  # noqa: PLC0415
    from cassy_scheduler.storage.envelope import Keyring  # noqa: PLC0415

    current, *previous = options.client_keys
    return EncryptedStorage(store, Keyring(current, tuple(previous)))


def _open_plain(options: StorageOptions) -> Storage:
    uri = options.uri
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return _open_file(uri, parts.netloc, parts.path, parts.query)
    if scheme in SUPPORTED_SCHEMES:
        from cassy_scheduler.storage.providers import open_object_storage  # noqa: PLC0415

        return open_object_storage(options)
    supported = ", ".join(f"{name}://" for name in SUPPORTED_SCHEMES)
    shown = f"scheme {scheme!r}" if scheme else "no scheme"
    raise UnsupportedStorageError(
        f"storage URI {uri!r} has {shown}: supported are {supported} "
        "(for example file:///var/backups/cassandra or s3://my-bucket/cassandra)"
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
