"""What `check` verifies before anyone relies on the scheduler, as findings with a severity.

Severities are Nagios's, so a monitoring system can run `check` as is: the worst finding is
the exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Protocol

from cassy_scheduler.client import Caller, CassyError, Cluster, StoredBackup, datetime_from_ms
from cassy_scheduler.config.checks import check_config
from cassy_scheduler.config.model import JobConfig, SchedulerConfig, WhenNoSnapshot, prune_run
from cassy_scheduler.configfile.sizes import format_size
from cassy_scheduler.history import RunHistory
from cassy_scheduler.jobtype import JobType
from cassy_scheduler.notify.journal import NoticeJournal
from cassy_scheduler.notify.staleness import assess
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.records import Outcome
from cassy_scheduler.retention.policy import State, Verdict
from cassy_scheduler.scheduling.prune import PruneClient, plan_prune
from cassy_scheduler.scheduling.resolve import (
    UnknownClusterError,
    find_base_snapshot,
    resolve_cluster,
)
from cassy_scheduler.scheduling.runner import BackupService


class Severity(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(frozen=True)
class Finding:
    """One thing checked: what about, how bad, what was found and what to do."""

    severity: Severity
    subject: str
    message: str
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "severity": self.severity.name,
            "subject": self.subject,
            "message": self.message,
            "hint": self.hint,
        }


def worst(findings: Iterable[Finding]) -> Severity:
    return max((f.severity for f in findings), default=Severity.OK)


class CheckedServer(BackupService, PruneClient, Protocol):
    """What `check` asks of a server beyond a run's calls (and, for jobs with keep_* rules,
    what the built-in server says it stores)."""

    def is_builtin_server(self) -> bool: ...

    def who_am_i(self) -> Caller: ...


def preflight(
    config: SchedulerConfig,
    client: CheckedServer,
    now: datetime,
    history: RunHistory | None = None,
    journal: NoticeJournal | None = None,
) -> list[Finding]:
    """Every finding about `config`: offline advice, the state directory, the server, jobs."""
    findings = [Finding(Severity.OK, "config", f"{config.path} loads: {len(config.jobs)} job(s)")]
    findings += [
        Finding(Severity.WARNING, p.field or "config", p.message, p.hint)
        for p in check_config(config, now)
    ]
    findings.append(_state_dir(config.runtime.state_dir))
    try:
        clusters = client.list_clusters()
    except CassyError as exc:
        findings.append(Finding(Severity.CRITICAL, "server", str(exc)))
        return findings
    findings.append(
        Finding(
            Severity.OK,
            "server",
            f"{config.server.address} answers; {len(clusters)} cluster(s) registered",
        )
    )
    if _is_builtin(client):
        findings += _access_findings(config, client)
    resolved: dict[str, Cluster] = {}
    for job in config.jobs:
        if job.enabled:
            findings += _job_findings(job, client, resolved)
            if job.retention is not None and job.name in resolved:
                findings += _retention_findings(job, client, now, history, config.jobs)
    mixed = _mixed_types(config.jobs, resolved)
    if mixed and not _is_builtin(client):
        findings += mixed
    if history is not None:
        findings += _recent_runs(config.jobs, history, journal, now)
    return findings


#: The built-in server's roles, each allowed all the ones below it may (server/access.py).
_ROLE_RANK = {"reader": 1, "operator": 2, "admin": 3}


def _access_findings(config: SchedulerConfig, client: CheckedServer) -> list[Finding]:
    """Whether the identity this config calls as may do what its jobs do: back up needs
    operator, a job's retention (which deletes) admin."""
    try:
        caller = client.who_am_i()
    except CassyError as exc:
        return [Finding(Severity.CRITICAL, "access", str(exc))]
    if not caller.access_control:
        return [Finding(Severity.OK, "access", "the server has no access control")]
    needs = [
        (job.name, "admin", "its retention deletes backups")
        if job.retention is not None
        else (job.name, "operator", "it takes backups")
        for job in config.jobs
        if job.enabled
    ]
    have = _ROLE_RANK.get(caller.role, 0)
    short = [(name, role, why) for name, role, why in needs if _ROLE_RANK[role] > have]
    if not short:
        return [
            Finding(
                Severity.OK,
                "access",
                f"calls as identity {caller.identity!r} (role {caller.role})",
            )
        ]
    return [
        Finding(
            Severity.CRITICAL,
            f"job {name}",
            f"needs the {role} role ({why}); identity {caller.identity!r} has {caller.role}",
            f"give {caller.identity!r} the {role} role in the server's [access.identities], "
            "or set [server] token_file to the token of an identity that has it",
        )
        for name, role, why in short
    ]


