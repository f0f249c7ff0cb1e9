"""A prune: what a job's retention policy keeps of its backups, and deleting the rest.

The server says what it holds (the built-in server's Backups service: every node's row with
its size, and deletions begun), retention/policy.py decides, and each chain to go is deleted
through the server, which removes its manifests first. The daemon runs one after each
successful backup of a job with a policy, recorded in the history as the job `NAME:prune`
(a name no job can have) and told to the job's notify targets like any run.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cassy_scheduler.client import (
    CassyError,
    DeleteResult,
    StoredBackup,
    datetime_from_ms,
)
from cassy_scheduler.clock import Clock, epoch_ms
from cassy_scheduler.config.model import JobConfig, prune_run
from cassy_scheduler.configfile.sizes import format_size
from cassy_scheduler.history import RunHistory
from cassy_scheduler.jobtype import JobType
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.records import Failure, Outcome, RunObserver, RunResult, RunStart
from cassy_scheduler.retention.policy import (
    Chain,
    Decision,
    Incremental,
    State,
    Verdict,
    decide,
)
from cassy_scheduler.scheduling.resolve import ClusterDirectory, ResolveError, resolve_cluster
from cassy_scheduler.scheduling.runner import safely

_log = logging.getLogger(__name__)


class PruneClient(ClusterDirectory, Protocol):
    """The calls a prune makes: CassyClient, or a fake in tests."""

    def describe_backups(
        self, cluster_id: str, *, timeout_s: float | None = None
    ) -> list[StoredBackup]: ...

    def delete_backup(
        self,
        cluster_id: str,
        snapshot_id: str,
        created_at_ms: int = 0,
        *,
        dry_run: bool = False,
        timeout_s: float | None = None,
    ) -> DeleteResult: ...


@dataclass(frozen=True)
class PrunePlan:
    """A job's chains, each with its decision, newest first."""

    job: JobConfig
    cluster_id: str
    decisions: tuple[Decision, ...]

    @property
    def doomed(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.verdict is Verdict.DELETE)

    @property
    def bytes_to_free(self) -> int:
        return sum(d.chain.stored_bytes or 0 for d in self.doomed)

    @property
    def bytes_stored(self) -> int:
        return sum(d.chain.stored_bytes or 0 for d in self.decisions)


@dataclass(frozen=True)
class PruneDone:
    """What a prune deleted, and what it could not (each with the server's words)."""

    plan: PrunePlan
    deleted: tuple[tuple[str, DeleteResult], ...]
    failed: tuple[tuple[str, str], ...]

    @property
    def bytes_freed(self) -> int:
        return sum(result.bytes for _, result in self.deleted)

    def summary(self) -> str:
        kept = sum(1 for d in self.plan.decisions if d.verdict is Verdict.KEEP)
        text = (
            f"{kept} kept, {len(self.deleted)} deleted ({format_size(self.bytes_freed)} freed)"
            f" of {len(self.plan.decisions)} backups"
        )
        if self.failed:
            shown = "; ".join(f"{what}: {why}" for what, why in self.failed[:3])
            more = len(self.failed) - 3
            text += f"; {len(self.failed)} not deleted: {shown}"
            text += f"; and {more} more (the log names each)" if more > 0 else ""
        return text


def chains_of(
    rows: Iterable[StoredBackup], backup_type: BackupType
) -> tuple[list[Chain], str | None]:
    """The chains of snapshots of `backup_type`, and the snapshot id the cluster's newest
    incremental extends (None without one). A backup is good only when every node of it
    COMPLETED and no deletion of it began."""
    groups: dict[tuple[str, int], list[StoredBackup]] = defaultdict(list)
    for row in rows:
        groups[(row.snapshot_id, row.created_at_ms)].append(row)
    in_restore = {
        row.snapshot_id for members in groups.values() for row in members if row.restoring
    }
    snapshots: dict[str, tuple[int, list[StoredBackup]]] = {}
    incrementals: dict[str, list[tuple[int, list[StoredBackup]]]] = defaultdict(list)
    for (snapshot_id, created_ms), members in groups.items():
        kind = members[0].backup_type
        if kind is BackupType.NODE_INCREMENTAL:
            incrementals[snapshot_id].append((created_ms, members))
        elif kind is backup_type:
            snapshots[snapshot_id] = (created_ms, members)
    newest = max(
        ((ms, sid) for sid, items in incrementals.items() for ms, _ in items), default=None
    )
    chains = []
    for snapshot_id, (created_ms, members) in snapshots.items():
        extensions = incrementals.get(snapshot_id, [])
        everything = [*members, *(row for _, rows in extensions for row in rows)]
        chains.append(
            Chain(
                snapshot_id=snapshot_id,
                created_at=datetime_from_ms(created_ms),
                state=_state(members),
                incrementals=tuple(
                    Incremental(datetime_from_ms(ms), _state(rows))
                    for ms, rows in sorted(extensions, key=lambda item: item[0])
                ),
                restoring=snapshot_id in in_restore,
                stored_bytes=_known_bytes(everything),
            )
        )
    return chains, (newest[1] if newest else None)


def _known_bytes(rows: Sequence[StoredBackup]) -> int | None:
    """What the rows hold as far as the server knows (None: it knows of none, as for a
    failed upload whose objects nobody counted)."""
    known = [row.bytes for row in rows if row.bytes is not None]
    return sum(known) if known else None


def _state(rows: Sequence[StoredBackup]) -> State:
    if any(row.deleting for row in rows):
        return State.DELETING
    if any(not row.status.is_final for row in rows):
        return State.RUNNING
    if all(row.status is OperationStatus.COMPLETED for row in rows):
        return State.GOOD
    return State.INCOMPLETE


