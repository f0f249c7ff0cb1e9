"""Uploading one node's backup files to storage, writing the manifest (node/manifest.py) last.

An upload sends each file under the node's prefix, skipping files already stored with the
same size and SHA-256, and writes the manifest last: a manifest in storage means every file
it lists was stored completely.

A later upload under the same prefix trusts an earlier manifest entry's SHA-256 for a file
whose identity (mtime in ns, inode, device) and size are unchanged and whose stored object
still has that size, and reads neither copy: SSTables are immutable and `backups/` entries
are hard links, so the incremental files re-sent every hour are not hashed again. Entries
from manifests without identity fields are hashed once more and get identity from then on.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TypeGuard

from cassy_scheduler.node.datadir import sstable_key
from cassy_scheduler.node.manifest import BackupIdentity, Manifest, ManifestEntry, find_manifests
from cassy_scheduler.node.progress import Progress, Tally
from cassy_scheduler.storage.base import ObjectInfo, Storage
from cassy_scheduler.storage.errors import (
    LocalFileNotFoundError,
    ObjectNotFoundError,
    WriteCancelledError,
)
from cassy_scheduler.storage.keys import join_key, validate_prefix
from cassy_scheduler.storage.layout import MANIFEST_DIRECTORY, manifest_key

_log = logging.getLogger(__name__)

DEFAULT_WORKERS = 4


class TransferError(Exception):
    """An upload or manifest problem; the message names the file or key and what to do."""


class SourceFileMissingError(TransferError):
    """A file listed for upload no longer exists on the node."""


class UploadCancelledError(TransferError):
    """The caller asked to stop (a server out of shutdown grace); no manifest was written."""


@dataclass(frozen=True)
class LocalFile:
    """A file on the node and the key it gets below the upload prefix."""

    path: Path
    relative_key: str


@dataclass(frozen=True)
class UploadResult:
    """What an upload did: the manifest it wrote and how much it sent versus skipped."""

    manifest_key: str
    manifest: Manifest
    files_sent: int
    files_skipped: int
    bytes_sent: int
    bytes_skipped: int
    files_copied: int = 0  # stored again from an earlier upload's object, not sent
    bytes_copied: int = 0


class _How(Enum):
    SENT = "sent"
    SKIPPED = "skipped"  # already stored under its key
    COPIED = "copied"  # stored from an earlier upload's identical object


@dataclass(frozen=True)
class _FileOutcome:
    entry: ManifestEntry
    how: _How


def upload_files(
    storage: Storage,
    prefix: str,
    files: Sequence[LocalFile],
    identity: BackupIdentity,
    *,
    workers: int = DEFAULT_WORKERS,
    cancelled: Callable[[], bool] = lambda: False,
    earlier: Sequence[Manifest] = (),
    progress: Progress | None = None,
) -> UploadResult:
    """Store `files` under `prefix`, then the manifest; return what was sent and skipped.

    `prefix` is normally `storage.layout.backup_prefix(...)` for `identity`. A file is skipped
    when an object with its key, size and SHA-256 already exists. The manifests already under
    `prefix` are read first (the newest entry for a key wins; an unreadable one is ignored):
    a file whose size, mtime, inode and device match its entry there, and whose stored object
    still exists with that size, is skipped with the entry's SHA-256 without reading either
    copy. Every other file is hashed and compared with the stored object's hash as before.
    A stored object corrupted in place with its size kept is therefore not noticed here: that
    is what `verify` is for (it checks every stored object's size and SHA-256 against the
    manifests). At most `workers` files are in flight at once, each through one fixed-size
    buffer, so memory stays bounded. Storage faults raise the storage package's errors;
    nothing here leaves a manifest behind on failure. `cancelled` is polled before each file.

    `earlier` are other uploads of the same node (the previous snapshot and its
    incrementals): a file that one of them stored already, the same SSTable file by name,
    size and SHA-256 (or, unread, by its unchanged local identity), is stored by
    `storage.copy` (a hard link on a file system) instead of being sent again. Files are
    written without waiting for the disk, and all of them are made durable at once before
    the manifest is written. `progress` hears of every file done.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    validate_prefix(prefix)
    jobs = _plan(prefix, files)
    known = _known_entries(storage, prefix) if jobs else {}
    reusable = _reusable_entries(earlier, prefix, storage.sealed_with) if jobs else {}
    tally = Tally(progress)

    def upload(job: _Job) -> _FileOutcome:
        if cancelled():
            raise UploadCancelledError(f"upload under {prefix!r} stopped before it finished")
        key, relative, _ = job
        name = sstable_key(relative)
        earlier_entry = None if name is None else reusable.get(name)
        outcome = _upload_one(storage, *job, known.get(key), earlier_entry, cancelled)
        tally.add(outcome.entry.size)
        return outcome

    outcomes = list(_run(jobs, upload, workers))
    # Every key, skipped ones too: an earlier attempt that failed may have left them written
    # but never flushed (a clean file's fsync costs next to nothing).
    storage.sync([o.entry.key for o in outcomes])
    entries = tuple(sorted((o.entry for o in outcomes), key=lambda e: e.path))
    manifest = Manifest(identity=identity, prefix=prefix, files=entries, key_id=storage.sealed_with)
    key = manifest_key(prefix, identity.backup_type, identity.created_at_ms)
    storage.put_bytes(key, manifest.to_json().encode())
    sizes = {how: [o.entry.size for o in outcomes if o.how is how] for how in _How}
    result = UploadResult(
        manifest_key=key,
        manifest=manifest,
        files_sent=len(sizes[_How.SENT]),
        files_skipped=len(sizes[_How.SKIPPED]),
        bytes_sent=sum(sizes[_How.SENT]),
        bytes_skipped=sum(sizes[_How.SKIPPED]),
        files_copied=len(sizes[_How.COPIED]),
        bytes_copied=sum(sizes[_How.COPIED]),
    )
    _log.info(
        "upload complete prefix=%s manifest=%s files_sent=%d files_skipped=%d "
        "files_copied=%d bytes_sent=%d bytes_skipped=%d bytes_copied=%d",
        prefix,
        key,
        result.files_sent,
        result.files_skipped,
        result.files_copied,
        result.bytes_sent,
        result.bytes_skipped,
        result.bytes_copied,
    )
    return result


