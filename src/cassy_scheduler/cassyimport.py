"""Bringing backups that Scalar's Cassy wrote into the built-in server: so an operator who
moves from Cassy keeps every old backup restorable.

Cassy's storage holds each node's files in the same key layout as ours, but no manifest, and
its metadata database (where its history rows live) is not in the bucket in a form we read.
For each node prefix without a manifest, `import_cassy_backups` checks the files by what
Cassandra wrote beside them (every component in each SSTable's TOC.txt, Data.db against
Digest.crc32, the snapshot's manifest.json), hashes every object once (reading it from
storage: the only way to learn a SHA-256 Cassy never recorded), and writes our manifests:
one for the snapshot's files, one for the incremental files (`backups/`) if any. Only then
are the rows added to the server's metadata, COMPLETED, with the cluster when the server
does not know it. A node whose files fail the check gets neither manifest nor row.

Importing again changes nothing: prefixes with a manifest, and rows that exist, are left
(rows an import cut short did not write are added from the manifests). A node prefix the
server itself has a row for but no manifest (its own upload, never finished) is not Cassy's
and is left out. A cluster the server does not know is recorded with every node and
keyspace its files show, those of a node whose files fail the check included.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cassy_scheduler.node.datadir import BACKUPS_DIR
from cassy_scheduler.node.manifest import (
    BackupIdentity,
    Manifest,
    ManifestEntry,
    ManifestError,
    find_manifests,
)
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.server.metadata import SqliteMetadataStore
from cassy_scheduler.storage.base import ObjectInfo, Storage
from cassy_scheduler.storage.errors import StorageError
from cassy_scheduler.storage.layout import (
    CLUSTER_BACKUP_ROOT,
    MANIFEST_DIRECTORY,
    NODE_BACKUP_ROOT,
    manifest_key,
)
from cassy_scheduler.verify import VerifyError, verify_node_by_digests

_log = logging.getLogger(__name__)

#: Cassy names a cluster `<cluster name>-<random UUID>`.
_CASSY_CLUSTER_ID = re.compile(
    r"(?P<name>.+)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE
)


@dataclass(frozen=True)
class NodeImport:
    """One node's files of one snapshot, and what became of them."""

    root: str
    cluster_id: str
    snapshot_id: str
    node_ip: str
    files: int
    bytes: int
    outcome: str  # "imported", "already ours", "skipped" (the server's own) or "refused"
    detail: str = ""
    incremental_files: int = 0
    uploads: tuple[tuple[BackupType, int], ...] = ()  # its manifests: type, created_at

    @property
    def ok(self) -> bool:
        return self.outcome != "refused"


@dataclass
class _Cluster:
    nodes: set[str] = field(default_factory=set)
    keyspaces: set[str] = field(default_factory=set)


@dataclass
class _Group:
    snapshot: list[ObjectInfo] = field(default_factory=list)
    incremental: list[ObjectInfo] = field(default_factory=list)
    has_snapshot_manifest: bool = False  # written last by an import, and by every snapshot


def import_cassy_backups(
    storage: Storage,
    metadata: SqliteMetadataStore,
    *,
    data_dir: str,
    cluster_id: str | None = None,
    dry_run: bool = False,
    progress: Callable[[NodeImport], None] = lambda _: None,
) -> list[NodeImport]:
    """Every node prefix of Cassy's layout under `storage` (of `cluster_id` only, if given):
    checked, hashed, given manifests and rows. `data_dir` is recorded for a cluster the
    server does not know (its nodes' data directory). `dry_run` checks and reports only."""
    groups = _groups(storage, cluster_id)
    clusters = _clusters(groups)
    results = []
    for (root, cluster, snapshot, node), group in sorted(groups.items()):
        rows = {
            row.created_at
            for row in metadata.list_backups(cluster_id=cluster, target_ip=node)
            if row.snapshot_id == snapshot
        }
        result = _import_node(storage, root, cluster, snapshot, node, group, rows, dry_run)
        if not dry_run and result.ok:  # at once: an import cut short resumes where it was
            _record(metadata, result, clusters[cluster], data_dir, rows)
        results.append(result)
        progress(result)
    return results


def _clusters(groups: dict[tuple[str, str, str, str], _Group]) -> dict[str, _Cluster]:
    """Each cluster's nodes and keyspaces, as far as its stored files tell, for a cluster
    the server does not know: a node whose files fail the check is still one of its nodes."""
    clusters: dict[str, _Cluster] = defaultdict(_Cluster)
    for (root, cluster, snapshot, node), group in groups.items():
        prefix = f"{root}/{cluster}/{snapshot}/{node}/"
        clusters[cluster].nodes.add(node)
        clusters[cluster].keyspaces.update(
            path.split("/", 1)[0]
            for info in group.snapshot
            if "/" in (path := info.key[len(prefix) :])
        )
    return clusters


def _groups(storage: Storage, cluster_id: str | None) -> dict[tuple[str, str, str, str], _Group]:
    """Objects by (root, cluster, snapshot, node), split into snapshot and incremental files."""
    groups: dict[tuple[str, str, str, str], _Group] = defaultdict(_Group)
    for root in (NODE_BACKUP_ROOT, CLUSTER_BACKUP_ROOT):
        prefix = f"{root}/{cluster_id}/" if cluster_id else f"{root}/"
        for info in storage.list(prefix):
            parts = info.key.split("/", 4)
            if len(parts) < 5:
                continue  # a pause report or a stray object beside the node prefixes
            _, cluster, snapshot, node, path = parts
            group = groups[(root, cluster, snapshot, node)]
            if path.startswith(f"{MANIFEST_DIRECTORY}/"):
                if path.endswith(("-node_snapshot.json", "-cluster_snapshot.json")):
                    group.has_snapshot_manifest = True
            elif path.split("/")[2:3] == [BACKUPS_DIR]:
                group.incremental.append(info)
            else:
                group.snapshot.append(info)
    return groups


