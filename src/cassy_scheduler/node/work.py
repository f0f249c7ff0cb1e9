"""The work done on a node's own host: its files read, snapshots taken, uploads and restores.

The server decides what a node does (which keyspaces, which of its snapshots are its own,
which earlier uploads a snapshot can be stored from) and writes it into an order; these
functions carry an order out with the host's files, its nodetool and a storage. A node on
the server's host runs them in the server (node/side.py); a node reached over SSH runs them
in `cassy-scheduler node` there (node/program.py). Orders and results are plain data so they
cross the wire as JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from cassy_scheduler.node.cassandrayaml import CassandraYamlError, node_directories
from cassy_scheduler.node.datadir import (
    backup_files,
    covered_backup_files,
    delete_files,
    keyspace_dirs,
    remove_snapshot,
    snapshot_files,
    snapshot_tags,
)
from cassy_scheduler.node.liveness import LivenessUnknownError, cassandra_running
from cassy_scheduler.node.manifest import BackupIdentity, Manifest
from cassy_scheduler.node.nodetool import Nodetool
from cassy_scheduler.node.placement import (
    NodeDirectories,
    PlacementResult,
    PlannedFile,
    RestorePlan,
    occupied_directories,
    remove_leftover_staging,
    restore_files,
)
from cassy_scheduler.node.progress import Progress
from cassy_scheduler.node.transfer import DEFAULT_WORKERS, LocalFile, upload_files
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage import Storage
from cassy_scheduler.storage.layout import backup_prefix

BackupAction = Literal["snapshot", "incremental", "upload"]
"""snapshot: take one and upload it; incremental: flush and upload backups/; upload: store a
snapshot taken earlier under the order's id (the cluster-wide cut)."""


@dataclass(frozen=True)
class NodeFacts:
    """What the node's data directory holds: which of the asked keyspaces have a directory,
    and the snapshot tags found in any keyspace."""

    data_dir: str
    keyspaces: tuple[str, ...]
    snapshot_tags: tuple[str, ...]


@dataclass(frozen=True)
class BackupOrder:
    """One node's backup, as the server decided it."""

    action: BackupAction
    identity: BackupIdentity
    data_dir: str
    keyspaces: tuple[str, ...]
    remove_snapshots: tuple[str, ...] = ()  # this server's earlier snapshots there
    earlier: tuple[Manifest, ...] = ()  # uploads a new snapshot may copy from
    workers: int = DEFAULT_WORKERS

    def to_message(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "identity": identity_document(self.identity),
            "data_dir": self.data_dir,
            "keyspaces": list(self.keyspaces),
            "remove_snapshots": list(self.remove_snapshots),
            "earlier": [m.to_json() for m in self.earlier],
            "workers": self.workers,
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> BackupOrder:
        return cls(
            action=message["action"],
            identity=identity_of(message["identity"]),
            data_dir=str(message["data_dir"]),
            keyspaces=tuple(message["keyspaces"]),
            remove_snapshots=tuple(message.get("remove_snapshots", ())),
            earlier=tuple(
                Manifest.from_json(text, source="an earlier manifest")
                for text in message.get("earlier", ())
            ),
            workers=int(message.get("workers", DEFAULT_WORKERS)),
        )


@dataclass(frozen=True)
class BackupDone:
    """What a node's backup did, for the server's log and records."""

    manifest_key: str
    files_sent: int
    bytes_sent: int
    files_copied: int
    bytes_copied: int
    files_skipped: int
    bytes_skipped: int
    incremental_files_cleared: int = 0
    snapshots_removed: tuple[str, ...] = field(default=())

    @property
    def files(self) -> int:
        return self.files_sent + self.files_copied + self.files_skipped

    @property
    def bytes(self) -> int:
        return self.bytes_sent + self.bytes_copied + self.bytes_skipped

    def summary(self) -> str:
        cleared = (
            f" incremental_files_cleared={self.incremental_files_cleared}"
            if self.incremental_files_cleared
            else ""
        )
        return (
            f"files_sent={self.files_sent} bytes_sent={self.bytes_sent} "
            f"files_copied={self.files_copied} bytes_copied={self.bytes_copied} "
            f"files_skipped={self.files_skipped} manifest={self.manifest_key}{cleared}"
        )

    def to_message(self) -> dict[str, Any]:
        document = asdict(self)
        document["snapshots_removed"] = list(self.snapshots_removed)
        return document

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> BackupDone:
        names = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in message.items() if k in names}
        values["snapshots_removed"] = tuple(values.get("snapshots_removed", ()))
        return cls(**values)


