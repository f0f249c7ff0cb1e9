"""Advice on a config that loads but may not do what its author wants; `check` reports these.

Unlike load errors these are not fatal: the scheduler can run such a config.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from itertools import pairwise

from cassy_scheduler.addresses import host_of, is_loopback
from cassy_scheduler.config.model import ClusterRef, JobConfig, SchedulerConfig, WhenNoSnapshot
from cassy_scheduler.configfile.errors import ConfigProblem
from cassy_scheduler.jobtype import JobType


def check_config(config: SchedulerConfig, now: datetime) -> list[ConfigProblem]:
    """Problems across jobs; `now` anchors the schedule preview used by the jitter check."""
    by_cluster: dict[tuple[str, str], list[JobConfig]] = defaultdict(list)
    for job in config.jobs:
        by_cluster[_cluster_key(job.cluster)].append(job)
    problems: list[ConfigProblem] = []
    for jobs in by_cluster.values():
        problems.extend(_incremental_without_snapshot(jobs))
    for job in config.jobs:
        problems.extend(_jitter_overlaps(job, now))
        problems.extend(_alert_without_targets(job))
    problems.extend(_plaintext_over_the_network(config))
    return problems


def _plaintext_over_the_network(config: SchedulerConfig) -> list[ConfigProblem]:
    server = config.server
    if server.tls is not None or is_loopback(host_of(server.address)):
        return []
    return [
        ConfigProblem(
            str(config.path),
            None,
            "server.address",
            f"{server.address} is reached over the network in plaintext, and a server without "
            "TLS takes requests from anyone who reaches its port",
            "add a [server.tls] table (ca_file, and cert_file/key_file for client certificates) "
            "and TLS on the server, or run the scheduler beside it on 127.0.0.1",
        )
    ]


def _alert_without_targets(job: JobConfig) -> list[ConfigProblem]:
    if job.alert_after is None or job.notify:
        return []
    return [
        _problem(
            job,
            "alert_after",
            "alert_after is set but the job notifies no target, so a STALE alert reaches only "
            "the log and `check`",
            'add notify = ["NAME"] naming a [notify.NAME] table, to this job or to [defaults]',
        )
    ]


def _cluster_key(cluster: ClusterRef) -> tuple[str, str]:
    # Offline we can only tell clusters apart by how they are named; two spellings of one
    # cluster (an id and a host) are not matched.
    return cluster.kind, cluster.value


def _problem(job: JobConfig, field: str, message: str, hint: str) -> ConfigProblem:
    path = f"jobs.{job.name}" + (f".{field}" if field else "")
    return ConfigProblem(job.source.file, job.source.line, path, message, hint)


def _incremental_without_snapshot(jobs: list[JobConfig]) -> list[ConfigProblem]:
    if any(j.type is JobType.SNAPSHOT for j in jobs):
        return []
    return [
        _problem(
            job,
            "when_no_snapshot",
            f'no snapshot job covers {job.cluster}, so incremental job "{job.name}" fails '
            "when the cluster has no completed snapshot",
            'add a type = "snapshot" job for this cluster, or set '
            'when_no_snapshot = "take-snapshot"',
        )
        for job in jobs
        if job.type is JobType.INCREMENTAL and job.when_no_snapshot is WhenNoSnapshot.FAIL
    ]


def _jitter_overlaps(job: JobConfig, now: datetime) -> list[ConfigProblem]:
    if not job.jitter:
        return []
    fires = job.schedule.next_n(now, 24)
    gaps = [later - earlier for earlier, later in pairwise(fires)]
    if not gaps or job.jitter < min(gaps):
        return []
    return [
        _problem(
            job,
            "jitter",
            f"jitter {job.jitter} is not shorter than the {min(gaps)} between runs",
            "make jitter a small fraction of the time between runs, e.g. 5m for an hourly job",
        )
    ]
