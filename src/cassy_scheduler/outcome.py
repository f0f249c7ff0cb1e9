"""Waiting for the real result of a backup, which TakeBackup's answer does not carry.

Cassy replies STARTED at once and finishes in the background, so the outcome is learnt by
polling ListBackups for the rows of that one request (same snapshot id, created_at and type).
The same rows tell whether a TakeBackup whose answer was lost (a deadline passed, the
connection dropped) was accepted anyway, so a retry does not start a second backup.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from cassy_scheduler.client import BackupAck, BackupEntry, CassyError
from cassy_scheduler.clock import SYSTEM_CLOCK, Clock
from cassy_scheduler.protocol.types import BackupType, NodeStatus, OperationStatus

logger = logging.getLogger(__name__)


class BackupLister(Protocol):
    """The part of CassyClient that waiting needs."""

    def list_backups(
        self,
        cluster_id: str | None = None,
        target_ip: str | None = None,
        snapshot_id: str | None = None,
        limit: int = 0,
        *,
        timeout_s: float | None = None,
    ) -> list[BackupEntry]: ...


@dataclass(frozen=True)
class BackupOutcome:
    """How one backup request ended, node by node, or where it stood when waiting stopped."""

    ack: BackupAck
    nodes: tuple[NodeStatus, ...]
    timed_out: bool
    last_error: str | None = None

    @property
    def succeeded(self) -> bool:
        return bool(self.nodes) and all(n.status is OperationStatus.COMPLETED for n in self.nodes)

    @property
    def failed_nodes(self) -> tuple[str, ...]:
        return tuple(n.target_ip for n in self.nodes if n.status is OperationStatus.FAILED)

    @property
    def pending_nodes(self) -> tuple[str, ...]:
        return tuple(n.target_ip for n in self.nodes if not n.status.is_final)


def newest_backup_ms(client: BackupLister, cluster_id: str) -> int:
    """The created_at (ms, server clock) of the cluster's newest backup row, 0 if none.

    Taken before TakeBackup: the rows of a request the server accepts are newer than this.
    """
    rows = client.list_backups(cluster_id=cluster_id, limit=1)
    return rows[0].created_at_ms if rows else 0


def find_accepted_backup(  # noqa: PLR0917 (the facts of one request)
    client: BackupLister,
    cluster_id: str,
    backup_type: BackupType,
    snapshot_id: str | None,
    after_ms: int,
    targets: Collection[str],
) -> BackupAck | None:
    """The request a lost TakeBackup answer belonged to, if the server accepted it.

    Its rows are the cluster's rows of this type (and, for an incremental, of this snapshot
    id) created after `after_ms`, one per node of `targets`. A request whose rows are all
    FAILED does not count: the server refuses a backup of down nodes by recording them
    FAILED, and such a refusal is retried, not followed. None when no request matches, or
    when two do (someone else's backup of the whole cluster too): which is ours is unknown.
    """
    candidates = accepted_candidates(
        client, cluster_id, backup_type, snapshot_id, after_ms, targets
    )
    return candidates[0] if len(candidates) == 1 else None


def accepted_candidates(  # noqa: PLR0917 (the facts of one request)
    client: BackupLister,
    cluster_id: str,
    backup_type: BackupType,
    snapshot_id: str | None,
    after_ms: int,
    targets: Collection[str],
    *,
    before_ms: int | None = None,
) -> list[BackupAck]:
    """Every request that may be the one looked for (see find_accepted_backup), oldest
    first; `before_ms` leaves out requests created after it, when the asker knows a moment
    its request cannot be newer than."""
    requests = _requests_since(
        client, cluster_id, backup_type, snapshot_id, after_ms, targets, before_ms=before_ms
    )
    accepted = [
        rows for rows in requests if any(r.status is not OperationStatus.FAILED for r in rows)
    ]
    acks = [_ack_of(rows, cluster_id, backup_type, targets) for rows in accepted]
    return sorted(acks, key=lambda ack: ack.created_at_ms)


def find_refused_backup(  # noqa: PLR0917 (the facts of one request)
    client: BackupLister,
    cluster_id: str,
    backup_type: BackupType,
    snapshot_id: str | None,
    after_ms: int,
    targets: Collection[str],
    *,
    before_ms: int | None = None,
) -> BackupOutcome | None:
    """The rows a refused TakeBackup left behind, so the failure can name its snapshot.

    A server may record a request before refusing it (the built-in server's FAILED rows for
    down nodes; Scalar's Cassy answering INTERNAL for a cluster-wide snapshot whose pause
    failed): the newest request of this type after `after_ms` covering `targets` whose rows
    are all FAILED is the last attempt's. None when there is none.
    """
    requests = _requests_since(
        client, cluster_id, backup_type, snapshot_id, after_ms, targets, before_ms=before_ms
    )
    refused = [rows for rows in requests if all(r.status is OperationStatus.FAILED for r in rows)]
    if not refused:
        return None
    rows = max(refused, key=lambda group: group[0].created_at_ms)
    ack = _ack_of(rows, cluster_id, backup_type, targets)
    return BackupOutcome(ack, _latest_statuses(ack, rows), timed_out=False)


def _requests_since(  # noqa: PLR0917 (the facts of one request)
    client: BackupLister,
    cluster_id: str,
    backup_type: BackupType,
    snapshot_id: str | None,
    after_ms: int,
    targets: Collection[str],
    *,
    before_ms: int | None = None,
) -> list[list[BackupEntry]]:
    """The cluster's requests of this type newer than `after_ms` (and not newer than
    `before_ms`) whose rows cover `targets`."""
    requests: dict[tuple[str, int], list[BackupEntry]] = {}
    for row in client.list_backups(cluster_id=cluster_id, limit=_ACCEPTED_SCAN_ROWS):
        if (
            row.created_at_ms > after_ms
            and (before_ms is None or row.created_at_ms <= before_ms)
            and row.backup_type is backup_type
            and (snapshot_id is None or row.snapshot_id == snapshot_id)
        ):
            requests.setdefault((row.snapshot_id, row.created_at_ms), []).append(row)
    return [rows for rows in requests.values() if {r.target_ip for r in rows} == set(targets)]


def _ack_of(
    rows: list[BackupEntry], cluster_id: str, backup_type: BackupType, targets: Collection[str]
) -> BackupAck:
    return BackupAck(
        OperationStatus.STARTED,
        cluster_id,
        tuple(sorted(targets)),
        rows[0].snapshot_id,
        rows[0].created_at,
        rows[0].created_at_ms,
        backup_type,
    )


_ACCEPTED_SCAN_ROWS = 1000  # newest first: far more than one request's rows


def _latest_statuses(ack: BackupAck, rows: Iterable[BackupEntry]) -> tuple[NodeStatus, ...]:
    """Per-node status of this request's rows; targets without a row yet count as UNKNOWN."""
    latest: dict[str, BackupEntry] = {}
    for row in rows:
        if (
            row.cluster_id != ack.cluster_id
            or row.created_at_ms != ack.created_at_ms
            or row.backup_type is not ack.backup_type
        ):
            continue
        seen = latest.get(row.target_ip)
        if seen is None or row.updated_at >= seen.updated_at:
            latest[row.target_ip] = row
    # An empty target list in the request means every node; the rows then say which nodes.
    targets = ack.target_ips or tuple(sorted(latest))
    return tuple(
        NodeStatus(ip, latest[ip].status, latest[ip].reason, latest[ip].updated_at)
        if ip in latest
        else NodeStatus(ip, OperationStatus.UNKNOWN)
        for ip in targets
    )


