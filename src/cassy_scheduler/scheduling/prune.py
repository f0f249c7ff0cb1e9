"""A prune: what a job's retention policy keeps of its backups, and deleting the rest.

The server says what it holds (the built-in server's Backups service: every node's row with
its size, and deletions begun), retention/policy.py decides, and each chain to go is deleted
through the server, which removes its manifests first. The daemon runs one after each
successful backup of a job with a policy, recorded in the history as the job `NAME:prune`
(a name no job can have) and told to the job's notify targets like any run.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
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
from cassy_scheduler.scheduling.locks import (
    LockBusyError,
    LockError,
    LockTimeoutError,
    LockWaitStoppedError,
    RunLocks,
)
from cassy_scheduler.scheduling.resolve import ClusterDirectory, ResolveError, resolve_cluster
from cassy_scheduler.scheduling.runner import safely

_log = logging.getLogger(__name__)


#: A deletion lists and deletes every object of a snapshot, more than one call's usual
#: deadline allows on a large one (yet short enough for a stopping scheduler to wait for);
#: the server finishes it even if the caller gave up, and the next prune sees it done.
DELETE_DEADLINE_S = 300.0
#: Describing reads a manifest for each completed backup whose size is not recorded yet.
DESCRIBE_DEADLINE_S = 120.0
#: Deletions in flight at once: each waits on the store's round trips far more than on CPU.
DELETE_WORKERS = 4


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
    """A job's chains, each with its decision, newest first, and the rows they came from."""

    job: JobConfig
    cluster_id: str
    decisions: tuple[Decision, ...]
    rows: tuple[StoredBackup, ...] = ()

    @property
    def doomed(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.verdict is Verdict.DELETE)

    @property
    def bytes_to_free(self) -> int:
        return sum(d.chain.stored_bytes or 0 for d in self.doomed)


@dataclass(frozen=True)
class PruneDone:
    """What a prune deleted, and what it could not (each with the server's words)."""

    plan: PrunePlan
    deleted: tuple[tuple[str, DeleteResult], ...]
    failed: tuple[tuple[str, str], ...]
    gone: frozenset[str] = frozenset()  # the snapshot ids deleted whole
    unreachable: bool = False  # the server stopped answering on the way

    @property
    def bytes_freed(self) -> int:
        return sum(result.bytes for _, result in self.deleted)

    @property
    def bytes_left(self) -> int:
        """What the job's backups hold now, by the sizes DescribeBackups gave (the objects'
        own, so it compares with itself from one prune to the next)."""
        kept = (d for d in self.plan.decisions if d.chain.snapshot_id not in self.gone)
        return sum(d.chain.stored_bytes or 0 for d in kept)

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
    snapshots: dict[str, tuple[int, list[StoredBackup]]] = {}  # one per id, all its rows
    incrementals: dict[str, list[tuple[int, list[StoredBackup]]]] = defaultdict(list)
    for (snapshot_id, created_ms), members in groups.items():
        kind = members[0].backup_type
        if kind is BackupType.NODE_INCREMENTAL:
            incrementals[snapshot_id].append((created_ms, members))
        elif kind is backup_type:  # an id twice (an import beside our rows): judged as one
            earlier, rows_before = snapshots.get(snapshot_id, (created_ms, []))
            snapshots[snapshot_id] = (min(earlier, created_ms), [*rows_before, *members])
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


