"""The scheduler's main loop: fire each job on time, one cluster at a time, until told to stop.

Every job has one pending timer in a heap keyed by its next firing, so the loop sleeps until
the earliest one, whatever the number of jobs. Due runs go to per-cluster queues (queues.py)
that a small pool drains. At start, runs missed while the scheduler was down are coalesced
per job by its missed-run policy; the config file is re-read when it changes or on SIGHUP, a
bad file leaving the running config in place; SIGTERM lets running backups finish within
shutdown_grace and records the rest as interrupted.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import select
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Protocol

from cassy_scheduler.clock import Clock
from cassy_scheduler.config.guards import reload_refusals
from cassy_scheduler.config.loader import load_config
from cassy_scheduler.config.model import PRUNE_SUFFIX, JobConfig, SchedulerConfig, prune_run
from cassy_scheduler.configfile.errors import ConfigError, ConfigProblem
from cassy_scheduler.records import Failure, RunResult
from cassy_scheduler.scheduling.queues import ClusterQueues, QueuedRun
from cassy_scheduler.timetable import Fire, decide_misfire

_log = logging.getLogger(__name__)
_INTERRUPT_WAIT_S = 30.0
_RETRY_TURN_S = 5.0
_LATE_ENOUGH_TO_CHECK = timedelta(seconds=1)


class JobRunner(Protocol):
    """What the loop hands due runs to: the Runner, or a stand-in in tests and benchmarks."""

    def run(
        self, job: JobConfig, scheduled_for: datetime, stop: threading.Event | None = None
    ) -> RunResult: ...

    def skip(
        self, job: JobConfig, scheduled_for: datetime, reason: str, failure: Failure
    ) -> RunResult: ...


class JobPruner(Protocol):
    """What prunes a job with a retention policy after each of its successful backups."""

    def prune(self, job: JobConfig, stop: threading.Event | None = None) -> RunResult: ...


class RunRecordIndex(Protocol):
    """The part of the run history the loop reads: when each job last had a run."""

    def last_scheduled(self) -> dict[str, datetime]: ...


ConfigLoader = Callable[[Path], SchedulerConfig]
ConfigListener = Callable[[SchedulerConfig, SchedulerConfig], None]


class ConfigAlerts(Protocol):
    """Told when a reload is refused (the running config stays) and when one is taken again
    after a refusal; the notifier alerts people, so a bad edit is not only a log line."""

    def config_refused(
        self, config: SchedulerConfig, trigger: str, problems: Sequence[ConfigProblem]
    ) -> None: ...

    def config_accepted(self, config: SchedulerConfig, trigger: str) -> None: ...


@dataclass(eq=False)
class _Timer:
    """A job's one pending firing; a heap entry is live only while it is the job's timer.

    `order` breaks ties between jobs due at the same instant: they fire in config order.
    """

    job_name: str
    fire: Fire
    order: int

    def entry(self) -> tuple[float, int, _Timer]:
        return (self.fire.run_at.timestamp(), self.order, self)


class Daemon:
    """Timers, dispatch, reload and shutdown; `serve` runs it, `tick` drives it in tests."""

    def __init__(
        self,
        config: SchedulerConfig,
        runner: JobRunner,
        history: RunRecordIndex,
        clock: Clock,
        *,
        load: ConfigLoader = load_config,
        on_reload: ConfigListener | None = None,
        every_turn: Sequence[Callable[[datetime], None]] = (),
        alerts: ConfigAlerts | None = None,
        pruner: JobPruner | None = None,
    ) -> None:
        self._config = config
        self._pruner = pruner
        self._alerts = alerts
        self._refused = False  # the last reload was refused: say so when one is taken again
        self._runner = runner
        self._history = history
        self._clock = clock
        self._load = load
        self._on_reload = on_reload
        self._every_turn = tuple(every_turn)
        self._jobs: dict[str, JobConfig] = {}  # what has a timer: jobs and scheduled prunes
        self._prune_of: dict[str, JobConfig] = {}  # a scheduled prune's name: its job
        self._order: dict[str, int] = {}
        self._timers: dict[str, _Timer] = {}
        self._heap: list[tuple[float, int, _Timer]] = []
        self._queues: ClusterQueues[JobConfig] = ClusterQueues(
            config.runtime.max_parallel_runs, self._work
        )
        self._stop_runs = threading.Event()
        # Plain flags, not Events: signal handlers set them, and must never wait on a lock.
        self._stopping = False
        self._reload_requested = False
        self._waker = _Waker()
        self._config_stamp = _stamp(config.path)
        self._next_poll: datetime | None = None

    @property
    def config(self) -> SchedulerConfig:
        return self._config

    def next_fires(self) -> dict[str, Fire]:
        """Each enabled job's pending firing."""
        return {name: timer.fire for name, timer in self._timers.items()}

    # -- life cycle --

    def start(self) -> None:
        """Plan every enabled job, deciding what to do about runs missed while down."""
        now = self._clock.now()
        last = self._history.last_scheduled()
        self._jobs = self._timed(self._config)
        self._order = {job.name: index for index, job in enumerate(self._config.jobs)}
        for job in self._jobs.values():
            self._plan_at_start(job, now, last)
        self._rebuild_heap()
        self._next_poll = now + self._config.runtime.reload_poll
        disabled = sum(1 for job in self._config.jobs if not job.enabled)
        _log.info(
            "scheduler started config=%s jobs=%d disabled=%d server=%s state_dir=%s",
            self._config.path,
            len(self._jobs) - len(self._prune_of),
            disabled,
            self._config.server.address,
            self._config.runtime.state_dir,
        )

    def serve(self) -> None:
        """Run until SIGTERM/SIGINT (or request_stop), then shut down gracefully.

        Starts the daemon first unless `start` was called already.
        """
        with self._signals():
            if self._next_poll is None:
                self.start()
            while not self._stopping:
                self._waker.drain()
                try:
                    wake_at = self.tick()
                except Exception:
                    # One bad turn (the history disk full, a bug) must not end the schedule.
                    _log.exception("scheduler loop turn failed; retrying in %gs", _RETRY_TURN_S)
                    wake_at = self._clock.now() + timedelta(seconds=_RETRY_TURN_S)
                if self._stopping:
                    break
                self._waker.wait((wake_at - self._clock.now()).total_seconds())
            # Still under our handlers: a second SIGTERM during the grace must not kill the
            # process before running backups are finished or recorded interrupted.
            self.shutdown()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no run is queued or running; False when timeout_s passed first."""
        return self._queues.wait_idle(timeout_s)

    def request_stop(self) -> None:
        """Stop firing and shut down; safe from signal handlers and other threads."""
        self._stopping = True
        self._waker.wake()

    def request_reload(self) -> None:
        """Re-read the config at the next turn of the loop; safe from signal handlers."""
        self._reload_requested = True
        self._waker.wake()

    def shutdown(self) -> None:
        """Let running backups finish within shutdown_grace; after it, interrupt them."""
        dropped = self._queues.take_queued()
        for run in dropped:
            _log.info(
                "run dropped at shutdown job=%s scheduled_for=%s decision=%r",
                run.job_name,
                run.scheduled_for.isoformat(),
                "missed-run policy decides at the next start",
            )
        grace = self._config.runtime.shutdown_grace.total_seconds()
        running = self._queues.pending()
        _log.info("scheduler stopping running=%d grace_s=%g", running, grace)
        if running and not self._queues.wait_idle(grace):
            _log.warning(
                "shutdown grace over; interrupting running runs running=%d",
                self._queues.pending(),
            )
            self._stop_runs.set()
            if not self._queues.wait_idle(_INTERRUPT_WAIT_S):
                _log.error("runs did not stop running=%d", self._queues.pending())
        self._queues.close(wait=False)
        self._waker.close()
        _log.info("scheduler stopped")

    # -- one turn of the loop --

    def tick(self, now: datetime | None = None) -> datetime:
        """Do what is due at `now` (reload, runs); return when something is next due."""
        now = self._clock.now() if now is None else now
        if self._reload_requested:
            self._reload_requested = False
            self.reload(now, "SIGHUP")
        elif self._next_poll is not None and now >= self._next_poll:
            self._next_poll = now + self._config.runtime.reload_poll
            stamp = _stamp(self._config.path)
            if stamp != self._config_stamp:
                self.reload(now, "the file changed" if stamp else "the file is gone")
        due: list[_Timer] = []
        limit = now.timestamp()
        while self._heap and self._heap[0][0] <= limit:
            _, _, timer = heapq.heappop(self._heap)
            if self._timers.get(timer.job_name) is timer:
                due.append(timer)
        # Dispatch everything first: computing next firings can wait, the runs cannot.
        fired = [self._fire(timer, now) for timer in due]
        for timer, scheduled_for in zip(due, fired, strict=True):
            job = self._jobs.get(timer.job_name)
            if job is not None:
                self._set_timer(job, job.timetable.next_fire(max(scheduled_for, now)))
        for task in self._every_turn:
            try:
                task(now)
            except Exception:  # staleness or metrics must not stop the schedule
                _log.exception("periodic task failed task=%r", task)
        return self._next_wake(now)

    def _next_wake(self, now: datetime) -> datetime:
        candidates = [now + self._config.runtime.reload_poll]
        if self._next_poll is not None:
            candidates.append(self._next_poll)
        if self._heap:
            candidates.append(self._heap[0][2].fire.run_at)
        return min(candidates)

    def _fire(self, timer: _Timer, now: datetime) -> datetime:
        """Hand one due firing to its cluster's queue; returns the instant it ran for."""
        job = self._jobs[timer.job_name]
        scheduled_for = timer.fire.scheduled_for
        late = now - timer.fire.run_at
        if late > _LATE_ENOUGH_TO_CHECK:
            # Asleep through more than one firing (suspend, a stalled loop): run the latest.
            latest = job.schedule.latest_between(scheduled_for, now)
            if latest is not None and latest > scheduled_for:
                _log.warning(
                    "late firings coalesced job=%s first=%s running_for=%s",
                    job.name,
                    scheduled_for.isoformat(),
                    latest.isoformat(),
                )
                scheduled_for = latest
            if job.misfire_grace is not None and late > job.misfire_grace:
                self._runner.skip(
                    job,
                    scheduled_for,
                    f"fired {late} late, beyond misfire_grace {job.misfire_grace}",
                    Failure.MISSED,
                )
                return scheduled_for
        run = QueuedRun(_cluster_key(job), job.name, scheduled_for, job)
        if self._queues.submit(run):
            _log.debug("run queued job=%s scheduled_for=%s", job.name, scheduled_for.isoformat())
        else:
            self._runner.skip(
                job,
                scheduled_for,
                "the previous run of this job is still queued or running",
                Failure.ALREADY_RUNNING,
            )
        return scheduled_for

    def _work(self, run: QueuedRun[JobConfig]) -> None:
        # In the cluster's queue, like its backups: a prune and a backup never overlap.
        if run.job.name.endswith(PRUNE_SUFFIX):
            pruned = self._prune_of.get(run.job.name)
            if pruned is None:  # a reload removed its prune_schedule while it was queued
                _log.info(
                    "scheduled prune dropped job=%s reason='no longer scheduled'", run.job.name
                )
            elif self._pruner is not None:
                self._pruner.prune(pruned, self._stop_runs)
            return
        result = self._runner.run(run.job, run.scheduled_for, self._stop_runs)
        # The rules as they are now: a reload during a long backup may have changed them.
        job = self._jobs.get(run.job.name)
        after = job is not None and job.retention is not None and job.prune_schedule is None
        if after and result.succeeded and self._pruner is not None and not self._stopping:
            assert job is not None
            self._pruner.prune(job, self._stop_runs)

    def _timed(self, config: SchedulerConfig) -> dict[str, JobConfig]:
        """The enabled jobs and, for each with a prune_schedule, its prune as a job of its
        own (named NAME:prune); notes which is which."""
        timed: dict[str, JobConfig] = {}
        prune_of: dict[str, JobConfig] = {}
        for job in config.jobs:
            if not job.enabled:
                continue
            timed[job.name] = job
            if job.retention is not None and job.prune_schedule is not None:
                prune = prune_run(job)
                timed[prune.name] = prune
                prune_of[prune.name] = job
        self._prune_of = prune_of  # one assignment: a worker reads it without a lock
        return timed

    # -- planning --

    def _plan_at_start(self, job: JobConfig, now: datetime, last: Mapping[str, datetime]) -> None:
        verdict = decide_misfire(
            job.schedule, last.get(job.name), now, job.missed_runs, job.misfire_grace
        )
        if verdict.catch_up_for is not None:
            _log.info(
                "missed runs job=%s count=%d decision=catch-up running_for=%s reason=%r",
                job.name,
                verdict.missed_count,
                verdict.catch_up_for.isoformat(),
                verdict.reason,
            )
            self._timers[job.name] = self._timer(job.name, Fire(verdict.catch_up_for, now))
            return
        if verdict.latest_missed is not None:
            _log.info(
                "missed runs job=%s count=%d decision=skip reason=%r",
                job.name,
                verdict.missed_count,
                verdict.reason,
            )
            self._runner.skip(job, verdict.latest_missed, verdict.reason, Failure.MISSED)
        self._timers[job.name] = self._timer(job.name, job.timetable.next_fire(now))

    def _timer(self, job_name: str, fire: Fire) -> _Timer:
        return _Timer(job_name, fire, self._order.get(job_name, len(self._order)))

    def _set_timer(self, job: JobConfig, fire: Fire) -> None:
        timer = self._timer(job.name, fire)
        self._timers[job.name] = timer
        heapq.heappush(self._heap, timer.entry())

    def _rebuild_heap(self) -> None:
        self._heap = [timer.entry() for timer in self._timers.values()]
        heapq.heapify(self._heap)

    # -- reload --

    def reload(self, now: datetime, why: str) -> bool:
        """Re-read the config file; on any problem keep the running config and say why."""
        path = self._config.path
        self._config_stamp = _stamp(path)
        try:
            new = self._load(path)
            problems = reload_refusals(self._config, new)
        except ConfigError as exc:
            problems = list(exc.problems)
        except Exception as exc:
            _log.exception(
                "config reload failed path=%s trigger=%r error=%r decision=%r",
                path,
                why,
                str(exc),
                "keep running the previous config",
            )
            problems = [ConfigProblem(str(path), None, "", f"cannot be read: {exc!r}", "")]
        if problems:
            self._refuse(why, problems)
            return False
        self._apply(new, now, why)
        if self._refused:
            self._refused = False
            if self._alerts is not None:
                self._alerts.config_accepted(new, why)
        return True

    def _refuse(self, why: str, problems: Sequence[ConfigProblem]) -> None:
        _log.error(
            "config reload refused path=%s trigger=%r problems=%d decision=%r",
            self._config.path,
            why,
            len(problems),
            f"keep running the previous config ({len(self._jobs)} job(s))",
        )
        for problem in problems:
            _log.error("config problem %s", str(problem).replace("\n", " "))
        self._refused = True
        if self._alerts is not None:
            self._alerts.config_refused(self._config, why, problems)

    def _apply(self, new: SchedulerConfig, now: datetime, why: str) -> None:
        old = self._config
        new_jobs = self._timed(new)
        self._order = {job.name: index for index, job in enumerate(new.jobs)}
        added = changed = 0
        removed = [name for name in self._jobs if name not in new_jobs]
        for name in removed:
            self._timers.pop(name, None)
            _log.info("job removed job=%s", name)
        for name, job in new_jobs.items():
            before = self._jobs.get(name)
            if before is not None and (before.schedule, before.jitter) == (
                job.schedule,
                job.jitter,
            ):
                continue  # same timing: its pending firing stands
            fire = job.timetable.next_fire(now)
            self._timers[name] = self._timer(name, fire)
            if before is None:
                added += 1
                _log.info("job added job=%s next=%s", name, fire.run_at.isoformat())
            else:
                changed += 1
                _log.info(
                    "job schedule changed job=%s schedule=%r next=%s",
                    name,
                    job.schedule.expression,
                    fire.run_at.isoformat(),
                )
        self._jobs = new_jobs
        self._config = new
        self._rebuild_heap()
        if new.runtime != old.runtime:
            _log.warning(
                "[scheduler] settings changed; state_dir and max_parallel_runs take effect at "
                "the next start, the others now"
            )
        if new.server != old.server:
            _log.info("server settings changed address=%s", new.server.address)
        if self._on_reload is not None:
            self._on_reload(old, new)
        _log.info(
            "config reloaded path=%s trigger=%r jobs=%d added=%d changed=%d removed=%d",
            new.path,
            why,
            len(new_jobs) - len(self._prune_of),
            added,
            changed,
            len(removed),
        )

    # -- signals --

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield None
            return

        def stop(signum: int, frame: FrameType | None) -> None:
            _log.info("signal received signal=%s decision=stop", signal.Signals(signum).name)
            self.request_stop()

        def reload(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        previous = {
            signal.SIGTERM: signal.signal(signal.SIGTERM, stop),
            signal.SIGINT: signal.signal(signal.SIGINT, stop),
            signal.SIGHUP: signal.signal(signal.SIGHUP, reload),
        }
        try:
            yield None
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _cluster_key(job: JobConfig) -> str:
    return f"{job.cluster.kind}={job.cluster.value}"


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells a changed file apart: editors that replace the file change the inode."""
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


class _Waker:
    """A pipe the loop sleeps on, so signals and other threads can wake it at once."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._write, b"\0")

    def wait(self, seconds: float) -> None:
        if seconds > 0:
            select.select([self._read], [], [], seconds)

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 512):
                pass