def _is_builtin(client: CheckedServer) -> bool:
    """Unreachable counts as Scalar's Cassy here: its rules are the stricter ones."""
    try:
        return client.is_builtin_server()
    except CassyError:
        return False


def _state_dir(path: Path) -> Finding:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if os.access(existing, os.W_OK | os.X_OK):
        return Finding(Severity.OK, "state_dir", f"{path.resolve()} is writable")
    return Finding(
        Severity.CRITICAL,
        "state_dir",
        f"{path.resolve()} is not writable by this user, so runs cannot be recorded or locked",
        "create it for the scheduler's user, or set [scheduler] state_dir",
    )


def _job_findings(
    job: JobConfig, client: BackupService, resolved: dict[str, Cluster]
) -> list[Finding]:
    subject = f"jobs.{job.name}"
    lookup = dataclasses.replace(job.cluster, register_if_missing=False)
    try:
        cluster = resolve_cluster(client, lookup).cluster
    except UnknownClusterError as exc:
        if job.cluster.register_if_missing:
            return [
                Finding(
                    Severity.WARNING,
                    subject,
                    f"{exc.message}; it will be registered at the first run",
                    f"register it now with `cassy-scheduler register {job.cluster.value}`",
                )
            ]
        return [Finding(Severity.CRITICAL, subject, exc.message, exc.hint)]
    except CassyError as exc:
        return [Finding(Severity.CRITICAL, subject, f"cannot resolve {job.cluster}: {exc}")]
    resolved[job.name] = cluster
    found = [
        Finding(Severity.OK, subject, f"{job.cluster} is cluster {cluster.cluster_id}"),
    ]
    if job.type is not JobType.INCREMENTAL:
        return found
    try:
        base = find_base_snapshot(client, cluster)
    except CassyError as exc:
        return [*found, Finding(Severity.CRITICAL, subject, f"cannot list backups: {exc}")]
    if base is not None:
        found.append(
            Finding(
                Severity.OK,
                subject,
                f"incrementals extend snapshot {base.snapshot_id} of "
                f"{base.created_at:%Y-%m-%d %H:%M:%S}Z",
            )
        )
    elif job.when_no_snapshot is WhenNoSnapshot.TAKE_SNAPSHOT:
        found.append(
            Finding(
                Severity.WARNING,
                subject,
                f"cluster {cluster.cluster_id} has no completed node snapshot; the next run "
                "takes one first",
            )
        )
    else:
        found.append(
            Finding(
                Severity.CRITICAL,
                subject,
                f"cluster {cluster.cluster_id} has no completed node snapshot, so this "
                "incremental job will fail",
                "take one with `cassy-scheduler backup snapshot`, or set "
                'when_no_snapshot = "take-snapshot"',
            )
        )
    return found


def _retention_findings(
    job: JobConfig,
    client: CheckedServer,
    now: datetime,
    history: RunHistory | None,
    config_jobs: Sequence[JobConfig],
) -> list[Finding]:
    """What the job's policy keeps now, and the signs that storage grows faster than the
    policy explains: prunes that stopped, or incrementals that outgrow their snapshot."""
    subject = f"jobs.{job.name}"
    try:
        if not client.is_builtin_server():
            return [
                Finding(
                    Severity.WARNING,
                    subject,
                    "the job has keep_* rules, but the server is Scalar's Cassy, which has no "
                    "call to delete a backup: the daemon's prunes of it will fail",
                    "point [server] at `cassy-scheduler serve`, or prune from cron with "
                    "`cassy-scheduler prune --storage URI` (docs/retention.md)",
                )
            ]
        plan = plan_prune(client, job, now, config_jobs)
    except CassyError as exc:
        return [Finding(Severity.CRITICAL, subject, f"cannot describe its backups: {exc}")]
    assert job.retention is not None
    kept = [d for d in plan.decisions if d.verdict is Verdict.KEEP]
    stored = sum(d.chain.stored_bytes or 0 for d in plan.decisions)
    findings = [
        Finding(
            Severity.OK,
            subject,
            f"{job.retention.describe()}: keeps {len(kept)} of {len(plan.decisions)} backups, "
            f"{format_size(stored)} stored",
        )
    ]
    good = [d.chain.created_at for d in plan.decisions if d.chain.state is State.GOOD]
    last_prune = history.last_success(prune_run(job).name) if history is not None else None
    pruned_at = last_prune.finished_at if last_prune is not None else None
    if plan.doomed and good and (pruned_at is None or pruned_at < max(good)):
        findings.append(
            Finding(
                Severity.WARNING,
                subject,
                f"{len(plan.doomed)} backup(s) ({format_size(plan.bytes_to_free)}) that no rule "
                "keeps are still stored, and no prune succeeded since the newest backup of "
                f"{max(good):%Y-%m-%d %H:%M}Z",
                f"see `cassy-scheduler history --job {prune_run(job).name}`, or run "
                f"`cassy-scheduler prune -c {job.source.file}`",
            )
        )
    findings += _incremental_growth(job, plan.rows)
    return findings


