"""Storage in an object store (S3, Azure Blob, Google Cloud Storage) through obstore.

One backend for the three: obstore (Rust's object_store) signs, retries with backoff and
jitter, refreshes credentials and sends the parts of a multipart upload concurrently. What
this module adds is the backup's guarantees:

- Each file is read once: its SHA-256 is computed from the very chunks that are sent. A file
  that fits one part goes as one PUT whose metadata carries the SHA-256 (`sha256`); a larger
  one goes as a multipart upload, whose SHA-256 is known only once the last part is sent, so
  it lives in the manifest, bound to the object by its ETag (ObjectInfo.etag).
- A multipart upload that fails, or is cancelled between parts, is aborted: no parts are
  left behind, billed and invisible. (A process killed outright cannot abort; the bucket's
  lifecycle rule for incomplete uploads is the backstop, docs/storage.md.)
- Objects become visible only when complete (a PUT, or a completed multipart upload), so
  there is nothing to sync and no leftover to remove after a crash.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import NotFoundError

from cassy_scheduler.storage.bandwidth import BandwidthLimit, Unlimited
from cassy_scheduler.storage.base import ObjectInfo, Storage
from cassy_scheduler.storage.errors import (
    ObjectNotFoundError,
    StorageError,
    WriteCancelledError,
)
from cassy_scheduler.storage.keys import validate_key, validate_prefix
from cassy_scheduler.storage.options import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE
from cassy_scheduler.storage.streams import Reader, open_source

if TYPE_CHECKING:
    from obstore.store import ObjectStore

_log = logging.getLogger(__name__)

SHA256_METADATA = "sha256"
"""The user-metadata key that carries a single-PUT object's SHA-256 (x-amz-meta-sha256,
x-ms-meta-sha256, x-goog-meta-sha256)."""

_READ_CHUNK = 1 << 20
_RANGE_SIZE = 8 << 20
"""Bytes per ranged GET of a large object: `concurrency` of them are in flight at once."""
_MAX_PARTS = 9_000
"""Parts per multipart upload at most: S3 and GCS take 10,000; a margin for a file that grows."""

_DELETE_BATCH = 1000
"""Keys per delete_many call to obstore: S3's limit per DeleteObjects request."""