def plan_prune(client: PruneClient, job: JobConfig, now: datetime) -> PrunePlan:
    """Ask the server what the job's cluster holds and decide; deletes nothing."""
    if job.retention is None:
        raise ValueError(f"job {job.name} has no retention policy")
    cluster = resolve_cluster(client, job.cluster).cluster
    rows = client.describe_backups(cluster.cluster_id)
    chains, extended = chains_of(rows, job.type.backup_type)
    decisions = decide(
        chains, job.retention, now=now, zone=job.schedule.timezone, extended=extended
    )
    return PrunePlan(job, cluster.cluster_id, tuple(decisions))


def carry_out(
    client: PruneClient, plan: PrunePlan, stop: threading.Event | None = None
) -> PruneDone:
    """Delete what the plan dooms, oldest first, one chain at a time; a refusal of one is
    noted and the others go on, but once the server is unreachable the rest are noted as
    not tried. Failed incrementals of kept chains lose their records."""
    deleted: list[tuple[str, DeleteResult]] = []
    failed: list[tuple[str, str]] = []
    work: list[tuple[str, str, int]] = []
    for decision in reversed(plan.decisions):
        sid = decision.chain.snapshot_id
        if decision.verdict is Verdict.DELETE:
            work.append((f"snapshot {sid}", sid, 0))
        for incremental in decision.incrementals:
            created_ms = epoch_ms(incremental.created_at)
            work.append((f"incremental {sid}@{created_ms}", sid, created_ms))
    skip: str | None = None
    for what, sid, created_ms in work:
        if stop is not None and stop.is_set():
            skip = "the scheduler stopped before deleting it"
        if skip is not None:
            failed.append((what, skip))
            continue
        try:
            result = client.delete_backup(plan.cluster_id, sid, created_ms)
        except CassyError as exc:
            _log.warning("prune could not delete job=%s %s error=%r", plan.job.name, what, str(exc))
            failed.append((what, exc.details or str(exc)))
            if exc.is_transient:
                skip = f"not tried: the server became unreachable ({exc.code.name})"
            continue
        _log.info(
            "pruned job=%s cluster_id=%s %s objects=%d bytes=%d",
            plan.job.name,
            plan.cluster_id,
            what,
            result.objects,
            result.bytes,
        )
        deleted.append((what, result))
    return PruneDone(plan, tuple(deleted), tuple(failed))


#: Told after each prune: the job, its cluster id, and the bytes its backups still hold.
StoredBytes = Callable[[str, str, int], None]


class Pruner:
    """Prunes a job and records it as a run of `NAME:prune`, told to the observers; `stored`
    hears what the job's backups hold afterwards (for the metrics)."""

    def __init__(
        self,
        client: Callable[[], PruneClient],
        history: RunHistory,
        clock: Clock,
        *,
        observers: Sequence[RunObserver] = (),
        adopt: Callable[[JobConfig], None] = lambda job: None,
        stored: StoredBytes = lambda job, cluster_id, held: None,
    ) -> None:
        self._client = client
        self._stored = stored
        self._history = history
        self._clock = clock
        self._observers = tuple(observers)
        self._adopt = adopt

    def prune(self, job: JobConfig, stop: threading.Event | None = None) -> RunResult:
        """Never raises for a failed prune: it ends FAILED, recorded and told."""
        return self.prune_and_report(job, stop)[0]

    def prune_and_report(
        self, job: JobConfig, stop: threading.Event | None = None
    ) -> tuple[RunResult, PruneDone | None]:
        """As `prune`, with what was decided and deleted (None: it stopped before)."""
        done: PruneDone | None = None
        as_run = prune_run(job)
        self._adopt(as_run)  # its notices go where the job's go
        now = self._clock.now()
        record = self._history.start_run(as_run.name, JobType.PRUNE.value, now)
        assert record.started_at is not None
        for observer in self._observers:
            safely(
                observer.run_started,
                RunStart(record.run_id, as_run.name, JobType.PRUNE, now, record.started_at),
            )
        cluster_id: str | None = None
        summary: str | None = None
        try:
            plan = plan_prune(self._client(), job, now)
            cluster_id = plan.cluster_id
            done = carry_out(self._client(), plan, stop)
            outcome = Outcome.FAILED if done.failed else Outcome.SUCCEEDED
            failure = Failure.NOT_DELETED if done.failed else None
            summary = done.summary()
            held = (job.name, plan.cluster_id, plan.bytes_stored - done.bytes_freed)
            safely(lambda told: self._stored(*told), held)
            error = summary if done.failed else None
            _log.info("prune finished job=%s %s", job.name, done.summary())
        except ResolveError as exc:
            outcome, failure, error = Outcome.FAILED, exc.failure, str(exc)
        except CassyError as exc:
            failure = Failure.UNREACHABLE if exc.is_transient else Failure.REFUSED
            outcome, error = Outcome.FAILED, f"prune of {job.name} stopped: {exc}"
        except Exception as exc:  # a bug must not leave the run open
            _log.exception("prune crashed job=%s", job.name)
            outcome, failure, error = Outcome.FAILED, Failure.LOCAL, f"internal error: {exc!r}"
        finished = self._history.finish_run(
            record.run_id, outcome, cluster_id=cluster_id, error=error
        )
        result = RunResult(
            job_name=as_run.name,
            job_type=JobType.PRUNE,
            scheduled_for=now,
            outcome=outcome,
            run_id=record.run_id,
            cluster_id=cluster_id,
            started_at=record.started_at,
            finished_at=finished.finished_at,
            error=error,
            failure=failure,
            attempts=1,
            summary=summary,
        )
        if outcome is not Outcome.SUCCEEDED:
            _log.warning("prune failed job=%s error=%r", job.name, error)
        for observer in self._observers:
            safely(observer.run_finished, result)
        return result, done
