"""What became of the backups of runs a stopped scheduler left interrupted.

A scheduler stopped (or killed) while it waited leaves its run "interrupted", but the server
goes on and may finish the backup. At start the daemon looks each such request up, by the
snapshot id and created_at its answer carried or, when the answer never arrived, as a lost
answer is looked up (outcome.find_accepted_backup), waits within the job's wait_timeout for
what still runs, and records the server's outcome beside "interrupted", with every node.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import timedelta

from cassy_scheduler.client import BackupAck, CassyError
from cassy_scheduler.clock import Clock
from cassy_scheduler.history import HistoryError, RunHistory
from cassy_scheduler.outcome import (
    BackupOutcome,
    PollStopped,
    find_accepted_backup,
    find_refused_backup,
    wait_for_backup,
)
from cassy_scheduler.protocol.types import NodeStatus, OperationStatus
from cassy_scheduler.records import BackupRequest
from cassy_scheduler.scheduling.runner import BackupService

_log = logging.getLogger(__name__)

NEVER_ACCEPTED = "the server holds no such request: it never started"
_DEFAULT_WAIT = timedelta(hours=2)


def describe(outcome: BackupOutcome) -> str:
    """What the server did, in words for the history ("COMPLETED on every node")."""
    if outcome.succeeded:
        return "COMPLETED on every node"
    failed = outcome.failed_nodes
    if failed:
        return f"FAILED on {', '.join(failed)}"
    pending = ", ".join(outcome.pending_nodes) or "every node"
    return f"still unfinished on {pending} when the daemon stopped looking"


def reconcile(
    history: RunHistory,
    client: BackupService,
    clock: Clock,
    stop: threading.Event,
    waits: Mapping[str, tuple[timedelta, timedelta]],
) -> int:
    """Settle every unsettled request of an interrupted run; returns how many were settled.

    `waits` gives each job's (wait_timeout, poll_interval) by name.
    """
    settled = 0
    for request in history.unsettled_requests():
        if stop.is_set():
            break
        job = history.get_run(request.run_id).job_name
        wait, poll = waits.get(job, (_DEFAULT_WAIT, timedelta(seconds=10)))
        try:
            if _settle(history, client, clock, stop, request, wait, poll):
                settled += 1
        except (CassyError, HistoryError) as exc:
            _log.warning("interrupted run not settled run_id=%d error=%r", request.run_id, str(exc))
    return settled


def _settle(  # noqa: PLR0917 (collaborators)
    history: RunHistory,
    client: BackupService,
    clock: Clock,
    stop: threading.Event,
    request: BackupRequest,
    wait: timedelta,
    poll: timedelta,
) -> bool:
    ack, refused = _ack_of(client, request)
    if ack is None:
        words = NEVER_ACCEPTED if refused is None else describe(refused)
        history.settle(
            request,
            words,
            snapshot_id=None if refused is None else refused.ack.snapshot_id,
            created_ms=None if refused is None else refused.ack.created_at_ms,
            nodes=() if refused is None else _nodes(refused),
        )
        _log.info("interrupted run settled run_id=%d outcome=%r", request.run_id, words)
        return True

    try:
        outcome = wait_for_backup(
            client,
            ack,
            timeout_s=wait.total_seconds(),
            poll_interval_s=poll.total_seconds(),
            clock=clock,
            stop=stop,
        )
    except PollStopped:
        return False  # the daemon stops: its next start looks again
    words = describe(outcome)
    history.settle(
        request,
        words,
        snapshot_id=ack.snapshot_id,
        created_ms=ack.created_at_ms,
        nodes=_nodes(outcome),
    )
    _log.warning(
        "interrupted run settled run_id=%d snapshot_id=%s outcome=%r",
        request.run_id,
        ack.snapshot_id,
        words,
    )
    return True


def _nodes(outcome: BackupOutcome) -> list[NodeStatus]:
    return [NodeStatus(n.target_ip, n.status, n.reason) for n in outcome.nodes]


def _ack_of(
    client: BackupService, request: BackupRequest
) -> tuple[BackupAck | None, BackupOutcome | None]:
    """The request as the server holds it: by its answer, else by a lost answer's lookup;
    with neither, the rows of a refusal the server recorded, if any."""
    if request.snapshot_id is not None and request.created_ms is not None:
        rows = client.list_backups(snapshot_id=request.snapshot_id)
        mine = [r for r in rows if r.created_at_ms == request.created_ms]
        if not mine:
            return None, None
        ack = BackupAck(
            OperationStatus.STARTED,
            request.cluster_id,
            tuple(sorted(r.target_ip for r in mine)),
            request.snapshot_id,
            mine[0].created_at,
            request.created_ms,
            request.backup_type,
        )
        return ack, None
    clusters = client.list_clusters(cluster_id=request.cluster_id)
    targets = clusters[0].target_ips if clusters else ()
    facts = (request.cluster_id, request.backup_type, request.base_snapshot_id, request.after_ms)
    accepted = find_accepted_backup(client, *facts, targets)
    if accepted is not None:
        return accepted, None
    return None, find_refused_backup(client, *facts, targets)