def _known_entries(storage: Storage, prefix: str) -> dict[str, ManifestEntry]:
    """Key -> the newest entry for it among the readable manifests under `prefix` whose
    objects are sealed as new ones would be (with the current key, or not at all)."""
    return {
        entry.key: entry
        for manifest in find_manifests(storage, prefix, skip_unreadable=True)
        if manifest.key_id == storage.sealed_with
        for entry in manifest.files
    }


def _reusable_entries(
    earlier: Sequence[Manifest], prefix: str, sealed_with: str | None
) -> dict[str, ManifestEntry]:
    """SSTable file name -> the newest entry for it among other uploads' manifests sealed
    with `sealed_with` (a copy keeps the seal, so one made under an earlier key is not used)."""
    newest_last = sorted(earlier, key=lambda m: m.identity.created_at_ms)
    return {
        name: entry
        for manifest in newest_last
        if manifest.prefix != prefix and manifest.key_id == sealed_with
        for entry in manifest.files
        if (name := sstable_key(entry.path)) is not None
    }


_Job = tuple[str, str, LocalFile]  # (key, relative key, file)


def _plan(prefix: str, files: Iterable[LocalFile]) -> list[_Job]:
    """Check every key before sending anything, so a bad listing fails fast."""
    jobs: list[_Job] = []
    seen: dict[str, Path] = {}
    for local in files:
        relative = local.relative_key
        if relative.split("/", 1)[0] == MANIFEST_DIRECTORY:
            raise TransferError(
                f"file {str(local.path)!r} would be stored as {relative!r}, inside the "
                f"reserved {MANIFEST_DIRECTORY!r} directory: give it another key"
            )
        if relative in seen:
            raise TransferError(
                f"files {str(seen[relative])!r} and {str(local.path)!r} both map to key "
                f"{relative!r}: each file needs its own key"
            )
        seen[relative] = local.path
        jobs.append((join_key(prefix, relative), relative, local))
    return jobs


def _upload_one(  # noqa: PLR0917 (one file's facts)
    storage: Storage,
    key: str,
    relative: str,
    local: LocalFile,
    known: ManifestEntry | None,
    reusable: ManifestEntry | None,
    cancelled: Callable[[], bool],
) -> _FileOutcome:
    try:
        status = local.path.stat()
        size = status.st_size
        # Taken before any read: a file changed while being read gets a newer mtime than this.
        identity = {
            "mtime_ns": status.st_mtime_ns,
            "inode": status.st_ino,
            "device": status.st_dev,
        }
        existing = storage.stat(key)
        local_sha256: str | None = None
        if existing is not None and existing.size == size:
            if (
                known is not None
                and _same_object(known, existing.etag)
                and _same_local_file(known, size, identity)
            ):
                _log.debug("unchanged since its manifest, skipped key=%s size=%d", key, size)
                # The manifest's ETag: where it had none, none is claimed now either.
                entry = ManifestEntry(
                    relative, key, size, known.sha256, **identity, etag=known.etag
                )
                return _FileOutcome(entry, _How.SKIPPED)
            local_sha256 = _sha256_of(local.path)
            if _stored_sha256(storage, existing, known) == local_sha256 and _sealed_as_now(
                storage, existing, known
            ):
                _log.debug("unchanged, skipped key=%s size=%d", key, size)
                entry = ManifestEntry(
                    relative, key, size, local_sha256, **identity, etag=existing.etag
                )
                return _FileOutcome(entry, _How.SKIPPED)
        if reusable is not None and reusable.size == size:
            copied = _copy_earlier(storage, key, local, reusable, identity, local_sha256)
            if copied is not None:
                sha256, etag = copied
                entry = ManifestEntry(relative, key, size, sha256, **identity, etag=etag)
                return _FileOutcome(entry, _How.COPIED)
        stored = storage.put_file(key, local.path, sync=False, cancelled=cancelled)
    except (FileNotFoundError, LocalFileNotFoundError) as exc:
        raise SourceFileMissingError(
            f"file {str(local.path)!r} (for key {key!r}) vanished before it was uploaded: "
            "it was removed after being listed; run the backup again"
        ) from exc
    except WriteCancelledError as exc:
        raise UploadCancelledError(f"upload of {key!r} stopped before it finished") from exc
    # Backends hash while uploading; one that could not is asked afterwards.
    stored_sha256 = stored.sha256 or storage.sha256(key)
    if stored.size != size:  # it changed while being sent: let the next upload hash it
        identity = {}
    entry = ManifestEntry(relative, key, stored.size, stored_sha256, **identity, etag=stored.etag)
    return _FileOutcome(entry, _How.SENT)


