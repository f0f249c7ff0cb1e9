"""Where things live in storage: Cassy's key layout, plus where our upload manifests go.

Data files keep Cassy's layout so a bucket written by either server reads the same:
`node-backup/<cluster_id>/<snapshot_id>/<node ip>/<path relative to the data dir>` (and
`cluster-backup/...` for cluster-wide snapshots).

Manifests: each upload of one backup by one node writes
`<node prefix>upload-manifests/<created_at ms, 13 digits>-<backup type>.json`. A snapshot and
all the incrementals that extend it share one node prefix, so the manifest name carries the
request's `created_at` to give every upload its own manifest; zero padding makes key order
chronological. 'upload-manifests' contains '-', which Cassandra forbids in keyspace names,
so it can never collide with a data-dir path.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage.errors import InvalidKeyError
from cassy_scheduler.storage.keys import validate_key

NODE_BACKUP_ROOT = "node-backup"
CLUSTER_BACKUP_ROOT = "cluster-backup"
METADATA_BACKUP_ROOT = "metadata-backup"
MANIFEST_DIRECTORY = "upload-manifests"
PAUSE_REPORT_NAME = "pause.json"

#: The date-time form Cassy writes in these keys: its server's local time, with a space.
_METADATA_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def _segment(value: str, name: str) -> str:
    if not value or "/" in value:
        raise InvalidKeyError(
            f"{name} {value!r} cannot be one storage key segment: it must be non-empty "
            "and contain no '/'"
        )
    validate_key(value)
    return value


def node_backup_prefix(cluster_id: str, snapshot_id: str, node_ip: str) -> str:
    """Prefix of a node's files for a node-level snapshot and its incrementals."""
    return _backup_prefix(NODE_BACKUP_ROOT, cluster_id, snapshot_id, node_ip)


def cluster_backup_prefix(cluster_id: str, snapshot_id: str, node_ip: str) -> str:
    """Prefix of a node's files for a cluster-wide snapshot."""
    return _backup_prefix(CLUSTER_BACKUP_ROOT, cluster_id, snapshot_id, node_ip)


def backup_prefix(backup_type: BackupType, cluster_id: str, snapshot_id: str, node_ip: str) -> str:
    """The prefix for `backup_type`: cluster-wide snapshots apart, node-level ones together."""
    if backup_type is BackupType.CLUSTER_SNAPSHOT:
        return cluster_backup_prefix(cluster_id, snapshot_id, node_ip)
    return node_backup_prefix(cluster_id, snapshot_id, node_ip)


def _backup_prefix(root: str, cluster_id: str, snapshot_id: str, node_ip: str) -> str:
    return "/".join(
        (
            root,
            _segment(cluster_id, "cluster id"),
            _segment(snapshot_id, "snapshot id"),
            _segment(node_ip, "node ip"),
            "",
        )
    )


def snapshot_prefixes(cluster_id: str, snapshot_id: str) -> tuple[str, str]:
    """The prefixes that hold every node's files of a snapshot and its incrementals, in both
    roots: what deleting the snapshot removes."""
    cluster = _segment(cluster_id, "cluster id")
    snapshot = _segment(snapshot_id, "snapshot id")
    return (
        f"{NODE_BACKUP_ROOT}/{cluster}/{snapshot}/",
        f"{CLUSTER_BACKUP_ROOT}/{cluster}/{snapshot}/",
    )


def pause_report_key(cluster_id: str, snapshot_id: str) -> str:
    """Key of a cluster-wide snapshot's pause report, beside its node prefixes."""
    cluster = _segment(cluster_id, "cluster id")
    snapshot = _segment(snapshot_id, "snapshot id")
    return f"{CLUSTER_BACKUP_ROOT}/{cluster}/{snapshot}/{PAUSE_REPORT_NAME}"


def metadata_backup_key(when: datetime, db_file_name: str, zone: tzinfo | None = None) -> str:
    """Key of a metadata database dump taken at `when` (an aware time), as Cassy writes it:
    `metadata-backup/2026-12-01 18:13:54/<db file>.dump`, in `zone` (None: this host's local
    time, which is what Cassy uses)."""
    if when.tzinfo is None:
        raise ValueError("metadata_backup_key needs an aware datetime (with tzinfo), got naive")
    stamp = when.astimezone(zone).strftime(_METADATA_TIME_FORMAT)
    return f"{METADATA_BACKUP_ROOT}/{stamp}/{_segment(db_file_name, 'db file name')}.dump"


def manifest_key(prefix: str, backup_type: BackupType, created_at_ms: int) -> str:
    """Key of the manifest of one upload under a node prefix (see the module notes)."""
    if created_at_ms < 0:
        raise ValueError(f"created_at must be milliseconds since the epoch, got {created_at_ms}")
    name = f"{created_at_ms:013d}-{backup_type.name.lower()}.json"
    if prefix and not prefix.endswith("/"):
        raise InvalidKeyError(f"node prefix {prefix!r} must end with '/'")
    return validate_key(f"{prefix}{MANIFEST_DIRECTORY}/{name}")


def manifest_prefix(prefix: str) -> str:
    """Prefix under which all manifests of a node prefix live (list it to find uploads)."""
    return f"{prefix}{MANIFEST_DIRECTORY}/"


def is_manifest_key(prefix: str, key: str) -> bool:
    """Whether `key` under `prefix` is a manifest rather than a data file."""
    return key.startswith(manifest_prefix(prefix))
