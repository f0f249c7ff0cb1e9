"""Finding what a run acts on: the cluster id a job means, and the snapshot an incremental extends.

Jobs name clusters the way people think of them (an id, a cluster name, any node), and
incrementals must extend the newest snapshot that really finished on every node; both answers
come from the server at run time, never from a cache, so they follow re-registrations.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cassy_scheduler.client import BackupEntry, Cluster
from cassy_scheduler.config.model import ClusterRef
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.records import Failure
from cassy_scheduler.scheduling import SchedulingError

_log = logging.getLogger(__name__)

# Cassy accepts incrementals on node snapshots only; cluster-wide ones join this set when a
# server accepts them too.
BASE_SNAPSHOT_TYPES: frozenset[BackupType] = frozenset({BackupType.NODE_SNAPSHOT})


class ClusterDirectory(Protocol):
    """The part of CassyClient that cluster resolution needs."""

    def list_clusters(
        self, cluster_id: str | None = None, limit: int = 0, *, timeout_s: float | None = None
    ) -> list[Cluster]: ...

    def register_cluster(
        self, cassandra_host: str, *, timeout_s: float | None = None
    ) -> Cluster: ...


class BackupHistory(Protocol):
    """The part of CassyClient that base snapshot resolution needs."""

    def list_backups(
        self,
        cluster_id: str | None = None,
        target_ip: str | None = None,
        snapshot_id: str | None = None,
        limit: int = 0,
        *,
        timeout_s: float | None = None,
    ) -> list[BackupEntry]: ...


class ResolveError(SchedulingError):
    """What a job names cannot be found on the server; `hint` says how to fix it."""

    failure = Failure.UNKNOWN_CLUSTER

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(f"{message}; {hint}")
        self.message = message
        self.hint = hint


class UnknownClusterError(ResolveError):
    """No registered cluster matches the job's cluster reference."""


class NoBaseSnapshotError(ResolveError):
    """An incremental has no completed snapshot to extend."""

    failure = Failure.NO_BASE_SNAPSHOT


@dataclass(frozen=True)
class ResolvedCluster:
    """The cluster a run acts on, and whether this resolution registered it."""

    cluster: Cluster
    registered: bool = False

    @property
    def cluster_id(self) -> str:
        return self.cluster.cluster_id


@dataclass(frozen=True)
class BaseSnapshot:
    """A snapshot every node finished, which an incremental may extend."""

    snapshot_id: str
    created_at: datetime
    backup_type: BackupType
    nodes: tuple[str, ...]


def resolve_cluster(directory: ClusterDirectory, ref: ClusterRef) -> ResolvedCluster:
    """The registered cluster `ref` means; registers it when the reference allows that."""
    if ref.cluster_id is not None:
        found = directory.list_clusters(cluster_id=ref.cluster_id)
        match = next((c for c in found if c.cluster_id == ref.cluster_id), None)
        if match is None:
            raise UnknownClusterError(
                f'no cluster with id "{ref.cluster_id}" is registered with the server',
                "list the registered ids with `cassy-scheduler clusters`, or register one with "
                "`cassy-scheduler register HOST`",
            )
        return ResolvedCluster(match)
    clusters = directory.list_clusters()
    if ref.cluster_name is not None:
        named = [c for c in clusters if c.cluster_name == ref.cluster_name]
        if not named:
            known = sorted({c.cluster_name for c in clusters})
            raise UnknownClusterError(
                f'no cluster named "{ref.cluster_name}" is registered with the server'
                + (f" (registered: {', '.join(known)})" if known else ""),
                "register it with `cassy-scheduler register HOST`, or name the cluster by "
                "cassandra_host with register_if_missing = true",
            )
        return ResolvedCluster(_newest(named))
    host = ref.cassandra_host or ""
    addresses = _addresses(host)
    holding = [c for c in clusters if addresses & set(c.target_ips)]
    if holding:
        return ResolvedCluster(_newest(holding))
    if not ref.register_if_missing:
        raise UnknownClusterError(
            f'no registered cluster has node "{host}"',
            "set register_if_missing = true for this job, or register it with "
            f"`cassy-scheduler register {host}`",
        )
    cluster = directory.register_cluster(host)
    _log.info(
        "cluster registered host=%s cluster_id=%s cluster_name=%s nodes=%s",
        host,
        cluster.cluster_id,
        cluster.cluster_name,
        ",".join(cluster.target_ips),
    )
    return ResolvedCluster(cluster, registered=True)


def _newest(clusters: list[Cluster]) -> Cluster:
    """The most recently registered; the server lists newest first when times are missing."""
    dated = [c for c in clusters if c.created_at is not None]
    if len(dated) == len(clusters):
        return max(dated, key=lambda c: c.created_at or datetime.min)
    return clusters[0]


def _addresses(host: str) -> set[str]:
    """The host as written, plus its IPv4 addresses when it is a name."""
    found = {host}
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            return found
        found.update(str(info[4][0]) for info in infos)
    return found


def find_base_snapshot(
    backups: BackupHistory,
    cluster: Cluster,
    accepted: Collection[BackupType] = BASE_SNAPSHOT_TYPES,
) -> BaseSnapshot | None:
    """The newest snapshot of `cluster` that COMPLETED on every node, or None.

    A snapshot request is the group of rows sharing snapshot id and created_at; it counts when
    every row is COMPLETED and it covers every node the cluster has now, since an incremental
    goes to every node.
    """
    rows = backups.list_backups(cluster_id=cluster.cluster_id)
    candidates = [
        snapshot
        for snapshot in _completed_groups(r for r in rows if r.backup_type in accepted)
        if set(cluster.target_ips) <= set(snapshot.nodes)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda s: s.created_at)


def _completed_groups(rows: Iterable[BackupEntry]) -> list[BaseSnapshot]:
    groups: dict[tuple[str, int], list[BackupEntry]] = {}
    for row in rows:
        groups.setdefault((row.snapshot_id, row.created_at_ms), []).append(row)
    return [
        BaseSnapshot(
            snapshot_id=snapshot_id,
            created_at=members[0].created_at,
            backup_type=members[0].backup_type,
            nodes=tuple(sorted(r.target_ip for r in members)),
        )
        for (snapshot_id, _), members in groups.items()
        if all(r.status is OperationStatus.COMPLETED for r in members)
    ]


def no_base_snapshot(cluster: Cluster) -> NoBaseSnapshotError:
    """The error for an incremental job whose policy is to fail when nothing can be extended."""
    return NoBaseSnapshotError(
        f'cluster "{cluster.cluster_id}" has no node snapshot that completed on every node, '
        "so there is nothing for an incremental backup to extend",
        "take one with `cassy-scheduler backup snapshot`, add a snapshot job for this cluster, "
        'or set when_no_snapshot = "take-snapshot" on the job',
    )