def _is_settled(nodes: tuple[NodeStatus, ...], every_node: bool) -> bool:
    if not every_node and any(n.status is OperationStatus.FAILED for n in nodes):
        return True
    return bool(nodes) and all(n.status.is_final for n in nodes)


_T = TypeVar("_T")


@dataclass(frozen=True)
class Polled(Generic[_T]):
    """The last answer of a poll, whether the wait ran out first, and the last error."""

    value: _T
    timed_out: bool
    last_error: str | None = None
    error: CassyError | None = None  # what ended a poll without retry_errors


#: A poll asks again after this, then twice as long each time up to its interval: a backup of
#: a small node is COMPLETED in about a second, and waiting a whole interval for it would
#: be most of the wait.
FIRST_POLL_PAUSE_S = 0.25


class PollStopped(Exception):  # noqa: N818 (a stop asked for, not an error)
    """The caller's stop event was set during a poll (the daemon is stopping)."""


def poll(  # noqa: PLR0917 (the parts of one wait)
    fetch: Callable[[], _T],
    settled: Callable[[_T], bool],
    first: _T,
    timeout_s: float,
    interval_s: float,
    what: str,
    *,
    clock: Clock = SYSTEM_CLOCK,
    stop: threading.Event | None = None,
    retry_errors: bool = True,
) -> Polled[_T]:
    """Call `fetch` until `settled` says so or `timeout_s` has passed: at once, then after
    0.25 s, 0.5 s, 1 s and so on up to `interval_s` between calls.

    The one wait for a server's rows, backups and restores alike. Transient errors (the
    server restarting, a slow answer) are retried until the timeout; any other CassyError is
    raised. Without `retry_errors` the first error of any kind ends the wait, with the last
    answer and the error in the result: for a wait that only makes known statuses truer.
    `first` stands for the answer until one arrives. Setting `stop` ends the wait with
    PollStopped.
    """
    deadline = clock.monotonic() + timeout_s
    value, last_error = first, None
    pause = min(FIRST_POLL_PAUSE_S, interval_s)
    while True:
        try:
            value = fetch()
        except CassyError as exc:
            if not retry_errors:
                return Polled(value, timed_out=False, last_error=str(exc), error=exc)
            if not exc.is_transient:
                raise
            last_error = str(exc)
            logger.warning(
                "poll failed what=%r code=%s details=%r", what, exc.code.name, exc.details
            )
        else:
            last_error = None
            if settled(value):
                return Polled(value, timed_out=False)
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            return Polled(value, timed_out=True, last_error=last_error)
        if clock.wait(min(pause, remaining), stop):
            raise PollStopped(what)
        pause = min(pause * 2, interval_s)


