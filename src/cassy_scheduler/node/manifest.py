"""The manifest: the record, written last, that one node's upload for one backup finished.

A manifest in storage means every file it lists was stored completely, with its size and
SHA-256. Restores and verification read manifests, not listings. Each entry also records the
local file's identity when it was read (mtime in ns, inode, device) so that later uploads can
skip re-hashing unchanged files; manifests written before those fields existed still read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage.base import Storage
from cassy_scheduler.storage.envelope import MAGIC, DecryptionError
from cassy_scheduler.storage.errors import ObjectNotFoundError
from cassy_scheduler.storage.layout import manifest_prefix

_log = logging.getLogger(__name__)

MANIFEST_FORMAT_VERSION = 1
CIPHER = "AES-256-GCM"


class ManifestError(Exception):
    """A manifest is missing, unreadable or of a format this version does not know."""


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
    `etag` is the object store's ETag of the object the SHA-256 was computed for: while the
    stored object keeps it, the SHA-256 is known without reading the object back.
    """

    path: str
    key: str
    size: int
    sha256: str
    mtime_ns: int | None = None
    inode: int | None = None
    device: int | None = None
    etag: str | None = None

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
        if self.etag is not None:
            document["etag"] = self.etag
        return document


_IDENTITY_FIELDS = ("mtime_ns", "inode", "device")


@dataclass(frozen=True)
class Manifest:
    """The record of one completed upload of one node's files for one backup."""

    identity: BackupIdentity
    prefix: str
    files: tuple[ManifestEntry, ...]
    format_version: int = MANIFEST_FORMAT_VERSION
    key_id: str | None = None  # the key that sealed its objects (client-side encryption)

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
        if self.key_id is not None:
            document["encryption"] = {"cipher": CIPHER, "key_id": self.key_id}
        return json.dumps(document, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "manifest") -> Manifest:
        """Parse and check a manifest; `source` names it in error messages."""
        raw = text.encode() if isinstance(text, str) else text
        if raw.startswith(MAGIC):
            sealed_by = raw[len(MAGIC) : len(MAGIC) + 16].hex()
            raise ManifestError(
                f"{source} is encrypted (key {sealed_by}): read it with the server's "
                "[storage.client_encryption] keys (--server-config FILE)"
            )
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
                    etag=entry.optional_text("etag"),
                )
            )
        encryption = document.get("encryption")
        key_id = None
        if encryption is not None:
            key_id = _Fields(encryption, f"{source} encryption").text("key_id")
        return cls(
            identity=identity,
            prefix=fields.text("prefix"),
            files=tuple(entries),
            format_version=version,
            key_id=key_id,
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

    def optional_text(self, name: str) -> str | None:
        return self.text(name) if name in self._document else None


def read_manifest(storage: Storage, key: str) -> Manifest:
    """Load the manifest stored under `key`."""
    try:
        data = storage.get_bytes(key)
    except ObjectNotFoundError as exc:
        raise ManifestError(
            f"manifest {key!r} not found in {storage.uri}: the upload never completed "
            "or the key is wrong"
        ) from exc
    except DecryptionError as exc:  # a wrong key, or a manifest altered in storage
        raise ManifestError(str(exc)) from exc
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