def _incremental_growth(job: JobConfig, rows: Iterable[StoredBackup]) -> list[Finding]:
    """Incrementals live as long as the snapshot they extend: when those of the newest
    chain hold more than the snapshot itself, only a new snapshot lets a prune free them."""
    snapshot_bytes: dict[str, int] = defaultdict(int)
    incremental_bytes: dict[str, int] = defaultdict(int)
    taken: dict[str, int] = {}
    for row in rows:
        if row.backup_type is BackupType.NODE_INCREMENTAL:
            incremental_bytes[row.snapshot_id] += row.bytes or 0
        elif row.backup_type is job.type.backup_type:
            snapshot_bytes[row.snapshot_id] += row.bytes or 0
            taken[row.snapshot_id] = row.created_at_ms
    if not taken:
        return []
    newest = max(taken, key=lambda sid: taken[sid])
    extra, base = incremental_bytes.get(newest, 0), snapshot_bytes[newest]
    if not base or extra <= base:
        return []
    return [
        Finding(
            Severity.WARNING,
            f"jobs.{job.name}",
            f"the incrementals since snapshot {newest} of "
            f"{datetime_from_ms(taken[newest]):%Y-%m-%d %H:%M}Z hold {format_size(extra)}, more "
            f"than the snapshot itself ({format_size(base)}); they are kept as long as it is",
            "take snapshots more often, so a prune can free the incrementals of older ones",
        )
    ]


def _mixed_types(jobs: Iterable[JobConfig], resolved: dict[str, Cluster]) -> list[Finding]:
    """The seed's rule for Scalar's Cassy: one cluster id takes cluster-wide or incremental
    backups, not both. The built-in server keeps incremental files at a cluster-wide snapshot,
    so there the three kinds can share a cluster."""
    types: dict[str, dict[JobType, list[str]]] = defaultdict(lambda: defaultdict(list))
    for job in jobs:
        if job.name in resolved:
            types[resolved[job.name].cluster_id][job.type].append(job.name)
    return [
        Finding(
            Severity.CRITICAL,
            f"cluster {cluster_id}",
            f"cluster-wide job(s) {', '.join(by_type[JobType.CLUSTER_WIDE])} and incremental "
            f"job(s) {', '.join(by_type[JobType.INCREMENTAL])} back up the same cluster",
            "base incrementals on node snapshots, or back this cluster up cluster-wide only",
        )
        for cluster_id, by_type in types.items()
        if by_type[JobType.CLUSTER_WIDE] and by_type[JobType.INCREMENTAL]
    ]


def _staleness(
    job: JobConfig, history: RunHistory, journal: NoticeJournal | None, now: datetime
) -> list[Finding]:
    """The staleness watch's verdict, computed the same way, as a finding."""
    state = journal.stale_state(job.name) if journal is not None else None
    found = assess(job, history, now, state)
    if found is None:
        return []
    subject = f"jobs.{job.name}"
    if found.stale:
        return [
            Finding(
                Severity.CRITICAL,
                subject,
                f"STALE: {found.describe(now)}",
                f"see `cassy-scheduler history --job {job.name}`; is the scheduler running and "
                "the job enabled?",
            )
        ]
    return [Finding(Severity.OK, subject, f"fresh: {found.describe(now)}")]


def _recent_runs(
    jobs: Iterable[JobConfig], history: RunHistory, journal: NoticeJournal | None, now: datetime
) -> list[Finding]:
    findings: list[Finding] = []
    for job in jobs:
        findings.extend(_staleness(job, history, journal, now))  # disabled jobs go stale too
        if not job.enabled:
            continue
        subject = f"jobs.{job.name}"
        last = history.last_run(job.name)
        if last is not None and last.outcome in (Outcome.FAILED, Outcome.TIMED_OUT):
            findings.append(
                Finding(
                    Severity.WARNING,
                    subject,
                    f"the last run ({last.scheduled_for:%Y-%m-%d %H:%M}Z) "
                    f"{last.outcome.value}: {last.error or 'no detail'}",
                    f"see `cassy-scheduler history --job {job.name}`",
                )
            )
    return findings
