"""What a request must be before any work starts, checked once, each rule with its refusal.

The servicer hands requests over as plain values (`BackupAsk`, `RestoreAsk`); the checks here
read the metadata once and return what the work needs (the cluster, the targets, the
snapshot's type), or raise the error whose message says what to send instead.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cassy_scheduler.node.datadir import is_plain_id
from cassy_scheduler.protocol.echo import echo, echo_list
from cassy_scheduler.protocol.types import BackupType, OperationStatus, RestoreType
from cassy_scheduler.server.errors import InvalidRequestError, PreconditionError
from cassy_scheduler.server.rows import BackupRecord, ClusterRecord, MetadataStore

_TYPE_NAMES = ", ".join(f"{t.value} ({t.name})" for t in BackupType)
_RESTORE_TYPE_NAMES = ", ".join(f"{t.value} ({t.name})" for t in RestoreType)
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$", re.ASCII)
_MAX_HOST_NAME = 253
_ZONE = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)


@dataclass(frozen=True)
class BackupAsk:
    """A TakeBackup request as it came: codes and ids, not yet checked."""

    cluster_id: str
    backup_type: int
    snapshot_id: str
    target_ips: tuple[str, ...]


@dataclass(frozen=True)
class RestoreAsk:
    """A RestoreBackup request as it came."""

    cluster_id: str
    snapshot_id: str
    restore_type: int
    target_ips: tuple[str, ...]
    snapshot_only: bool


@dataclass(frozen=True)
class CheckedBackup:
    cluster: ClusterRecord
    backup_type: BackupType
    snapshot_id: str | None  # None: a new snapshot, whose id the server picks
    targets: tuple[str, ...]  # empty: every node


@dataclass(frozen=True)
class CheckedRestore:
    cluster: ClusterRecord
    restore_type: RestoreType
    snapshot_type: BackupType
    targets: tuple[str, ...]


def is_host(text: str) -> bool:
    """An IP address or a DNS name (labels of letters, digits, '-' and '_'): nothing a CQL
    driver or a resolver would choke on, and nothing that reads as a path."""
    address, percent, zone = text.partition("%")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        pass
    else:  # an IPv6 zone id names an interface: "fe80::1%eth0"
        return not percent or (":" in address and _ZONE.fullmatch(zone) is not None)
    name = text.removesuffix(".")
    return 0 < len(name) <= _MAX_HOST_NAME and all(
        _HOST_LABEL.fullmatch(label) for label in name.split(".")
    )


def checked_host(cassandra_host: str) -> str:
    host = cassandra_host.strip()
    if not host:
        raise InvalidRequestError(
            "cassandra_host must be specified: the address of any node of the cluster"
        )
    if not is_host(host):
        raise InvalidRequestError(
            f"cassandra_host {echo(host)} is not a host name or an IP address: give the "
            "address of any node of the cluster, e.g. 10.0.0.1 or cassandra-1.example.com"
        )
    return host


def checked_backup(metadata: MetadataStore, ask: BackupAsk) -> CheckedBackup:
    _require_cluster_id(ask.cluster_id)
    backup_type = _backup_type(ask.backup_type)
    sid = ask.snapshot_id
    if backup_type is BackupType.NODE_INCREMENTAL and not sid:
        raise InvalidRequestError("snapshot_id must be specified when taking incremental backups")
    if backup_type.is_snapshot and sid:
        raise InvalidRequestError(
            "snapshot_id must not be specified when taking snapshots: each snapshot gets a "
            "new id, returned in the reply"
        )
    if sid and not is_plain_id(sid):
        raise InvalidRequestError(
            f"snapshot_id {echo(sid)} is not a plain id: use the id a snapshot reply "
            "returned (letters, digits, '-', '_', '.')"
        )
    cluster = _cluster(metadata, ask.cluster_id, "register it with RegisterCluster, or ")
    targets = _targets(cluster, ask.target_ips)
    if backup_type is BackupType.CLUSTER_SNAPSHOT:
        _covers_every_node(
            cluster,
            targets,
            "a cluster-wide snapshot (backup_type 1) covers every node: leave target_ips "
            "empty, or take node snapshots (backup_type 2) of some nodes",
        )
    if backup_type is BackupType.NODE_INCREMENTAL:
        rows = _rows_of(metadata, cluster, sid)
        if not any(r.backup_type.is_snapshot for r in rows):
            raise PreconditionError(
                f"cluster {cluster.cluster_id} has no snapshot {sid}: take a node snapshot "
                "first and extend the id it returns"
            )
    return CheckedBackup(cluster, backup_type, sid or None, targets)


def checked_restore(metadata: MetadataStore, ask: RestoreAsk) -> CheckedRestore:
    _require_cluster_id(ask.cluster_id)
    restore_type = _restore_type(ask.restore_type)
    sid = ask.snapshot_id
    if not sid or not is_plain_id(sid):
        raise InvalidRequestError(
            f"snapshot_id {echo(sid)} is not a snapshot id: give the id a snapshot reply or "
            "ListBackups returned"
        )
    cluster = _cluster(metadata, ask.cluster_id, "")
    targets = _targets(cluster, ask.target_ips)
    rows = _rows_of(metadata, cluster, sid)
    if not rows:
        raise PreconditionError(
            f"cluster {cluster.cluster_id} has no backup {sid}: pick a snapshot id from ListBackups"
        )
    snapshot_type = rows[-1].backup_type  # the oldest row is the snapshot's own
    if restore_type is RestoreType.CLUSTER:
        if snapshot_type is not BackupType.CLUSTER_SNAPSHOT:
            raise InvalidRequestError(
                f"snapshot {sid} is a node-level backup, not a cluster-wide backup: restore "
                "it node by node (restore_type 2)"
            )
        _covers_every_node(
            cluster,
            targets,
            "a cluster restore (restore_type 1) restores every node: leave target_ips empty, "
            "or restore some nodes with restore_type 2",
        )
    done = {
        r.target_ip
        for r in rows
        if r.backup_type.is_snapshot and r.status is OperationStatus.COMPLETED
    }
    lacking = [ip for ip in targets or cluster.target_ips if ip not in done]
    if lacking:
        raise PreconditionError(
            f"snapshot {sid} did not complete on {', '.join(lacking)}: restore the other "
            "nodes (target_ips) or pick another snapshot"
        )
    return CheckedRestore(cluster, restore_type, snapshot_type, targets)


def _backup_type(code: int) -> BackupType:
    try:
        return BackupType(code)
    except ValueError:
        raise InvalidRequestError(f"unknown backup_type {code}: use {_TYPE_NAMES}") from None


def _restore_type(code: int) -> RestoreType:
    try:
        return RestoreType(code)
    except ValueError:
        raise InvalidRequestError(
            f"unknown restore_type {code}: use {_RESTORE_TYPE_NAMES}"
        ) from None


def _require_cluster_id(cluster_id: str) -> None:
    """Checked first: a request without a cluster is refused for that, whatever else it lacks."""
    if not cluster_id:
        raise InvalidRequestError("cluster_id must be specified (ListClusters shows the ids)")


def _cluster(metadata: MetadataStore, cluster_id: str, register: str) -> ClusterRecord:
    cluster = metadata.get_cluster(cluster_id)
    if cluster is None:
        raise InvalidRequestError(
            f"no cluster {echo(cluster_id)} is registered: {register}pick an id from ListClusters"
        )
    return cluster


def _targets(cluster: ClusterRecord, target_ips: Sequence[str]) -> tuple[str, ...]:
    targets = tuple(dict.fromkeys(target_ips))
    strangers = [ip for ip in targets if ip not in cluster.target_ips]
    if strangers:
        raise InvalidRequestError(
            f"target_ips {echo_list(strangers)} are not nodes of {cluster.cluster_id} "
            f"({', '.join(cluster.target_ips)})"
        )
    return targets


def _covers_every_node(cluster: ClusterRecord, targets: Sequence[str], refusal: str) -> None:
    if set(targets) not in (set(), set(cluster.target_ips)):
        raise InvalidRequestError(refusal)


def _rows_of(metadata: MetadataStore, cluster: ClusterRecord, sid: str) -> list[BackupRecord]:
    return [r for r in metadata.list_backups(snapshot_id=sid) if r.cluster_id == cluster.cluster_id]
