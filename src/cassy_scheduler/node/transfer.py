"""Uploading one node's backup files to storage, and the manifest that proves it finished.

An upload sends each file under the node's prefix, skipping files already stored with the
same size and SHA-256, and writes the manifest last: a manifest in storage means every file
it lists was stored completely. Restores and verification read manifests, not listings.

Each manifest entry also records the local file's identity when it was read (mtime in ns,
inode, device). A later upload under the same prefix trusts an earlier entry's SHA-256 for a
file whose identity and size are unchanged and whose stored object still has that size, and
reads neither copy: SSTables are immutable and `backups/` entries are hard links, so the
incremental files re-sent every hour are not hashed again. Older manifests without identity
fields are read as before; their files are hashed once more and get identity from then on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage.base import Storage
from cassy_scheduler.storage.errors import LocalFileNotFoundError, ObjectNotFoundError
from cassy_scheduler.storage.keys import join_key, validate_prefix
from cassy_scheduler.storage.layout import MANIFEST_DIRECTORY, manifest_key, manifest_prefix

_log = logging.getLogger(__name__)

MANIFEST_FORMAT_VERSION = 1
DEFAULT_WORKERS = 4


class TransferError(Exception):
    """An upload or manifest problem; the message names the file or key and what to do."""


class SourceFileMissingError(TransferError):
    """A file listed for upload no longer exists on the node."""


class UploadCancelledError(TransferError):
    """The caller asked to stop (a server out of shutdown grace); no manifest was written."""


class ManifestError(TransferError):
    """A manifest is missing, unreadable or of a format this version does not know."""


@dataclass(frozen=True)
class LocalFile:
    """A file on the node and the key it gets below the upload prefix."""

    path: Path
    relative_key: str


@dataclass(frozen=True)
class BackupIdentity:
    """Which backup an upload belongs to: the history row's key, seen from one node."""

    cluster_id: str
    snapshot_id: str
    node_ip: str
    backup_type: BackupType
    created_at_ms: int


@dataclass(frozen=True)
class ManifestEntry:
    """One stored file: its path below the prefix, its full key, its size and SHA-256.

    `mtime_ns`, `inode` and `device` describe the local file the entry was made from (None in
    manifests written before they were recorded); only uploads use them, to skip re-hashing.
    """

    path: str
    key: str
    size: int
    sha256: str
    mtime_ns: int | None = None
    inode: int | None = None
    device: int | None = None

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "path": self.path,
            "key": self.key,
            "size": self.size,
            "sha256": self.sha256,
        }
        for name in _IDENTITY_FIELDS:
            value = getattr(self, name)
            if value is not None:
                document[name] = value
        return document


_IDENTITY_FIELDS = ("mtime_ns", "inode", "device")


@dataclass(frozen=True)
class Manifest:
    """The record of one completed upload of one node's files for one backup."""

    identity: BackupIdentity
    prefix: str
    files: tuple[ManifestEntry, ...]
    format_version: int = MANIFEST_FORMAT_VERSION

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.files)

    def to_json(self) -> str:
        document = {
            "format_version": self.format_version,
            "cluster_id": self.identity.cluster_id,
            "snapshot_id": self.identity.snapshot_id,
            "node_ip": self.identity.node_ip,
            "backup_type": int(self.identity.backup_type),
            "created_at": self.identity.created_at_ms,
            "prefix": self.prefix,
            "files": [e.to_document() for e in self.files],
        }
        return json.dumps(document, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "manifest") -> Manifest:
        """Parse and check a manifest; `source` names it in error messages."""
        try:
            document = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{source} is not valid JSON ({exc}): it may be corrupt") from exc
        fields = _Fields(document, source)
        version = fields.integer("format_version")
        if version != MANIFEST_FORMAT_VERSION:
            raise ManifestError(
                f"{source} has format version {version}, this version reads only "
                f"{MANIFEST_FORMAT_VERSION}: use a matching cassy-scheduler"
            )
        code = fields.integer("backup_type")
        try:
            backup_type = BackupType(code)
        except ValueError as exc:
            raise ManifestError(f"{source} has unknown backup_type {code}") from exc
        identity = BackupIdentity(
            cluster_id=fields.text("cluster_id"),
            snapshot_id=fields.text("snapshot_id"),
            node_ip=fields.text("node_ip"),
            backup_type=backup_type,
            created_at_ms=fields.integer("created_at"),
        )
        raw_files = fields.value("files", list)
        entries = []
        for index, raw in enumerate(raw_files):
            entry = _Fields(raw, f"{source} files[{index}]")
            entries.append(
                ManifestEntry(
                    path=entry.text("path"),
                    key=entry.text("key"),
                    size=entry.integer("size"),
                    sha256=entry.text("sha256"),
                    mtime_ns=entry.optional_integer("mtime_ns"),
                    inode=entry.optional_integer("inode"),
                    device=entry.optional_integer("device"),
                )
            )
        return cls(
            identity=identity,
            prefix=fields.text("prefix"),
            files=tuple(entries),
            format_version=version,
        )


_KIND_NAMES: dict[type[Any], str] = {str: "a string", int: "an integer", list: "a list"}


