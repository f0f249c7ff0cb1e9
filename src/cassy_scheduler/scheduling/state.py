"""The state directory the daemon and one-shot commands share: run history and lock files.

Several processes may run jobs on one history at a time, so none may mark every "running" row
interrupted when it starts. Instead a row is interrupted only when no process holds its job's
lock: the run that wrote it is gone.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cassy_scheduler.clock import Clock
from cassy_scheduler.closing import Closing
from cassy_scheduler.config.model import RuntimeConfig
from cassy_scheduler.history import RunHistory
from cassy_scheduler.scheduling.locks import LockBusyError, RunLocks

_log = logging.getLogger(__name__)

INTERRUPTED_REASON = "the process running it stopped before the run finished"


class SchedulerState(Closing):
    """History and locks of one state directory; close() when done."""

    def __init__(self, history: RunHistory, locks: RunLocks, root: Path) -> None:
        self.history = history
        self.locks = locks
        self.root = root

    @classmethod
    def open(cls, runtime: RuntimeConfig, clock: Clock) -> SchedulerState:
        history = RunHistory.open(runtime.history_path, clock, recover=False)
        state = cls(history, RunLocks(runtime.lock_dir, clock), runtime.state_dir)
        state.recover()
        return state

    def recover(self) -> int:
        """Mark interrupted the runs whose process is gone; returns how many."""
        count = 0
        by_job: dict[str, list[int]] = {}
        for run in self.history.running_runs():
            by_job.setdefault(run.job_name, []).append(run.run_id)
        for job_name, run_ids in by_job.items():
            try:
                with self.locks.job(job_name):
                    for run_id in run_ids:
                        if self.history.interrupt(run_id, INTERRUPTED_REASON):
                            count += 1
                            _log.warning(
                                "run marked interrupted job=%s run_id=%d reason=%r",
                                job_name,
                                run_id,
                                INTERRUPTED_REASON,
                            )
            except LockBusyError:
                continue  # its run is alive in some process
        return count

    def close(self) -> None:
        self.history.close()