def plan_prune(
    client: PruneClient, job: JobConfig, now: datetime, others: Sequence[JobConfig] = ()
) -> PrunePlan:
    """Ask the server what the job's cluster holds and decide; deletes nothing, registers
    nothing.

    The server does not say which job took a backup, so a policy applies to every backup of
    its kind on its cluster (manual runs and imported ones too). Of `others` (the config's
    jobs), one taking the same kind of backup of the same cluster keeps what its own rules
    keep, and one without rules keeps everything: two jobs never prune each other's."""
    if job.retention is None:
        raise ValueError(f"job {job.name} has no retention policy")
    cluster = _cluster_of(client, job)
    rows = client.describe_backups(cluster, timeout_s=DESCRIBE_DEADLINE_S)
    chains, extended = chains_of(rows, job.type.backup_type)
    decisions = decide(
        chains, job.retention, now=now, zone=job.schedule.timezone, extended=extended
    )
    for other in others:
        if other.name == job.name or other.type is not job.type:
            continue
        rules = other.retention
        try:
            shares = _cluster_of(client, other) == cluster
            why = f"job {other.name} takes these backups too and has no keep_* rule"
        except ResolveError:
            # Not registered, so none of these is its, unless it names a host by a name
            # that could not be looked up now: then it might be this very cluster.
            shares = _named_host(other)
            why = f"job {other.name}'s cluster could not be resolved now: it may be this one"
            rules = None
        if not shares:
            continue
        if rules is None:
            keeps = {c.snapshot_id for c in chains if c.state is State.GOOD}
        else:
            theirs = decide(chains, rules, now=now, zone=other.schedule.timezone, extended=extended)
            keeps = {d.chain.snapshot_id for d in theirs if d.verdict is Verdict.KEEP}
            why = f"job {other.name}'s rules keep it"
        decisions = [
            replace(d, verdict=Verdict.KEEP, reasons=(why,))
            if d.verdict is Verdict.DELETE and d.chain.snapshot_id in keeps
            else d
            for d in decisions
        ]
    return PrunePlan(job, cluster, tuple(decisions), tuple(rows))


def _named_host(job: JobConfig) -> bool:
    """The job names its cluster by a host name (looked up in DNS), not an address."""
    host = job.cluster.cassandra_host
    if host is None:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def _cluster_of(client: PruneClient, job: JobConfig) -> str:
    return resolve_cluster(
        client, replace(job.cluster, register_if_missing=False)
    ).cluster.cluster_id


def carry_out(
    client: PruneClient,
    plan: PrunePlan,
    stop: threading.Event | None = None,
    workers: int = DELETE_WORKERS,
) -> PruneDone:
    """Delete what the plan dooms, oldest first, `workers` deletions at a time (each one
    call, a chain or a failed incremental's record; the server checks each on its own); a
    refusal of one is noted and the others go on, but once the server is unreachable, or
    the scheduler stops, the rest are noted as not tried. Failed incrementals of kept
    chains lose their records."""
    work: list[tuple[str, str, int]] = []
    for decision in reversed(plan.decisions):
        sid = decision.chain.snapshot_id
        if decision.verdict is Verdict.DELETE:
            work.append((f"snapshot {sid}", sid, 0))
        for incremental in decision.incrementals:
            created_ms = epoch_ms(incremental.created_at)
            work.append((f"incremental {sid}@{created_ms}", sid, created_ms))
    halted: list[str] = []  # why the rest is not tried; set once, read by every worker
    unreachable: list[bool] = []

    def delete(item: tuple[str, str, int]) -> DeleteResult | str:
        what, sid, created_ms = item
        if stop is not None and stop.is_set():
            halted.append("the scheduler stopped before deleting it")
        if halted:
            return halted[0]
        try:
            result = client.delete_backup(
                plan.cluster_id, sid, created_ms, timeout_s=DELETE_DEADLINE_S
            )
        except CassyError as exc:
            _log.warning("prune could not delete job=%s %s error=%r", plan.job.name, what, str(exc))
            if exc.is_transient:
                unreachable.append(True)
                halted.append(f"not tried: the server became unreachable ({exc.code.name})")
            return exc.details or str(exc)
        except Exception as exc:  # a bug: what the others did must still be told
            _log.exception("prune deletion crashed job=%s %s", plan.job.name, what)
            halted.append("not tried after an internal error")
            return f"internal error: {exc!r}"
        _log.info(
            "pruned job=%s cluster_id=%s %s objects=%d bytes=%d",
            plan.job.name,
            plan.cluster_id,
            what,
            result.objects,
            result.bytes,
        )
        return result

    # One snapshot's deletions one after another (the server takes one at a time of each),
    # different snapshots side by side.
    by_snapshot: dict[str, list[int]] = {}
    for index, (_, sid, _) in enumerate(work):
        by_snapshot.setdefault(sid, []).append(index)
    outcomes: list[DeleteResult | str] = [""] * len(work)

    def delete_all(indexes: list[int]) -> None:
        for index in indexes:
            outcomes[index] = delete(work[index])

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="prune") as pool:
        list(pool.map(delete_all, by_snapshot.values()))
    pairs = list(zip(work, outcomes, strict=True))
    deleted = [(w[0], r) for w, r in pairs if not isinstance(r, str)]
    failed = [(w[0], r) for w, r in pairs if isinstance(r, str)]
    gone = frozenset(w[1] for w, r in pairs if not isinstance(r, str) and not w[2])
    return PruneDone(plan, tuple(deleted), tuple(failed), gone, bool(unreachable))