def _same_object(known: ManifestEntry, etag: str | None) -> bool:
    """Whether the stored object is still the one `known` describes: the same ETag where
    the store has ETags (a file system has none: its objects are only ever replaced by a
    rename, and the size and identity checks stand)."""
    return etag is None or known.etag is None or known.etag == etag


def _stored_sha256(storage: Storage, existing: ObjectInfo, known: ManifestEntry | None) -> str:
    """The stored object's SHA-256 without reading it where possible: its metadata's, else
    the manifest's for this very object (same ETag), else read from the content."""
    if existing.sha256 is not None:
        return existing.sha256
    if _describes(known, existing):
        return known.sha256
    return storage.sha256(existing.key)


def _describes(known: ManifestEntry | None, existing: ObjectInfo) -> TypeGuard[ManifestEntry]:
    """Whether `known` describes this very object: the same ETag, not merely no ETag."""
    return known is not None and known.etag is not None and known.etag == existing.etag


def _sealed_as_now(storage: Storage, existing: ObjectInfo, known: ManifestEntry | None) -> bool:
    """Whether the stored object is sealed as a new one would be: a skip keeps its seal, and
    after a key rotation what the old key sealed is sent again (docs/encryption.md). An entry
    of a current manifest for this very object (same ETag) answers; else its header does."""
    if storage.sealed_with is None or _describes(known, existing):
        return True
    return storage.sealed_by(existing.key) == storage.sealed_with


def _copy_earlier(  # noqa: PLR0917 (one file's facts)
    storage: Storage,
    key: str,
    local: LocalFile,
    reusable: ManifestEntry,
    identity: dict[str, int],
    local_sha256: str | None,
) -> tuple[str, str | None] | None:
    """Store `key` from the earlier object when it holds this very file; its SHA-256 and
    the copy's ETag, or None when it does not or the storage cannot copy (the file is then
    sent)."""
    if _same_local_file(reusable, reusable.size, identity):
        sha256 = reusable.sha256  # the same inode, unchanged: not read again
    else:
        sha256 = local_sha256 or _sha256_of(local.path)
        if sha256 != reusable.sha256:
            return None
    if reusable.etag is not None:  # an object store: the source must be the object described
        source = storage.stat(reusable.key)
        if source is None or source.etag != reusable.etag:
            return None  # written again or removed since that manifest: send the file
    try:
        copied = storage.copy(reusable.key, key)
    except ObjectNotFoundError:  # pruned since: send it
        return None
    if copied is None or copied.size != reusable.size or copied.sha256 not in (None, sha256):
        return None
    _log.debug("stored from an earlier upload key=%s from=%s", key, reusable.key)
    return sha256, copied.etag


def _same_local_file(known: ManifestEntry, size: int, identity: dict[str, int]) -> bool:
    """Whether `known` was made from this very file, unchanged (size, mtime, inode, device)."""
    return known.size == size and all(
        getattr(known, name) == value for name, value in identity.items()
    )


def _sha256_of(path: Path) -> str:
    with open(path, "rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def _run(
    jobs: Sequence[_Job], work: Callable[[_Job], _FileOutcome], workers: int
) -> Iterator[_FileOutcome]:
    """Run `work` over `jobs` with at most `workers` in flight; the first failure stops all."""
    if workers == 1 or len(jobs) <= 1:
        yield from map(work, jobs)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload")
    pending: set[Future[_FileOutcome]] = set()
    try:
        for job in jobs:
            if len(pending) >= workers * 2:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
            pending.add(pool.submit(work, job))
        done, pending = wait(pending)
        yield from (future.result() for future in done)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
