"""Which job a one-shot `backup` command runs, so system cron can keep its old lines.

`backup snapshot --config FILE CLUSTER_ID` mirrors the seed scripts: the configured job of that
type on that cluster when there is one (so the daemon and cron share its lock, its history and
its place in `jobs`), else an ad-hoc job with the policies of the config's first job of that
type. A job names its cluster by id, by name or by a node; `resolve` tells which id a name or
a node means on the server now.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta

from cassy_scheduler.config.model import ClusterRef, JobConfig, SchedulerConfig, SourceLocation
from cassy_scheduler.jobtype import JobType
from cassy_scheduler.scheduling import SchedulingError
from cassy_scheduler.timetable import Schedule


class OneShotError(SchedulingError):
    """The command line does not say which job to run; the message says what to add."""


ClusterResolver = Callable[[ClusterRef], str | None]
"""The cluster id a job's cluster reference means now, None when it means none (or the
server cannot say)."""


def _unresolved(ref: ClusterRef) -> str | None:
    return None


def one_shot_job(
    config: SchedulerConfig,
    kind: JobType,
    cluster_id: str | None = None,
    job_name: str | None = None,
    resolve: ClusterResolver = _unresolved,
) -> JobConfig:
    """The job a one-shot backup of `kind` runs."""
    if job_name is not None:
        try:
            job = config.job(job_name)
        except KeyError as exc:
            raise OneShotError(str(exc.args[0])) from None
        if job.type is not kind:
            raise OneShotError(
                f'job "{job_name}" is a {job.type} job, not {kind}; run '
                f"`cassy-scheduler backup {job.type} --job {job_name}`"
            )
        if cluster_id is not None and job.cluster.cluster_id not in (None, cluster_id):
            raise OneShotError(f'job "{job_name}" backs up {job.cluster}, not "{cluster_id}"')
        if cluster_id is not None and job.cluster.cluster_id is None:
            # Its rules are for its own cluster: another one given here is pruned by none.
            same = resolve(job.cluster) == cluster_id
            job = dataclasses.replace(job, cluster=ClusterRef(cluster_id=cluster_id))
            if not same:
                job = dataclasses.replace(job, retention=None, prune_schedule=None)
        return job
    same_type = [j for j in config.jobs if j.type is kind]
    if cluster_id is None:
        if len(same_type) == 1:
            return same_type[0]
        names = ", ".join(j.name for j in same_type)
        raise OneShotError(
            f"{config.path} has {len(same_type)} {kind} job(s)"
            + (f" ({names})" if names else "")
            + "; give the CLUSTER_ID to back up, or --job NAME"
        )
    for job in same_type:
        if job.cluster.cluster_id == cluster_id:
            return job
    for job in same_type:
        if job.cluster.cluster_id is None and resolve(job.cluster) == cluster_id:
            return dataclasses.replace(job, cluster=ClusterRef(cluster_id=cluster_id))
    template = same_type[0] if same_type else (config.jobs[0] if config.jobs else None)
    cluster = ClusterRef(cluster_id=cluster_id)
    name = f"{kind.value}@{cluster_id}"
    if template is None:  # a file with no job of any kind: its [defaults] still apply
        return JobConfig(
            name=name,
            type=kind,
            cluster=cluster,
            schedule=Schedule.parse("@daily"),
            source=SourceLocation(str(config.path), None),
            **{**dict(config.job_defaults), "jitter": timedelta(0)},
        )
    # Made up for a cluster no job of this kind backs up: another job's rules do not apply.
    return dataclasses.replace(
        template,
        name=name,
        type=kind,
        cluster=cluster,
        jitter=timedelta(0),
        retention=None,
        prune_schedule=None,
    )