def _not_done(
    exc: LockError | ResolveError | CassyError, job: JobConfig, cluster_id: str | None
) -> tuple[Outcome, Failure, str]:
    """How a prune that could not start, or was cut off, ends."""
    if isinstance(exc, LockBusyError):
        return Outcome.SKIPPED, Failure.ALREADY_RUNNING, f"a prune of it is still running: {exc}"
    if isinstance(exc, LockTimeoutError):
        why = f"another run kept cluster {cluster_id} busy for the whole wait_timeout: {exc}"
        return Outcome.SKIPPED, Failure.CLUSTER_BUSY, why
    if isinstance(exc, LockWaitStoppedError):
        return Outcome.INTERRUPTED, Failure.STOPPED, "the scheduler stopped"
    if isinstance(exc, LockError):
        return Outcome.FAILED, Failure.LOCAL, str(exc)
    if isinstance(exc, ResolveError):
        return Outcome.FAILED, exc.failure, str(exc)
    failure = Failure.UNREACHABLE if exc.is_transient else Failure.REFUSED
    return Outcome.FAILED, failure, f"prune of {job.name} stopped: {exc}"


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
        jobs: Callable[[], Sequence[JobConfig]] = tuple,
        locks: RunLocks | None = None,
    ) -> None:
        self._client = client
        self._locks = locks
        self._jobs = jobs
        self._stored = stored
        self._history = history
        self._clock = clock
        self._observers = tuple(observers)
        self._adopt = adopt

    def _job_lock(self, name: str) -> AbstractContextManager[None]:
        return self._locks.job(name) if self._locks is not None else nullcontext()

    def _cluster_lock(
        self, cluster_id: str, job: JobConfig, name: str, stop: threading.Event | None
    ) -> AbstractContextManager[None]:
        """As a backup does: a prune and a backup of one cluster never overlap, whichever
        process (daemon, cron line, a person) started them."""
        if self._locks is None:
            return nullcontext()
        return self._locks.cluster(cluster_id, name, job.wait_timeout.total_seconds(), stop)

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
            client = self._client()
            with self._job_lock(as_run.name):
                cluster_id = _cluster_of(client, job)
                with self._cluster_lock(cluster_id, job, as_run.name, stop):
                    # decided as of now, not as of before the wait for the lock
                    plan = plan_prune(client, job, self._clock.now(), self._jobs())
                    done = carry_out(client, plan, stop)
            outcome, failure = Outcome.SUCCEEDED, None
            if done.failed:
                stopped = stop is not None and stop.is_set()
                outcome = Outcome.INTERRUPTED if stopped else Outcome.FAILED
                failure = (
                    Failure.STOPPED
                    if stopped
                    else Failure.UNREACHABLE
                    if done.unreachable
                    else Failure.NOT_DELETED
                )
            summary = done.summary()
            held = (job.name, plan.cluster_id, done.bytes_left)
            safely(lambda told: self._stored(*told), held)
            error = summary if done.failed else None
            _log.info("prune finished job=%s %s", job.name, done.summary())
        except (LockError, ResolveError, CassyError) as exc:
            outcome, failure, error = _not_done(exc, job, cluster_id)
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
