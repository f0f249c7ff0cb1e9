"""The run observer that notifies: decides per job and target, then hands off to the worker.

Deciding is quick and happens in the run's thread; sending happens in the worker's, so the
next run never waits for a mail server. Nothing here can change a run's outcome.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime

from cassy_scheduler.clock import Clock
from cassy_scheduler.config.model import PRUNE_SUFFIX, JobConfig, SchedulerConfig, prune_run
from cassy_scheduler.config.targets import NotifyTarget, NotifyWhen
from cassy_scheduler.configfile.errors import ConfigProblem
from cassy_scheduler.history import RunHistory
from cassy_scheduler.notify.journal import NoticeJournal
from cassy_scheduler.notify.notice import Notice
from cassy_scheduler.notify.policy import (
    State,
    is_overlap,
    previous_state,
    should_send,
    skips_before,
)
from cassy_scheduler.notify.render import RunContext, render_config, render_run
from cassy_scheduler.notify.senders import make_sender
from cassy_scheduler.notify.worker import Delivery, DeliveryWorker, SenderFactory
from cassy_scheduler.records import RunRecord, RunResult, RunStart

_log = logging.getLogger(__name__)
_HISTORY_LOOKBACK = 50


class Dispatcher:
    """Notifies each job's targets about its runs; close() to let pending notices go out."""

    def __init__(
        self,
        config: SchedulerConfig,
        history: RunHistory,
        journal: NoticeJournal,
        clock: Clock,
        senders: SenderFactory = make_sender,
    ) -> None:
        self._config = config
        self._history = history
        self._clock = clock
        self._lock = threading.Lock()
        self._adopted: dict[str, JobConfig] = {}
        self._worker = DeliveryWorker(journal, clock, senders)

    def use_config(self, config: SchedulerConfig) -> None:
        """Notices from now on follow `config` (after a reload)."""
        with self._lock:
            self._config = config

    def adopt(self, job: JobConfig) -> None:
        """Notify for `job` although the config does not list it (an ad-hoc one-shot job)."""
        with self._lock:
            self._adopted[job.name] = job

    def run_started(self, start: RunStart) -> None:
        """Nothing to say at the start of a run."""

    def run_finished(self, result: RunResult) -> None:
        config, job = self._lookup(result.job_name)
        if job is None or not job.notify:
            return
        context = RunContext(job, config.path, self._next_run(config, job))
        notice = render_run(result, context)
        previous: State | None = None
        skipped = 0
        runs: list[RunRecord] | None = None
        for use in job.notify:
            target = _target(config, use.target)
            if target is None:
                continue
            when = use.when or target.when
            if runs is None and (when is NotifyWhen.CHANGE or is_overlap(result)):
                runs = self._history.list_runs(job.name, limit=_HISTORY_LOOKBACK)
                previous = previous_state(runs, result.run_id)
                skipped = skips_before(runs, result.run_id)
            send = should_send(when, result, previous, skipped)
            _log.debug(
                "notify decision job=%s run_id=%s target=%s when=%s outcome=%s send=%s",
                job.name,
                result.run_id,
                target.name,
                when.value,
                result.outcome.value,
                send,
            )
            if send:
                self._worker.submit(Delivery(target, notice))

    def send_to_all(self, job: JobConfig, notice: Notice) -> int:
        """Send `notice` to every target of `job` whatever their policy; how many targets."""
        config, _ = self._lookup(job.name)
        count = 0
        for use in job.notify:
            target = _target(config, use.target)
            if target is not None:
                self._worker.submit(Delivery(target, notice))
                count += 1
        return count

    def config_refused(
        self, config: SchedulerConfig, trigger: str, problems: Sequence[ConfigProblem]
    ) -> None:
        """Alert every target of the running config: an edit was refused."""
        notice = render_config(config.path, trigger, problems, len(config.jobs), self._clock.now())
        self._to_every_target(config, notice)

    def config_accepted(self, config: SchedulerConfig, trigger: str) -> None:
        """Tell every target that the file loads again, after a refusal."""
        notice = render_config(config.path, trigger, (), len(config.jobs), self._clock.now())
        self._to_every_target(config, notice)

    def _to_every_target(self, config: SchedulerConfig, notice: Notice) -> None:
        if not config.notify:
            _log.warning(
                "no notify target to alert config=%s subject=%r", config.path, notice.subject
            )
        for target in config.notify:
            self._worker.submit(Delivery(target, notice))

    def wait_idle(self, timeout_s: float) -> bool:
        return self._worker.wait_idle(timeout_s)

    def close(self, timeout_s: float) -> None:
        """Deliver what is pending within timeout_s; what is left is recorded undelivered."""
        self._worker.close(timeout_s)

    def _lookup(self, name: str) -> tuple[SchedulerConfig, JobConfig | None]:
        with self._lock:
            config = self._config
            adopted = self._adopted.get(name)
        for job in config.jobs:
            if job.name == name:
                return config, job
            if f"{job.name}{PRUNE_SUFFIX}" == name:  # a prune of it, or a skipped one
                return config, prune_run(job)
        return config, adopted

    def _next_run(self, config: SchedulerConfig, job: JobConfig) -> datetime | None:
        if not job.enabled or all(j.name != job.name for j in config.jobs):
            return None
        return job.timetable.next_fire(self._clock.now()).run_at


def _target(config: SchedulerConfig, name: str) -> NotifyTarget | None:
    try:
        return config.target(name)
    except KeyError:
        _log.error("notify target not defined target=%s config=%s", name, config.path)
        return None