@dataclass(frozen=True)
class RestoreOrder:
    """One node's restore: the planned files, the node's directories (None: as its
    cassandra.yaml says, read on the node) and the staging tag."""

    plan: RestorePlan
    dirs: NodeDirectories | None
    tag: str
    workers: int = DEFAULT_WORKERS

    def to_message(self) -> dict[str, Any]:
        return {
            "plan": {
                "snapshot_id": self.plan.snapshot_id,
                "files": [asdict(f) for f in self.plan.files],
                "manifests": list(self.plan.manifests),
            },
            "dirs": None if self.dirs is None else directories_document(self.dirs),
            "tag": self.tag,
            "workers": self.workers,
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> RestoreOrder:
        plan = message["plan"]
        return cls(
            plan=RestorePlan(
                str(plan["snapshot_id"]),
                tuple(PlannedFile(**f) for f in plan["files"]),
                tuple(plan["manifests"]),
            ),
            dirs=directories_of(message.get("dirs")),
            tag=str(message["tag"]),
            workers=int(message.get("workers", DEFAULT_WORKERS)),
        )


def identity_document(identity: BackupIdentity) -> dict[str, Any]:
    document = asdict(identity)
    document["backup_type"] = int(identity.backup_type)
    return document


def identity_of(document: dict[str, Any]) -> BackupIdentity:
    return BackupIdentity(
        cluster_id=str(document["cluster_id"]),
        snapshot_id=str(document["snapshot_id"]),
        node_ip=str(document["node_ip"]),
        backup_type=BackupType(int(document["backup_type"])),
        created_at_ms=int(document["created_at_ms"]),
    )


def directories_document(dirs: NodeDirectories) -> dict[str, str]:
    return {name: str(path) for name, path in asdict(dirs).items()}


def directories_of(document: dict[str, str] | None) -> NodeDirectories | None:
    if document is None:
        return None
    return NodeDirectories(**{name: Path(path) for name, path in document.items()})


def resolved(dirs: NodeDirectories | None) -> NodeDirectories:
    """The directories given, else those of this host's cassandra.yaml."""
    return dirs if dirs is not None else node_directories()


# ------------------------------------------------------------------------------ the work


def node_facts(data_dir: Path, keyspaces: Sequence[str]) -> NodeFacts:
    """The facts a backup is decided on; a data directory that is not there is an error."""
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"data directory {data_dir} does not exist on the node: check the node's "
            "data_file_directories, or set data_dir for it in the server's [nodes.hosts]"
        )
    present = tuple(ks for ks in keyspaces if (data_dir / ks).is_dir())
    tags = tuple(sorted(snapshot_tags(data_dir, keyspace_dirs(data_dir))))
    return NodeFacts(str(data_dir), present, tags)


def back_up(
    order: BackupOrder,
    storage: Storage,
    nodetool: Nodetool,
    *,
    cancelled: Callable[[], bool] = lambda: False,
    progress: Progress | None = None,
) -> BackupDone:
    """Carry out `order`: the manifest is stored last, so a failure leaves none."""
    data_dir = Path(order.data_dir)
    keyspaces = list(order.keyspaces)
    for tag in order.remove_snapshots:
        remove_snapshot(data_dir, tag)
    cleared = 0
    identity = order.identity
    if order.action == "incremental":
        nodetool.flush(keyspaces)
        files = backup_files(data_dir, keyspaces)
    elif order.action == "snapshot":
        before = backup_files(data_dir, keyspaces)
        nodetool.snapshot(identity.snapshot_id, keyspaces)
        files = snapshot_files(data_dir, identity.snapshot_id, keyspaces)
    else:
        files = snapshot_files(data_dir, identity.snapshot_id, keyspaces)
    if order.action != "incremental" and not files:
        raise FileNotFoundError(
            f"snapshot {identity.snapshot_id} has no files under {data_dir}: is nodetool "
            "reaching this node's own Cassandra (its JMX port), and is that its data "
            "directory? Nothing was stored"
        )
    prefix = backup_prefix(
        identity.backup_type, identity.cluster_id, identity.snapshot_id, identity.node_ip
    )
    result = upload_files(
        storage,
        prefix,
        [LocalFile(f.path, f.relative) for f in files],
        identity,
        workers=order.workers,
        cancelled=cancelled,
        earlier=order.earlier,
        progress=progress,
    )
    if order.action == "snapshot":
        covered = covered_backup_files(before, backup_files(data_dir, keyspaces), files)
        cleared = delete_files(covered)
    return BackupDone(
        manifest_key=result.manifest_key,
        files_sent=result.files_sent,
        bytes_sent=result.bytes_sent,
        files_copied=result.files_copied,
        bytes_copied=result.bytes_copied,
        files_skipped=result.files_skipped,
        bytes_skipped=result.bytes_skipped,
        incremental_files_cleared=cleared,
        snapshots_removed=order.remove_snapshots,
    )


def restore_problems(dirs: NodeDirectories | None, ports: Sequence[tuple[str, int]]) -> str | None:
    """Why the node cannot take a restore now (Cassandra answers on `ports`, or its
    directories hold files), or None."""
    try:
        dirs = resolved(dirs)
    except CassandraYamlError as exc:
        return str(exc)
    try:
        running = cassandra_running(ports, 10.0)
    except LivenessUnknownError as exc:
        return f"{exc}; make sure Cassandra is stopped there"
    if running:
        return "Cassandra is running (its JMX or CQL port answers): stop it first"
    problems = occupied_directories(dirs)
    if problems:
        return "; ".join(problems) + ": empty them first"
    return None


def restore(
    order: RestoreOrder,
    storage: Storage,
    *,
    cancelled: Callable[[], bool] = lambda: False,
    progress: Progress | None = None,
) -> tuple[PlacementResult, list[Path]]:
    """Place `order`'s files; also returns the staging directories of earlier restores that
    were found and removed first."""
    dirs = resolved(order.dirs)
    leftovers = remove_leftover_staging(dirs)
    placed = restore_files(
        storage,
        order.plan,
        dirs,
        order.tag,
        workers=order.workers,
        cancelled=cancelled,
        progress=progress,
    )
    return placed, leftovers