def wait_for_backup(
    client: BackupLister,
    ack: BackupAck,
    timeout_s: float,
    poll_interval_s: float = 5.0,
    *,
    every_node: bool = False,
    known: tuple[NodeStatus, ...] = (),
    clock: Clock = SYSTEM_CLOCK,
    stop: threading.Event | None = None,
    retry_errors: bool = True,
) -> BackupOutcome:
    """Poll until every node is COMPLETED, any node FAILED (with `every_node`: until every
    node is COMPLETED or FAILED), or timeout_s has passed. `known` is what an earlier wait
    saw, kept should no answer come. Setting `stop` ends the wait with PollStopped; without
    `retry_errors`, the first failed call ends it with what was seen until then."""
    polled = poll(
        lambda: _latest_statuses(ack, client.list_backups(snapshot_id=ack.snapshot_id)),
        lambda nodes: _is_settled(nodes, every_node),
        known or tuple(NodeStatus(ip, OperationStatus.UNKNOWN) for ip in ack.target_ips),
        timeout_s,
        poll_interval_s,
        f"backup {ack.snapshot_id}",
        clock=clock,
        stop=stop,
        retry_errors=retry_errors,
    )
    if polled.timed_out:
        logger.warning(
            "backup wait timed out snapshot_id=%s pending=%s",
            ack.snapshot_id,
            ",".join(n.target_ip for n in polled.value if not n.status.is_final),
        )
    return BackupOutcome(ack, polled.value, polled.timed_out, polled.last_error)
