"""Silence made loud: a job with no successful run for its alert_after is STALE, whatever the
reason (the scheduler was down, the job disabled, every run failing).

The watch alerts every target of the job once when it turns stale and once when a run
succeeds again; that state lives in the notice journal so a restart neither repeats nor loses an
alert. A job that never succeeded counts from when the watch first saw it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from cassy_scheduler.clock import Clock
from cassy_scheduler.config.model import JobConfig, SchedulerConfig
from cassy_scheduler.configfile.durations import format_duration
from cassy_scheduler.history import HistoryError, RunHistory
from cassy_scheduler.notify.dispatcher import Dispatcher
from cassy_scheduler.notify.journal import JournalError, NoticeJournal, StaleState
from cassy_scheduler.notify.render import render_stale
from cassy_scheduler.records import RunResult, RunStart

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Staleness:
    """How fresh one job's backups are at one moment."""

    job_name: str
    alert_after: timedelta
    last_success: datetime | None
    counted_from: datetime | None  # the last success, or when watching began
    stale: bool

    def age(self, now: datetime) -> timedelta | None:
        return None if self.counted_from is None else now - self.counted_from

    def describe(self, now: datetime) -> str:
        limit = format_duration(self.alert_after)
        age = self.age(now)
        if self.last_success is not None and age is not None:
            return f"last success {format_duration(age)} ago (alert_after {limit})"
        if age is not None:
            return f"no successful run in the {format_duration(age)} watched (alert_after {limit})"
        return f"no successful run recorded (alert_after {limit})"


def assess(
    job: JobConfig, history: RunHistory, now: datetime, state: StaleState | None = None
) -> Staleness | None:
    """The job's staleness now, or None when it has no alert_after.

    Without a success and without a watch state, the job is stale only once it has runs
    recorded longer ago than alert_after.
    """
    if job.alert_after is None:
        return None
    success = history.last_success(job.name)
    last = success.finished_at if success else None
    counted_from = last or (state.watched_since if state else None)
    if counted_from is None:
        counted_from = history.first_scheduled(job.name)
    stale = counted_from is not None and now - counted_from >= job.alert_after
    return Staleness(job.name, job.alert_after, last, counted_from, stale)


class StalenessWatch:
    """Checks every job with alert_after each stale_check, and after each successful run."""

    def __init__(
        self,
        config: SchedulerConfig,
        history: RunHistory,
        journal: NoticeJournal,
        clock: Clock,
        dispatcher: Dispatcher,
    ) -> None:
        self._config = config
        self._history = history
        self._journal = journal
        self._clock = clock
        self._dispatcher = dispatcher
        self._next_check: datetime | None = None
        self._lock = threading.Lock()

    def use_config(self, config: SchedulerConfig) -> None:
        with self._lock:
            self._config = config
            self._next_check = None

    def tick(self, now: datetime | None = None) -> None:
        """Check all jobs if stale_check has passed since the last look; never raises."""
        now = now or self._clock.now()
        with self._lock:
            if self._next_check is not None and now < self._next_check:
                return
            self._next_check = now + self._config.runtime.stale_check
            jobs = [j for j in self._config.jobs if j.alert_after is not None]
        for job in jobs:
            self._check_safely(job, now)

    def run_started(self, start: RunStart) -> None:
        """Nothing changes when a run starts."""

    def run_finished(self, result: RunResult) -> None:
        if not result.succeeded:
            return
        with self._lock:
            job = next((j for j in self._config.jobs if j.name == result.job_name), None)
        if job is not None and job.alert_after is not None:
            self._check_safely(job, self._clock.now())

    def _check_safely(self, job: JobConfig, now: datetime) -> None:
        try:
            self._check(job, now)
        except (HistoryError, JournalError) as exc:
            _log.error("staleness check failed job=%s error=%r", job.name, str(exc))
        except Exception:
            _log.exception("staleness check failed job=%s", job.name)

    def _check(self, job: JobConfig, now: datetime) -> None:
        state = self._journal.stale_state(job.name)
        if state is None:
            state = StaleState(job.name, now)
            self._journal.save_stale_state(state)
        found = assess(job, self._history, now, state)
        assert found is not None
        alerted = state.stale_since is not None
        if found.stale == alerted:
            return
        self._journal.save_stale_state(
            StaleState(job.name, state.watched_since, now if found.stale else None)
        )
        notice = render_stale(
            job,
            self._config.path,
            now,
            found.last_success,
            found.counted_from or now,
            stale=found.stale,
        )
        targets = self._dispatcher.send_to_all(job, notice)
        _log.log(
            logging.WARNING if found.stale else logging.INFO,
            "%s job=%s last_success=%s counted_from=%s alert_after=%s targets=%d",
            "job stale" if found.stale else "job fresh again",
            job.name,
            found.last_success.isoformat() if found.last_success else "never",
            found.counted_from.isoformat() if found.counted_from else "-",
            format_duration(found.alert_after),
            targets,
        )
