"""A store whose objects are sealed before they leave this process (storage/envelope.py):
the bucket's owner, or anyone who reads the disk, sees only ciphertext and sizes.

Everything above it sees plaintext: sizes and SHA-256 are the content's, so manifests, the
upload's skip rules and `verify` work unchanged, and a restore is still proven by the
plaintext checksums. The inner store's own SHA-256 (of the ciphertext) never comes out.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from pathlib import Path

from cassy_scheduler.storage.base import Leftovers, ObjectInfo, Storage
from cassy_scheduler.storage.envelope import (
    HEADER,
    Keyring,
    Sealer,
    open_chunks,
    open_sealed,
    plaintext_size,
    seal,
    sealed_key_id,
    stored_size,
)
from cassy_scheduler.storage.errors import StorageError
from cassy_scheduler.storage.streams import Reader, open_source


class EncryptedStorage(Storage):
    def __init__(self, inner: Storage, keys: Keyring) -> None:
        self._inner = inner
        self._keys = keys

    @property
    def uri(self) -> str:
        return self._inner.uri

    @property
    def sealed_with(self) -> str:
        return self._keys.current_id

    def sealed_by(self, key: str) -> str | None:
        return sealed_key_id(self._inner.head(key, HEADER))

    def _plain(self, info: ObjectInfo) -> ObjectInfo:
        size = plaintext_size(info.size)
        return ObjectInfo(
            key=info.key,
            size=info.size if size is None else size,  # not ours: reading it says so
            sha256=None,
            etag=info.etag,
            modified=info.modified,
        )

    def put_file(
        self,
        key: str,
        local_path: Path,
        *,
        sync: bool = True,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> ObjectInfo:
        with open_source(key, local_path) as source:
            size = stored_size(os.fstat(source.fileno()).st_size)
            return self._put(key, Sealer(source, self._keys, cancelled), sync, size)

    def put_stream(
        self, key: str, source: Reader, *, sync: bool = True, size: int | None = None
    ) -> ObjectInfo:
        sealed = None if size is None else stored_size(size)
        return self._put(key, Sealer(source, self._keys), sync, sealed)

    def _put(self, key: str, sealer: Sealer, sync: bool, size: int | None) -> ObjectInfo:
        stored = self._inner.put_chunks(key, sealer.chunks(), sync=sync, size=size)
        return ObjectInfo(key=key, size=sealer.size, sha256=sealer.sha256, etag=stored.etag)

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        stored = self._inner.put_bytes(key, seal(data, self._keys))
        digest = hashlib.sha256(data).hexdigest()
        return ObjectInfo(key=key, size=len(data), sha256=digest, etag=stored.etag)

    def get_bytes(self, key: str) -> bytes:
        return open_sealed(self._inner.get_bytes(key), self._keys, f"object {key!r}")

    def chunks(self, key: str) -> Iterator[bytes]:
        return open_chunks(self._inner.chunks(key), self._keys, f"object {key!r}")

    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks(key):
            digest.update(chunk)
        return digest.hexdigest()

    def get_file(self, key: str, local_path: Path, *, sync: bool = True) -> ObjectInfo:
        """Decrypted as it arrives; a chunk that fails authentication removes the file, so
        nothing unproven is left where a restore would take it."""
        info = self._inner.stat(key)
        digest = hashlib.sha256()
        size = 0
        try:
            with open(local_path, "wb") as out:
                for chunk in self.chunks(key):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                if sync:
                    out.flush()
                    os.fsync(out.fileno())
        except BaseException as exc:
            with suppress(FileNotFoundError):
                local_path.unlink()
            if isinstance(exc, OSError) and not isinstance(exc, StorageError):
                raise StorageError(
                    f"{exc.strerror or exc}: writing {key!r} to {str(local_path)!r} failed"
                ) from exc
            raise
        etag = info.etag if info is not None else None
        return ObjectInfo(key=key, size=size, sha256=digest.hexdigest(), etag=etag)

    def stat(self, key: str) -> ObjectInfo | None:
        info = self._inner.stat(key)
        return None if info is None else self._plain(info)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return map(self._plain, self._inner.list(prefix))

    def delete(self, key: str) -> None:
        self._inner.delete(key)

    def delete_many(self, keys: Sequence[str]) -> None:
        self._inner.delete_many(keys)

    def sync(self, keys: Sequence[str]) -> None:
        self._inner.sync(keys)

    def copy(self, source_key: str, target_key: str) -> ObjectInfo | None:
        """The sealed object as it is: it stays readable under its new key (keys are not
        bound into the seal), with the data key it was sealed with."""
        copied = self._inner.copy(source_key, target_key)
        return None if copied is None else self._plain(copied)

    def write_clock(self) -> float:
        return self._inner.write_clock()

    def remove_leftovers(self, older_than: float) -> Leftovers:
        return self._inner.remove_leftovers(older_than)