class ObjectStorage(Storage):
    """Objects under one bucket (or container) and prefix, the prefix already in `store`."""

    def __init__(
        self,
        store: ObjectStore,
        uri: str,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        storage_class: str | None = None,
        bandwidth: BandwidthLimit | Unlimited | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self._store = store
        self._uri = uri
        self._part_size = part_size
        self._concurrency = concurrency
        self._class: dict[str, str] = {"Storage-Class": storage_class} if storage_class else {}
        self._bandwidth = bandwidth or Unlimited()
        self._secrets = tuple(secret for secret in secrets if secret)

    @property
    def uri(self) -> str:
        return self._uri

    def put_file(
        self,
        key: str,
        local_path: Path,
        *,
        sync: bool = True,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> ObjectInfo:
        validate_key(key)
        source = open_source(key, local_path)
        with source:
            size = os.fstat(source.fileno()).st_size
            if size <= self._part_size:  # one PUT, its SHA-256 in the metadata
                return self.put_bytes(key, source.read())
            chunks = iter(lambda: source.read(_READ_CHUNK), b"")
            return self._put_parts(key, chunks, size, cancelled)

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        validate_key(key)
        digest = hashlib.sha256(data).hexdigest()
        self._bandwidth.take(len(data))
        with self._errors("storing", key):
            result = obstore.put(
                self._store,
                key,
                data,
                attributes={**self._class, SHA256_METADATA: digest},
                use_multipart=False,
            )
        return ObjectInfo(key=key, size=len(data), sha256=digest, etag=_etag(result["e_tag"]))

    def put_stream(
        self, key: str, source: Reader, *, sync: bool = True, size: int | None = None
    ) -> ObjectInfo:
        """Up to part_size in one PUT; longer, a multipart upload fed as the stream is read
        (parts planned by `size` when given, else part_size: up to 9,000 parts)."""
        chunks = iter(lambda: _read_up_to(source, _READ_CHUNK), b"")
        return self.put_chunks(key, chunks, sync=sync, size=size)

    def put_chunks(
        self, key: str, chunks: Iterable[bytes], *, sync: bool = True, size: int | None = None
    ) -> ObjectInfo:
        """The pieces as they come: up to part_size in all, one PUT; more, a multipart upload
        fed with them (no copy)."""
        validate_key(key)
        source = iter(chunks)
        first: list[bytes] = []
        held = 0
        for chunk in source:
            first.append(chunk)
            held += len(chunk)
            if held > self._part_size:
                break
        if held <= self._part_size:
            return self.put_bytes(key, b"".join(first))
        return self._put_parts(key, itertools.chain(first, source), size or 0, lambda: False)

    def _put_parts(
        self, key: str, chunks: Iterator[bytes], total: int, cancelled: Callable[[], bool]
    ) -> ObjectInfo:
        """A multipart upload fed chunk by chunk, hashed on the way; any failure, or a cancel
        between chunks, leaves the writer's context with an error, which aborts the upload."""
        digest = hashlib.sha256()
        size = 0
        # Object stores take at most 10,000 parts: a huge file gets larger ones.
        part_size = max(self._part_size, -(-total // _MAX_PARTS))
        with self._errors("storing", key):
            writer = obstore.open_writer(
                self._store,
                key,
                attributes=self._class or None,
                buffer_size=part_size,
                max_concurrency=self._concurrency,
            )
            with writer:
                # A new buffer per chunk: the writer may keep a reference to what it is given
                # until its part is sent, so a reused buffer would be overwritten under it.
                for chunk in chunks:
                    if cancelled():
                        raise WriteCancelledError(
                            f"storing {key!r} was cancelled after {size} bytes: its "
                            "multipart upload is aborted"
                        )
                    digest.update(chunk)
                    self._bandwidth.take(len(chunk))
                    writer.write(chunk)
                    size += len(chunk)
        info = self.stat(key)  # the ETag that binds the manifest's SHA-256 to this object
        if info is None or info.size != size:
            raise StorageError(
                f"storing {key!r} in {self.uri} completed, but the object is "
                f"{'missing' if info is None else f'{info.size} bytes'}, not {size} bytes"
            )
        return ObjectInfo(key=key, size=size, sha256=digest.hexdigest(), etag=info.etag)

    def get_file(self, key: str, local_path: Path, *, sync: bool = True) -> ObjectInfo:
        validate_key(key)
        info = self._present(key)
        digest = hashlib.sha256()
        size = 0
        try:
            out = open(local_path, "wb", buffering=0)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise StorageError(
                f"{exc.strerror or exc}: cannot write {str(local_path)!r} to fetch {key!r} into"
            ) from exc
        try:
            with out:
                for chunk in self._pieces(key, info.size):
                    digest.update(chunk)
                    _write_all(out, chunk)
                    size += len(chunk)
                if sync:
                    os.fsync(out.fileno())
        except BaseException as exc:
            with suppress(FileNotFoundError):
                local_path.unlink()
            if isinstance(exc, OSError):
                raise StorageError(
                    f"{exc.strerror or exc}: writing {key!r} to {str(local_path)!r} failed"
                ) from exc
            raise
        return ObjectInfo(key=key, size=size, sha256=digest.hexdigest(), etag=info.etag)

    def _pieces(self, key: str, size: int) -> Iterator[memoryview]:
        """The object's bytes in order: one streamed GET for a small object, ranged GETs
        `concurrency` at a time for a large one (memory: concurrency times 8 MiB)."""
        if size <= 2 * _RANGE_SIZE:
            yield from self._streamed(key)
            return
        batch = _RANGE_SIZE * self._concurrency
        for offset in range(0, size, batch):
            starts = list(range(offset, min(offset + batch, size), _RANGE_SIZE))
            ends = [min(start + _RANGE_SIZE, size) for start in starts]
            self._bandwidth.take(ends[-1] - starts[0])  # before asking: the rate holds
            with self._errors("reading", key):
                parts = asyncio.run(self._ranges(key, starts, ends))
            for part in parts:
                yield memoryview(part)  # no copy: the fetched buffer itself

    async def _ranges(self, key: str, starts: list[int], ends: list[int]) -> list[Any]:
        """One GET per range, all at once (obstore's get_ranges would merge adjacent ranges
        into one request)."""
        return await asyncio.gather(
            *(
                obstore.get_range_async(self._store, key, start=start, end=end)
                for start, end in zip(starts, ends, strict=True)
            )
        )

    def stat(self, key: str) -> ObjectInfo | None:
        validate_key(key)
        try:
            with self._errors("looking up", key):
                result = obstore.get(self._store, key, options={"head": True})
        except ObjectNotFoundError:
            return None
        meta = result.meta
        attributes = result.attributes
        stored = attributes.get(SHA256_METADATA)
        return ObjectInfo(
            key=key,
            size=meta["size"],
            sha256=stored if isinstance(stored, str) and _is_sha256(stored) else None,
            etag=_etag(meta["e_tag"]),
        )

    def sha256(self, key: str) -> str:
        """Of the content, read now (verify's question), not the metadata's claim."""
        digest = hashlib.sha256()
        for chunk in self.chunks(key):
            digest.update(chunk)
        return digest.hexdigest()

    def _present(self, key: str) -> ObjectInfo:
        """The object's facts, for a read that needs it to exist."""
        info = self.stat(key)
        if info is None:
            raise ObjectNotFoundError(f"object {key!r} not found in {self.uri}")
        return info

    def head(self, key: str, size: int) -> bytes:
        info = self._present(key)
        end = min(size, info.size)
        if end == 0:
            return b""
        with self._errors("reading", key):
            data = bytes(obstore.get_range(self._store, key, start=0, end=end))
        self._bandwidth.take(len(data))
        return data

    def chunks(self, key: str) -> Iterator[bytes]:
        """A large object in ranges, so no request outlasts the client's timeout."""
        info = self._present(key)
        return map(bytes, self._pieces(key, info.size))

    def _streamed(self, key: str) -> Iterator[memoryview]:
        """A small object in one GET, in the pieces it arrives in."""
        with self._errors("reading", key):
            for chunk in obstore.get(self._store, key).stream(min_chunk_size=_READ_CHUNK):
                self._bandwidth.take(len(chunk))
                yield memoryview(chunk)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Object stores list by whole path segments: the listing is of the prefix's
        directory, filtered to the prefix."""
        validate_prefix(prefix)
        directory = prefix.rpartition("/")[0]
        with self._errors("listing", prefix or "(all)"):
            found = [
                ObjectInfo(
                    key=meta["path"],
                    size=meta["size"],
                    etag=_etag(meta["e_tag"]),
                    modified=meta["last_modified"].timestamp(),
                )
                for batch in obstore.list(self._store, prefix=directory or None)
                for meta in batch
                if meta["path"].startswith(prefix)
            ]
        return iter(sorted(found, key=lambda info: info.key))

    def delete(self, key: str) -> None:
        validate_key(key)
        with suppress(ObjectNotFoundError), self._errors("deleting", key):
            obstore.delete(self._store, key)

    def delete_many(self, keys: Sequence[str]) -> None:
        """obstore batches the keys: S3's DeleteObjects takes a thousand per request, other
        providers get concurrent single deletes. A batch that fails (a provider may report
        an absent key) is retried key by key, where absence is no error."""
        wanted = [validate_key(key) for key in keys]
        for start in range(0, len(wanted), _DELETE_BATCH):
            batch = wanted[start : start + _DELETE_BATCH]
            try:
                obstore.delete(self._store, batch)
            except Exception:  # each key again, with its own error
                for key in batch:
                    self.delete(key)

    def get_bytes(self, key: str) -> bytes:
        validate_key(key)
        with self._errors("reading", key):
            data = bytes(obstore.get(self._store, key).bytes())
        self._bandwidth.take(len(data))
        return data

    def copy(self, source_key: str, target_key: str) -> ObjectInfo | None:
        """A server-side copy (metadata kept): no byte crosses the wire. A provider that
        refuses it (S3 copies at most 5 GB in one request) gets the file uploaded instead, as
        does a store with a storage class (a copy request cannot carry one: S3 would store the
        copy as STANDARD)."""
        validate_key(source_key)
        validate_key(target_key)
        if self._class:
            return None
        try:
            obstore.copy(self._store, source_key, target_key)
        except (NotFoundError, FileNotFoundError) as exc:
            raise ObjectNotFoundError(f"object {source_key!r} not found in {self.uri}") from exc
        except Exception as exc:  # any refusal: the caller uploads instead
            _log.debug("no server-side copy key=%s reason=%s", target_key, self._reason(exc))
            return None
        return self.stat(target_key)

    @contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """The provider's errors as the storage package's, with its reason kept short and
        free of any credential. Not found on a read means the object is absent; on a write
        it means the bucket is (the reason says so)."""
        try:
            yield
        except StorageError:
            raise
        except (NotFoundError, FileNotFoundError) as exc:
            if action in ("storing", "copying"):
                raise StorageError(
                    f"{action} {key!r} in {self.uri} failed: {self._reason(exc)}"
                ) from None
            raise ObjectNotFoundError(
                f"object {key!r} not found in {self.uri} ({self._reason(exc)})"
            ) from None
        except Exception as exc:
            raise StorageError(
                f"{action} {key!r} in {self.uri} failed: {self._reason(exc)}"
            ) from None

    def _reason(self, exc: BaseException) -> str:
        return scrub(provider_reason(exc), self._secrets)


_XML_FIELD = re.compile(r"<(Code|Message)>([^<]*)</\1>")
_JSON_MESSAGE = re.compile(r'"message"\s*:\s*"([^"]*)"')
_STATUS = re.compile(r"status code: (\d{3} [A-Za-z ]+?)(?::|$)", re.MULTILINE)


def provider_reason(exc: BaseException) -> str:
    """What the provider said, in one line: its status, error code and message when its
    reply carried them (S3's and Azure's XML, GCS's JSON), else the first line of the error."""
    text = str(exc).split("\n\nDebug source:", 1)[0]
    fields = dict(_XML_FIELD.findall(text))
    status = _STATUS.search(text)
    said = [status.group(1).strip()] if status else []
    if fields:
        said += [value for value in (fields.get("Code"), fields.get("Message")) if value]
    elif (message := _JSON_MESSAGE.search(text)) is not None:
        said.append(message.group(1))
    if said:
        return ": ".join(said)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:300]


def scrub(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret replaced by '***' (providers may echo a SAS or a key id)."""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _etag(value: str | None) -> str | None:
    """An ETag as one form: some stores quote it in one answer and not in another (GCS's
    HEAD and LIST), and a weak one is marked W/."""
    if value is None:
        return None
    return value.removeprefix("W/").strip('"')


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _write_all(target: Any, chunk: memoryview) -> None:
    while chunk:
        written = target.write(chunk)
        chunk = chunk[written:]


def _read_up_to(source: Reader, limit: int) -> bytes:
    """At most `limit` bytes: fewer only at the stream's end."""
    buffer = bytearray(limit)
    view = memoryview(buffer)
    filled = 0
    while filled < limit:
        count = source.readinto(view[filled:])  # type: ignore[arg-type]
        if not count:
            break
        filled += count
    return bytes(view[:filled])
