"""Due runs waiting their turn: one FIFO per cluster, drained by a small pool of threads.

Runs of one cluster go one after another in firing order, so they reach the cluster's lock in
that order too; runs of different clusters go side by side, up to the pool's size. A thread
exists per busy cluster at most, never per job, so ten thousand jobs cost no threads at rest.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class QueuedRun(Generic[_T]):
    """One due run: the job as configured when it fired, and the instant it was due for."""

    key: str
    job_name: str
    scheduled_for: datetime
    job: _T


class ClusterQueues(Generic[_T]):
    """Serialises runs per key (a cluster) and runs keys in parallel on a bounded pool."""

    def __init__(
        self,
        max_workers: int,
        work: Callable[[QueuedRun[_T]], None],
    ) -> None:
        self._work = work
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="run")
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queues: dict[str, deque[QueuedRun[_T]]] = {}
        self._draining: set[str] = set()
        self._jobs: dict[str, int] = {}  # job name -> runs queued or running
        self._closed = False

    def submit(self, run: QueuedRun[_T]) -> bool:
        """Queue a run; False when one of the same job is still queued or running."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the run queues are closed")
            if self._jobs.get(run.job_name):
                return False
            self._jobs[run.job_name] = 1
            self._queues.setdefault(run.key, deque()).append(run)
            if run.key not in self._draining:
                self._draining.add(run.key)
                self._pool.submit(self._drain, run.key)
        return True

    def pending(self) -> int:
        """Runs queued or running."""
        with self._lock:
            return len(self._jobs)

    def take_queued(self) -> list[QueuedRun[_T]]:
        """Remove and return every run not yet started (at shutdown)."""
        with self._lock:
            taken = [run for queue in self._queues.values() for run in queue]
            for queue in self._queues.values():
                queue.clear()
            for run in taken:
                self._jobs.pop(run.job_name, None)
            self._idle.notify_all()
            return taken

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is queued or running; False if that took longer than timeout_s."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._jobs, timeout=max(timeout_s, 0.0))

    def close(self, wait: bool) -> None:
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def _drain(self, key: str) -> None:
        while True:
            with self._lock:
                queue = self._queues.get(key)
                if not queue:
                    self._draining.discard(key)
                    self._queues.pop(key, None)
                    return
                run = queue.popleft()
            try:
                self._work(run)
            except Exception:
                _log.exception("run worker failed job=%s", run.job_name)
            finally:
                with self._lock:
                    self._jobs.pop(run.job_name, None)
                    if not self._jobs:
                        self._idle.notify_all()
