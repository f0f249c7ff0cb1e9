"""What became of the backups of runs a stopped scheduler left interrupted.

A scheduler stopped (or killed) while it waited leaves its run "interrupted", but the server
goes on and may finish the backup. At start the daemon looks each such request up, before it
fires any run of its own: by the snapshot id and created_at its answer carried or, when the
answer never arrived, as a lost answer is looked up (outcome.accepted_candidates), leaving out
requests other runs were answered for and those newer than the run. It then waits, within
the job's wait_timeout, for what still runs, and records the server's outcome beside
"interrupted", with every node. A lookup that cannot tell which request was the run's says
so; it never guesses.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from cassy_scheduler.client import BackupAck, CassyError
from cassy_scheduler.clock import Clock, epoch_ms
from cassy_scheduler.history import HistoryError, RunHistory
from cassy_scheduler.outcome import (
    BackupOutcome,
    PollStopped,
    accepted_candidates,
    find_refused_backup,
    wait_for_backup,
)
from cassy_scheduler.protocol.types import NodeStatus, OperationStatus
from cassy_scheduler.records import BackupRequest
from cassy_scheduler.scheduling.runner import BackupService

_log = logging.getLogger(__name__)

NEVER_ACCEPTED = "the server holds no such request: it never started"
UNREGISTERED = "cannot tell: the cluster is no longer registered on the server"
_DEFAULT_WAIT = timedelta(hours=2)
# How far the server's clock may run ahead of the scheduler's: a request cannot have been
# created later than this after its run was interrupted.
_CLOCK_SKEW_MS = 60_000


def untold(count: int) -> str:
    return (
        f"cannot tell: {count} requests of this kind reached the server meanwhile, and which "
        "one was this run's is unknown"
    )


def rows_gone(snapshot_id: str) -> str:
    return f"the server no longer holds the rows of snapshot {snapshot_id}"


def describe(outcome: BackupOutcome) -> str:
    """What the server did, in words for the history ("COMPLETED on every node")."""
    if outcome.succeeded:
        return "COMPLETED on every node"
    failed = outcome.failed_nodes
    if failed:
        return f"FAILED on {', '.join(failed)}"
    pending = ", ".join(outcome.pending_nodes) or "every node"
    return f"still unfinished on {pending} when the daemon stopped looking"


@dataclass(frozen=True)
class Found:
    """One interrupted request as the server holds it: a backup to wait for (`ack`), or
    what to record at once (`words`, with the rows of a refusal when there were any)."""

    request: BackupRequest
    job_name: str
    ack: BackupAck | None = None
    words: str = ""
    refused: BackupOutcome | None = None


def look_up(history: RunHistory, client: BackupService) -> list[Found]:
    """Every unsettled request looked up; quick, and meant to run before the daemon fires,
    so that no run of its own can be taken for an interrupted one. A server that cannot be
    asked ends the lookups: the next start asks again."""
    found = []
    for request in history.unsettled_requests():
        run = history.get_run(request.run_id)
        before_ms = None if run.finished_at is None else epoch_ms(run.finished_at)
        try:
            found.append(_look_up(history, client, request, run.job_name, before_ms))
        except CassyError as exc:
            _log.warning(
                "interrupted runs not looked up now run_id=%d error=%r", request.run_id, str(exc)
            )
            break
    return found


def settle_found(  # noqa: PLR0917 (collaborators)
    history: RunHistory,
    client: BackupService,
    clock: Clock,
    stop: threading.Event,
    found: Sequence[Found],
    waits: Mapping[str, tuple[timedelta, timedelta]],
) -> int:
    """Record what each request became, waiting for those still running; returns how many
    were settled. `waits` gives each job's (wait_timeout, poll_interval) by name."""
    settled = 0
    for item in found:
        if stop.is_set():
            break
        wait, poll = waits.get(item.job_name, (_DEFAULT_WAIT, timedelta(seconds=10)))
        try:
            if _settle(history, client, clock, stop, item, wait, poll):
                settled += 1
        except (CassyError, HistoryError) as exc:
            _log.warning(
                "interrupted run not settled run_id=%d error=%r", item.request.run_id, str(exc)
            )
    return settled


def reconcile(
    history: RunHistory,
    client: BackupService,
    clock: Clock,
    stop: threading.Event,
    waits: Mapping[str, tuple[timedelta, timedelta]],
) -> int:
    """Look every unsettled request up, then settle them; returns how many were settled."""
    return settle_found(history, client, clock, stop, look_up(history, client), waits)


def _settle(  # noqa: PLR0917 (collaborators)
    history: RunHistory,
    client: BackupService,
    clock: Clock,
    stop: threading.Event,
    item: Found,
    wait: timedelta,
    poll: timedelta,
) -> bool:
    request, ack = item.request, item.ack
    if ack is None:
        refused = item.refused
        history.settle(
            request,
            item.words,
            snapshot_id=None if refused is None else refused.ack.snapshot_id,
            created_ms=None if refused is None else refused.ack.created_at_ms,
            nodes=() if refused is None else _nodes(refused),
        )
        _log.info("interrupted run settled run_id=%d outcome=%r", request.run_id, item.words)
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


def _look_up(
    history: RunHistory,
    client: BackupService,
    request: BackupRequest,
    job_name: str,
    before_ms: int | None,
) -> Found:
    """The request as the server holds it: by its answer, else by a lost answer's lookup;
    with neither, the rows of a refusal the server recorded, if any."""
    if request.snapshot_id is not None and request.created_ms is not None:
        rows = client.list_backups(snapshot_id=request.snapshot_id)
        mine = [r for r in rows if r.created_at_ms == request.created_ms]
        if not mine:
            return Found(request, job_name, words=rows_gone(request.snapshot_id))
        ack = BackupAck(
            OperationStatus.STARTED,
            request.cluster_id,
            tuple(sorted(r.target_ip for r in mine)),
            request.snapshot_id,
            mine[0].created_at,
            request.created_ms,
            request.backup_type,
        )
        return Found(request, job_name, ack=ack)
    clusters = client.list_clusters(cluster_id=request.cluster_id)
    if not clusters:
        return Found(request, job_name, words=UNREGISTERED)
    targets = clusters[0].target_ips
    facts = (request.cluster_id, request.backup_type, request.base_snapshot_id, request.after_ms)
    bound = None if before_ms is None else before_ms + _CLOCK_SKEW_MS
    others = history.answered_requests(request.cluster_id)
    candidates = [
        ack
        for ack in accepted_candidates(client, *facts, targets, before_ms=bound)
        if (ack.snapshot_id, ack.created_at_ms) not in others
    ]
    if len(candidates) == 1:
        return Found(request, job_name, ack=candidates[0])
    if candidates:
        return Found(request, job_name, words=untold(len(candidates)))
    refused = find_refused_backup(client, *facts, targets, before_ms=bound)
    if refused is not None:
        return Found(request, job_name, words=describe(refused), refused=refused)
    return Found(request, job_name, words=NEVER_ACCEPTED)
