"""Heartbeat pings for dead-man's-switch services (healthchecks.io and alike).

A job with heartbeat_url pings URL/start when a run starts, URL when it succeeds and URL/fail
when it does not; the service alerts when the pings stop. Pings go out from a background
thread, a few tries each, and never touch the run.
"""

from __future__ import annotations

import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable

from cassy_scheduler.clock import Clock
from cassy_scheduler.config.model import SchedulerConfig
from cassy_scheduler.records import RunResult, RunStart

_log = logging.getLogger(__name__)
_TRIES = 3
_TIMEOUT_S = 10.0
_BACKOFF_S = 2.0

Fetch = Callable[[str, float], int]


def _fetch(url: str, timeout_s: float) -> int:
    request = urllib.request.Request(url, method="GET", headers={"User-Agent": "cassy-scheduler"})
    with urllib.request.urlopen(request, timeout=timeout_s) as answer:
        return int(answer.status)


def ping_url(base: str, kind: str) -> str:
    """base for success, base/start and base/fail for the others."""
    base = base.rstrip("/")
    return base if kind == "success" else f"{base}/{kind}"


class HeartbeatPinger:
    """A RunObserver pinging each job's heartbeat_url; close() when done."""

    def __init__(self, config: SchedulerConfig, clock: Clock, fetch: Fetch = _fetch) -> None:
        self._config = config
        self._clock = clock
        self._fetch = fetch
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def use_config(self, config: SchedulerConfig) -> None:
        self._config = config

    def run_started(self, start: RunStart) -> None:
        self._ping(start.job_name, "start")

    def run_finished(self, result: RunResult) -> None:
        self._ping(result.job_name, "success" if result.succeeded else "fail")

    def close(self, timeout_s: float = _TIMEOUT_S) -> None:
        """Let a ping under way end (one ping's timeout), then abort what is left."""
        self._queue.put(None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(timeout_s)

    def _ping(self, job_name: str, kind: str) -> None:
        job = next((j for j in self._config.jobs if j.name == job_name), None)
        if job is not None and job.heartbeat_url:
            self._queue.put((job_name, ping_url(job.heartbeat_url, kind)))

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            job_name, url = item
            for attempt in range(1, _TRIES + 1):
                try:
                    status = self._fetch(url, _TIMEOUT_S)
                except (OSError, urllib.error.URLError, ValueError) as exc:
                    error = str(exc)
                else:
                    if 200 <= status < 300:
                        _log.debug("heartbeat sent job=%s attempt=%d", job_name, attempt)
                        break
                    error = f"HTTP {status}"
                _log.warning(
                    "heartbeat ping failed job=%s attempt=%d of=%d error=%r",
                    job_name,
                    attempt,
                    _TRIES,
                    error,
                )
                if attempt < _TRIES and self._clock.wait(_BACKOFF_S * attempt, self._abort):
                    break
