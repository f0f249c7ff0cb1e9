"""Proof that a backup can be restored, node by node, read from storage itself.

A backup is judged against its node list (the nodes of the request as the server recorded
them, or the cluster's nodes when storage is read alone), not against the node folders that
happen to exist: a node with no files, no manifest or a FAILED row fails the check.

How a node's files are checked depends on who wrote them:
- **manifest: size + SHA-256**: every upload manifest under the node's prefix is read and
  every file it lists checked for presence, size and SHA-256, the newest manifest's entry
  deciding when several list one key; the node's restore plan is built too.
- **SSTable digests, no manifest**: Scalar's Cassy writes no manifests, so its backups are
  checked by what Cassandra records: every component an SSTable's TOC.txt lists is present and
  not empty, Data.db matches its Digest.crc32, and every Data.db a snapshot's manifest.json
  lists is there. Used only when no node of the snapshot has a manifest: once one has, a node
  without one is a node whose upload never finished.

Cassy's API exposes no storage, so this reads the storage directly, as the server does.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum

from cassy_scheduler.node.manifest import Manifest, ManifestEntry, ManifestError, find_manifests
from cassy_scheduler.node.placement import RestorePlanError, plan_restore, target_path
from cassy_scheduler.node.sstables import (
    DATA,
    DIGEST,
    NEVER_EMPTY,
    SNAPSHOT_MANIFEST,
    TOC,
    SSTableFormatError,
    StoredSSTable,
    group_sstables,
    parse_digest,
    parse_toc,
    snapshot_data_files,
)
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage import Storage, StorageError
from cassy_scheduler.storage.layout import (
    CLUSTER_BACKUP_ROOT,
    NODE_BACKUP_ROOT,
    backup_prefix,
    is_manifest_key,
    manifest_prefix,
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
    NOT_COMPLETED = "not completed"
    NO_FILES = "no files"
    BAD_SSTABLE = "bad sstable"


class CheckMethod(Enum):
    """How a node's stored files were proven."""

    MANIFEST = "manifest: size + SHA-256"
    SSTABLE_DIGESTS = "SSTable digests, no manifest"
    NONE = "none"


@dataclass(frozen=True)
class Problem:
    """One thing wrong; `path` is the file's path below the node prefix, when about a file."""

    kind: ProblemKind
    detail: str
    path: str | None = None


@dataclass(frozen=True)
class NodeReport:
    """What was checked for one node, how, and what was wrong."""

    node_ip: str
    prefix: str
    manifests: int
    files: int
    bytes: int
    problems: tuple[Problem, ...]
    method: CheckMethod = CheckMethod.MANIFEST
    key_ids: tuple[str, ...] = ()  # the keys its objects were sealed with (to keep them)

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

    @property
    def restorable(self) -> tuple[str, ...]:
        return tuple(n.node_ip for n in self.nodes if n.ok)


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
        return sorted(
            {
                parts[0]
                for info in storage.list(prefix)
                if len(parts := info.key[len(prefix) :].split("/", 1)) == 2
            }
        )
    except StorageError as exc:
        raise VerifyError(f"cannot list {prefix} in {storage.uri}: {exc}") from exc


def verify_snapshot(
    storage: Storage,
    cluster_id: str,
    snapshot_id: str,
    nodes: Iterable[str] = (),
    *,
    backup_type: BackupType = BackupType.NODE_SNAPSHOT,
    not_completed: Mapping[str, str] | None = None,
) -> VerifyReport:
    """Check the snapshot on `nodes` (its node list) plus every node with files stored for it.

    `not_completed` maps a node to why the server's row says it did not finish; such a node
    is not restorable whatever storage holds.
    """
    recorded = dict(not_completed or {})
    wanted = sorted(
        set(nodes)
        | set(recorded)
        | set(stored_nodes(storage, cluster_id, snapshot_id, backup_type))
    )
    prefixes = {n: backup_prefix(backup_type, cluster_id, snapshot_id, n) for n in wanted}
    with_manifest = {n for n, prefix in prefixes.items() if _has_manifest(storage, prefix)}
    reports = []
    for node in wanted:
        method = choose_method(node in with_manifest, bool(with_manifest))
        report = _check(storage, prefixes[node], node, snapshot_id, method)
        if node in recorded:
            problem = Problem(ProblemKind.NOT_COMPLETED, f"the server recorded {recorded[node]}")
            report = replace(report, problems=(problem, *report.problems))
        reports.append(report)
    return VerifyReport(cluster_id, snapshot_id, tuple(reports))


def choose_method(node_has_manifest: bool, any_node_has_manifest: bool) -> CheckMethod:
    """Manifests where written; SSTable digests only for a snapshot no node wrote one for
    (Cassy's); NONE for a node missing the manifest the other nodes' uploads wrote."""
    if node_has_manifest:
        return CheckMethod.MANIFEST
    return CheckMethod.NONE if any_node_has_manifest else CheckMethod.SSTABLE_DIGESTS


def _has_manifest(storage: Storage, prefix: str) -> bool:
    try:
        return any(True for _ in storage.list(manifest_prefix(prefix)))
    except StorageError as exc:
        raise VerifyError(f"cannot list {prefix} in {storage.uri}: {exc}") from exc