class _Fields:
    """Typed reads of a JSON object's members, with errors that name the member."""

    def __init__(self, document: object, source: str) -> None:
        if not isinstance(document, dict):
            raise ManifestError(f"{source} must be a JSON object")
        self._document: dict[str, Any] = document
        self._source = source

    def value(self, name: str, kind: type[Any]) -> Any:
        if name not in self._document:
            raise ManifestError(f"{self._source} lacks {name!r}")
        found = self._document[name]
        if not isinstance(found, kind) or (kind is int and isinstance(found, bool)):
            wanted = _KIND_NAMES.get(kind, kind.__name__)
            raise ManifestError(f"{self._source}: {name!r} must be {wanted}, got {found!r}")
        return found

    def text(self, name: str) -> str:
        result: str = self.value(name, str)
        return result

    def integer(self, name: str) -> int:
        result: int = self.value(name, int)
        return result

    def optional_integer(self, name: str) -> int | None:
        return self.integer(name) if name in self._document else None


@dataclass(frozen=True)
class UploadResult:
    """What an upload did: the manifest it wrote and how much it sent versus skipped."""

    manifest_key: str
    manifest: Manifest
    files_sent: int
    files_skipped: int
    bytes_sent: int
    bytes_skipped: int


@dataclass(frozen=True)
class _FileOutcome:
    entry: ManifestEntry
    sent: bool


def upload_files(
    storage: Storage,
    prefix: str,
    files: Sequence[LocalFile],
    identity: BackupIdentity,
    *,
    workers: int = DEFAULT_WORKERS,
    cancelled: Callable[[], bool] = lambda: False,
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
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    validate_prefix(prefix)
    jobs = _plan(prefix, files)
    known = _known_entries(storage, prefix) if jobs else {}

    def upload(job: _Job) -> _FileOutcome:
        if cancelled():
            raise UploadCancelledError(f"upload under {prefix!r} stopped before it finished")
        return _upload_one(storage, *job, known.get(job[0]))

    outcomes = list(_run(jobs, upload, workers))
    entries = tuple(sorted((o.entry for o in outcomes), key=lambda e: e.path))
    manifest = Manifest(identity=identity, prefix=prefix, files=entries)
    key = manifest_key(prefix, identity.backup_type, identity.created_at_ms)
    storage.put_bytes(key, manifest.to_json().encode())
    sent = [o.entry.size for o in outcomes if o.sent]
    skipped = [o.entry.size for o in outcomes if not o.sent]
    result = UploadResult(
        manifest_key=key,
        manifest=manifest,
        files_sent=len(sent),
        files_skipped=len(skipped),
        bytes_sent=sum(sent),
        bytes_skipped=sum(skipped),
    )
    _log.info(
        "upload complete prefix=%s manifest=%s files_sent=%d files_skipped=%d "
        "bytes_sent=%d bytes_skipped=%d",
        prefix,
        key,
        result.files_sent,
        result.files_skipped,
        result.bytes_sent,
        result.bytes_skipped,
    )
    return result


def read_manifest(storage: Storage, key: str) -> Manifest:
    """Load the manifest stored under `key`."""
    try:
        data = storage.get_bytes(key)
    except ObjectNotFoundError as exc:
        raise ManifestError(
            f"manifest {key!r} not found in {storage.uri}: the upload never completed "
            "or the key is wrong"
        ) from exc
    return Manifest.from_json(data, source=f"manifest {key!r}")


def find_manifests(
    storage: Storage, prefix: str, *, skip_unreadable: bool = False
) -> list[Manifest]:
    """Every completed upload under a node prefix, oldest first.

    Restores and verification need every manifest and fail on a bad one; an upload only
    looks for hashes it may reuse, so it passes `skip_unreadable` and logs what it skipped.
    """
    manifests = []
    for info in storage.list(manifest_prefix(prefix)):
        try:
            manifests.append(read_manifest(storage, info.key))
        except ManifestError as exc:
            if not skip_unreadable:
                raise
            _log.warning("ignoring unreadable manifest while uploading: %s", exc)
    return sorted(manifests, key=lambda m: m.identity.created_at_ms)


def _known_entries(storage: Storage, prefix: str) -> dict[str, ManifestEntry]:
    """Key -> the newest entry for it among the readable manifests under `prefix`."""
    return {
        entry.key: entry
        for manifest in find_manifests(storage, prefix, skip_unreadable=True)
        for entry in manifest.files
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


def _upload_one(
    storage: Storage, key: str, relative: str, local: LocalFile, known: ManifestEntry | None
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
        if existing is not None and existing.size == size:
            if known is not None and _same_local_file(known, size, identity):
                _log.debug("unchanged since its manifest, skipped key=%s size=%d", key, size)
                entry = ManifestEntry(relative, key, size, known.sha256, **identity)
                return _FileOutcome(entry, sent=False)
            local_sha256 = _sha256_of(local.path)
            if storage.sha256(key) == local_sha256:
                _log.debug("unchanged, skipped key=%s size=%d", key, size)
                entry = ManifestEntry(relative, key, size, local_sha256, **identity)
                return _FileOutcome(entry, sent=False)
        stored = storage.put_file(key, local.path)
    except (FileNotFoundError, LocalFileNotFoundError) as exc:
        raise SourceFileMissingError(
            f"file {str(local.path)!r} (for key {key!r}) vanished before it was uploaded: "
            "it was removed after being listed; run the backup again"
        ) from exc
    # Backends hash while uploading; one that could not is asked afterwards.
    stored_sha256 = stored.sha256 or storage.sha256(key)
    if stored.size != size:  # it changed while being sent: let the next upload hash it
        identity = {}
    entry = ManifestEntry(relative, key, stored.size, stored_sha256, **identity)
    return _FileOutcome(entry, sent=True)


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
