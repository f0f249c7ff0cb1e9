"""The short demo's verdict: every job type succeeded once, judged only when nothing is left
in flight, so a slow machine's run that ends a little after the deadline still counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from cassy_scheduler.config.model import SchedulerConfig
from cassy_scheduler.history import RunHistory
from cassy_scheduler.records import Outcome, RunRecord

JOB_TYPES = frozenset({"snapshot", "incremental", "cluster-wide"})
WAIT_FOR_RUNS_S = 240.0  # how long past the deadline runs in flight may take


class Verdict(Enum):
    PASS = "pass"
    FAIL = "fail"
    WAIT = "wait"  # a job type still missing has a run going (or due): judge later


@dataclass(frozen=True)
class Standing:
    """Where the job types stand: which succeeded, which have a run in flight or due."""

    succeeded: frozenset[str]
    in_flight: frozenset[str]

    @property
    def missing(self) -> frozenset[str]:
        return JOB_TYPES - self.succeeded


def judge(standing: Standing) -> Verdict:
    """PASS once every type succeeded; WAIT while a missing type may still succeed."""
    if not standing.missing:
        return Verdict.PASS
    return Verdict.WAIT if standing.missing & standing.in_flight else Verdict.FAIL


def standing(
    runs: Iterable[RunRecord], due: Mapping[str, datetime | None], recorded: Mapping[str, datetime]
) -> Standing:
    """From the runs recorded, and each job's latest due instant (`due`, by job type) against
    the latest instant its history records (`recorded`): a due firing not yet recorded is
    a run queued behind another."""
    records = list(runs)
    succeeded = {r.job_type for r in records if r.outcome is Outcome.SUCCEEDED}
    running = {r.job_type for r in records if r.outcome is Outcome.RUNNING}
    queued = {
        kind
        for kind, instant in due.items()
        if instant is not None and (kind not in recorded or recorded[kind] < instant)
    }
    return Standing(frozenset(succeeded), frozenset(running | queued))


def read_standing(
    config: SchedulerConfig, history: RunHistory, since: datetime, now: datetime
) -> Standing:
    """The demo's jobs as its history tells, since the demo started."""
    last = history.last_scheduled()
    due = {job.type.value: job.schedule.latest_between(since, now) for job in config.jobs}
    recorded = {job.type.value: last[job.name] for job in config.jobs if job.name in last}
    return standing(history.list_runs(limit=500), due, recorded)