def _check(
    storage: Storage, prefix: str, node_ip: str, snapshot_id: str, method: CheckMethod
) -> NodeReport:
    if method is CheckMethod.MANIFEST:
        return verify_node(storage, prefix, node_ip, snapshot_id)
    if method is CheckMethod.SSTABLE_DIGESTS:
        return verify_node_by_digests(storage, prefix, node_ip, snapshot_id)
    problem = Problem(
        ProblemKind.NO_MANIFEST,
        f"no upload manifest under {prefix}, though the other nodes' uploads wrote one: "
        "this node's upload never completed",
    )
    return NodeReport(node_ip, prefix, 0, 0, 0, (problem,), CheckMethod.NONE)


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
        key_ids=tuple(sorted({m.key_id for m in manifests if m.key_id is not None})),
    )
    _logged(report)
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


# --------------------------------------------------------------- without manifests (Cassy's)


def verify_node_by_digests(
    storage: Storage, prefix: str, node_ip: str, snapshot_id: str
) -> NodeReport:
    """Check a node's files by their SSTables' own TOC.txt and Digest.crc32."""
    method = CheckMethod.SSTABLE_DIGESTS
    try:
        stored = [
            (info.key[len(prefix) :], info.key, info.size)
            for info in storage.list(prefix)
            if not is_manifest_key(prefix, info.key)
        ]
    except StorageError as exc:
        raise VerifyError(f"cannot list {prefix} in {storage.uri}: {exc}") from exc
    if not stored:
        problem = Problem(ProblemKind.NO_FILES, f"nothing is stored under {prefix}")
        return NodeReport(node_ip, prefix, 0, 0, 0, (problem,), method)
    problems: list[Problem] = []
    for path, _, _ in stored:
        try:
            target_path(path, snapshot_id)
        except RestorePlanError as exc:
            problems.append(Problem(ProblemKind.NOT_RESTORABLE, str(exc), path))
    tables = group_sstables(stored)
    for table in tables:
        problems.extend(_check_sstable(storage, table))
    problems.extend(_check_snapshot_manifests(storage, stored, tables, snapshot_id))
    if not any(f"/snapshots/{snapshot_id}/" in path for path, _, _ in stored):
        problems.append(
            Problem(
                ProblemKind.NOT_RESTORABLE,
                f"no file of snapshot {snapshot_id} is stored, only incremental files",
            )
        )
    report = NodeReport(
        node_ip, prefix, 0, len(stored), sum(size for _, _, size in stored), tuple(problems), method
    )
    _logged(report)
    return report


def _check_sstable(storage: Storage, table: StoredSSTable) -> list[Problem]:
    where = f"{table.directory}/{table.prefix}"
    if TOC not in table.components:
        return [Problem(ProblemKind.BAD_SSTABLE, f"{table.label} has no {TOC}", where + TOC)]
    try:
        listed = parse_toc(storage.get_bytes(table.components[TOC][0]))
    except (SSTableFormatError, StorageError) as exc:
        return [Problem(ProblemKind.BAD_SSTABLE, f"{table.label}: {exc}", where + TOC)]
    problems = []
    for component in listed:
        found = table.components.get(component)
        if found is None:
            problems.append(
                Problem(
                    ProblemKind.MISSING,
                    f"{where}{component} is listed in its {TOC} but not stored",
                    where + component,
                )
            )
        elif found[1] == 0 and component in NEVER_EMPTY:
            problems.append(
                Problem(ProblemKind.WRONG_SIZE, f"{where}{component} is empty", where + component)
            )
    if DATA in table.components and DIGEST in table.components and not problems:
        problem = _check_digest(storage, table, where)
        if problem is not None:
            problems.append(problem)
    return problems


def _check_digest(storage: Storage, table: StoredSSTable, where: str) -> Problem | None:
    try:
        expected = parse_digest(storage.get_bytes(table.components[DIGEST][0]))
        crc = 0
        for chunk in storage.chunks(table.components[DATA][0]):
            crc = zlib.crc32(chunk, crc)
    except SSTableFormatError as exc:
        return Problem(ProblemKind.BAD_SSTABLE, f"{where}{DIGEST}: {exc}", where + DIGEST)
    except StorageError as exc:
        return Problem(ProblemKind.MISSING, f"{where}{DATA} cannot be read: {exc}", where + DATA)
    if crc != expected:
        return Problem(
            ProblemKind.WRONG_CHECKSUM,
            f"{where}{DATA} has CRC32 {crc}, its {DIGEST} says {expected}",
            where + DATA,
        )
    return None


def _check_snapshot_manifests(
    storage: Storage,
    stored: Sequence[tuple[str, str, int]],
    tables: Sequence[StoredSSTable],
    snapshot_id: str,
) -> list[Problem]:
    """Every Data.db a snapshot directory's manifest.json lists is stored beside it."""
    present = {f"{t.directory}/{t.prefix}{DATA}" for t in tables if DATA in t.components}
    problems = []
    for path, key, _ in stored:
        directory, _, name = path.rpartition("/")
        if name != SNAPSHOT_MANIFEST or not directory.endswith(f"/snapshots/{snapshot_id}"):
            continue
        try:
            listed = snapshot_data_files(storage.get_bytes(key))
        except (SSTableFormatError, StorageError) as exc:
            problems.append(Problem(ProblemKind.BAD_SSTABLE, str(exc), path))
            continue
        for data_file in listed:
            wanted = f"{directory}/{data_file}"
            if wanted not in present:
                problems.append(
                    Problem(
                        ProblemKind.MISSING,
                        f"{wanted} is listed in the snapshot's {SNAPSHOT_MANIFEST} but not stored",
                        wanted,
                    )
                )
    return problems


def _logged(report: NodeReport) -> None:
    log.info(
        "node verified node=%s prefix=%s method=%r manifests=%d files=%d bytes=%d problems=%d",
        report.node_ip,
        report.prefix,
        report.method.value,
        report.manifests,
        report.files,
        report.bytes,
        len(report.problems),
    )