def _import_node(  # noqa: PLR0917 (one node's facts)
    storage: Storage,
    root: str,
    cluster: str,
    snapshot: str,
    node: str,
    group: _Group,
    rows: set[int],
    dry_run: bool,
) -> NodeImport:
    """`rows` are the created_at of the server's rows for this node's snapshot."""
    files = group.snapshot + group.incremental
    size = sum(info.size for info in files)
    prefix = f"{root}/{cluster}/{snapshot}/{node}/"

    def result(
        outcome: str, detail: str = "", uploads: tuple[tuple[BackupType, int], ...] = ()
    ) -> NodeImport:
        return NodeImport(
            root,
            cluster,
            snapshot,
            node,
            len(files),
            size,
            outcome,
            detail,
            len(group.incremental),
            uploads,
        )

    if rows and not group.has_snapshot_manifest:
        return result("skipped", "the server's own snapshot, never finished: not Cassy's")
    if group.has_snapshot_manifest:
        if rows:
            return result("already ours")
        try:  # an import cut short before its rows: they come from its manifests
            manifests = find_manifests(storage, prefix)
        except (ManifestError, StorageError) as exc:
            return result("refused", str(exc))
        uploads = tuple((m.identity.backup_type, m.identity.created_at_ms) for m in manifests)
        return result("already ours", uploads=uploads)
    try:
        report = verify_node_by_digests(storage, prefix, node, snapshot)
    except VerifyError as exc:
        return result("refused", str(exc))
    if not report.ok:
        return result("refused", "; ".join(problem.detail for problem in report.problems[:3]))
    if dry_run:
        return result("imported", "checked (dry run: nothing written)")
    backup_type = (
        BackupType.CLUSTER_SNAPSHOT if root == CLUSTER_BACKUP_ROOT else BackupType.NODE_SNAPSHOT
    )
    snapshot_at = _ms(min(_when(info) for info in group.snapshot))
    written = []
    if group.incremental:  # first: the snapshot's manifest, last, says the node is imported
        incremental_at = max(snapshot_at + 1, _ms(max(_when(i) for i in group.incremental)))
        _write_manifest(
            storage,
            prefix,
            group.incremental,
            cluster,
            snapshot,
            node,
            BackupType.NODE_INCREMENTAL,
            incremental_at,
        )
        written.append((BackupType.NODE_INCREMENTAL, incremental_at))
    _write_manifest(
        storage, prefix, group.snapshot, cluster, snapshot, node, backup_type, snapshot_at
    )
    written.insert(0, (backup_type, snapshot_at))
    _log.info(
        "imported a node's backup written by Cassy prefix=%s files=%d bytes=%d",
        prefix,
        len(files),
        size,
    )
    return result("imported", uploads=tuple(written))


def _write_manifest(  # noqa: PLR0917 (one upload's facts)
    storage: Storage,
    prefix: str,
    objects: Iterable[ObjectInfo],
    cluster: str,
    snapshot: str,
    node: str,
    backup_type: BackupType,
    created_at_ms: int,
) -> Manifest:
    entries = tuple(
        sorted(
            (_entry(storage, prefix, info) for info in objects),
            key=lambda entry: entry.path,
        )
    )
    identity = BackupIdentity(cluster, snapshot, node, backup_type, created_at_ms)
    manifest = Manifest(identity=identity, prefix=prefix, files=entries)
    storage.put_bytes(manifest_key(prefix, backup_type, created_at_ms), manifest.to_json().encode())
    return manifest


def _entry(storage: Storage, prefix: str, info: ObjectInfo) -> ManifestEntry:
    digest = hashlib.sha256()
    size = 0
    for chunk in storage.chunks(info.key):
        digest.update(chunk)
        size += len(chunk)
    return ManifestEntry(
        info.key[len(prefix) :], info.key, size, digest.hexdigest(), etag=info.etag
    )


def _record(
    metadata: SqliteMetadataStore,
    node: NodeImport,
    cluster: _Cluster,
    data_dir: str,
    rows: set[int],
) -> None:
    """The cluster (when the server does not know it) and a COMPLETED row per upload of the
    node that it has no row for."""
    if metadata.get_cluster(node.cluster_id) is None:
        match = _CASSY_CLUSTER_ID.fullmatch(node.cluster_id)
        metadata.add_cluster(
            cluster_id=node.cluster_id,
            cluster_name=match.group("name") if match else node.cluster_id,
            target_ips=sorted(cluster.nodes),
            keyspaces=sorted(cluster.keyspaces),
            data_dir=data_dir,
        )
    for backup_type, created_at in node.uploads:
        if created_at not in rows:
            metadata.insert_backups(
                cluster_id=node.cluster_id,
                target_ips=[node.node_ip],
                snapshot_id=node.snapshot_id,
                backup_type=backup_type,
                created_at=created_at,
                status=OperationStatus.COMPLETED,
            )


def _when(info: ObjectInfo) -> float:
    return info.modified if info.modified is not None else 0.0


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
