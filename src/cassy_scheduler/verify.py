"""Proof that a backup can be restored: every object its manifests list is in storage, whole.

For each node of a snapshot, every upload manifest under the node's prefix is read and every
file it lists is checked for presence, size and SHA-256, the newest manifest's entry deciding
when several list one key (it describes the object stored now). The node's restore plan is
also built, so a backup that verifies is one the server can restore.

Cassy's API exposes no storage, so this reads the storage directly, as the server does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from cassy_scheduler.node.placement import RestorePlanError, plan_restore
from cassy_scheduler.node.transfer import Manifest, ManifestEntry, ManifestError, find_manifests
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage import Storage, StorageError
from cassy_scheduler.storage.layout import (
    CLUSTER_BACKUP_ROOT,
    NODE_BACKUP_ROOT,
    backup_prefix,
)

log = logging.getLogger(__name__)


class VerifyError(Exception):
    """The check could not run at all (for example, storage cannot be listed)."""


class ProblemKind(Enum):
    """What is wrong with a node's backup."""

    MISSING = "missing"
    WRONG_SIZE = "wrong size"
    WRONG_CHECKSUM = "wrong checksum"
    NO_MANIFEST = "no manifest"
    BAD_MANIFEST = "bad manifest"
    NOT_RESTORABLE = "not restorable"


@dataclass(frozen=True)
class Problem:
    """One thing wrong; `path` is the file's path below the node prefix, when about a file."""

    kind: ProblemKind
    detail: str
    path: str | None = None


@dataclass(frozen=True)
class NodeReport:
    """What was checked for one node, and what was wrong."""

    node_ip: str
    prefix: str
    manifests: int
    files: int
    bytes: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class VerifyReport:
    """The check of one snapshot on every node."""

    cluster_id: str
    snapshot_id: str
    nodes: tuple[NodeReport, ...]

    @property
    def ok(self) -> bool:
        return bool(self.nodes) and all(node.ok for node in self.nodes)


def stored_nodes(
    storage: Storage,
    cluster_id: str,
    snapshot_id: str,
    backup_type: BackupType = BackupType.NODE_SNAPSHOT,
) -> list[str]:
    """Node addresses that have anything stored for the snapshot."""
    root = CLUSTER_BACKUP_ROOT if backup_type is BackupType.CLUSTER_SNAPSHOT else NODE_BACKUP_ROOT
    prefix = f"{root}/{cluster_id}/{snapshot_id}/"
    try:
        return sorted({info.key[len(prefix) :].split("/", 1)[0] for info in storage.list(prefix)})
    except StorageError as exc:
        raise VerifyError(f"cannot list {prefix} in {storage.uri}: {exc}") from exc


def verify_snapshot(
    storage: Storage,
    cluster_id: str,
    snapshot_id: str,
    nodes: Iterable[str] = (),
    *,
    backup_type: BackupType = BackupType.NODE_SNAPSHOT,
) -> VerifyReport:
    """Check the snapshot on `nodes` plus every node with files stored for it."""
    stored = stored_nodes(storage, cluster_id, snapshot_id, backup_type)
    wanted = sorted(set(nodes) | set(stored))
    reports = tuple(
        verify_node(storage, backup_prefix(backup_type, cluster_id, snapshot_id, n), n, snapshot_id)
        for n in wanted
    )
    return VerifyReport(cluster_id, snapshot_id, reports)


def verify_node(storage: Storage, prefix: str, node_ip: str, snapshot_id: str) -> NodeReport:
    """Check every file the node's manifests under `prefix` list."""
    try:
        manifests = find_manifests(storage, prefix)
    except (ManifestError, StorageError) as exc:
        return NodeReport(node_ip, prefix, 0, 0, 0, (Problem(ProblemKind.BAD_MANIFEST, str(exc)),))
    if not manifests:
        problem = Problem(
            ProblemKind.NO_MANIFEST,
            f"no upload manifest under {prefix}: no upload of this node completed",
        )
        return NodeReport(node_ip, prefix, 0, 0, 0, (problem,))
    entries = newest_entries(manifests)
    problems = [p for entry in entries if (p := check_entry(storage, entry)) is not None]
    try:
        plan_restore(manifests, snapshot_id, snapshot_only=False)
    except RestorePlanError as exc:
        problems.append(Problem(ProblemKind.NOT_RESTORABLE, str(exc)))
    report = NodeReport(
        node_ip,
        prefix,
        len(manifests),
        len(entries),
        sum(e.size for e in entries),
        tuple(problems),
    )
    log.info(
        "node verified node=%s prefix=%s manifests=%d files=%d bytes=%d problems=%d",
        node_ip,
        prefix,
        report.manifests,
        report.files,
        report.bytes,
        len(report.problems),
    )
    return report


def newest_entries(manifests: Sequence[Manifest]) -> list[ManifestEntry]:
    """Each key once, as the newest manifest that lists it describes it."""
    by_key: dict[str, ManifestEntry] = {}
    for manifest in sorted(manifests, key=lambda m: m.identity.created_at_ms):
        for entry in manifest.files:
            by_key[entry.key] = entry
    return sorted(by_key.values(), key=lambda e: e.path)


def check_entry(storage: Storage, entry: ManifestEntry) -> Problem | None:
    """The problem with one stored file, or None when it is present and whole."""
    try:
        info = storage.stat(entry.key)
        if info is None:
            return Problem(ProblemKind.MISSING, f"{entry.key} is not in storage", entry.path)
        if info.size != entry.size:
            return Problem(
                ProblemKind.WRONG_SIZE,
                f"{entry.key} has {info.size} bytes, its manifest says {entry.size}",
                entry.path,
            )
        digest = storage.sha256(entry.key)
    except StorageError as exc:
        return Problem(ProblemKind.MISSING, f"{entry.key} cannot be read: {exc}", entry.path)
    if digest != entry.sha256:
        return Problem(
            ProblemKind.WRONG_CHECKSUM,
            f"{entry.key} has SHA-256 {digest}, its manifest says {entry.sha256}",
            entry.path,
        )
    return None
