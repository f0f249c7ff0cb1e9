"""Prometheus metrics of the scheduler, per job, for dashboards and alerts outside it.

Per job: last success time, last run outcome, last run duration, runs by outcome, the next
scheduled firing, and for a job with keep_* rules the bytes its backups hold after a prune.
The registry belongs to one instance, and the endpoint listens on the address [scheduler]
metrics_listen names (loopback unless an operator says otherwise).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cassy_scheduler.config.model import JobConfig
from cassy_scheduler.history import RunHistory
from cassy_scheduler.records import Outcome, RunResult, RunStart

_log = logging.getLogger(__name__)
_OUTCOMES = tuple(o for o in Outcome if o is not Outcome.RUNNING)

NextFires = Callable[[], Mapping[str, datetime]]


class MetricsError(Exception):
    """The metrics endpoint cannot listen where it was told to."""


class _NextRuns(Collector):
    """Reads the daemon's pending firings at scrape time."""

    def __init__(self) -> None:
        self.source: NextFires | None = None

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "cassy_scheduler_next_run_timestamp_seconds",
            "When the job fires next (Unix time), with jitter applied.",
            labels=["job"],
        )
        fires: Mapping[str, datetime] = {}
        if self.source is not None:
            for _ in range(3):  # the loop may change its timers while we read them
                try:
                    fires = dict(self.source())
                    break
                except RuntimeError:
                    continue
        for job, moment in sorted(fires.items()):
            family.add_metric([job], moment.timestamp())
        yield family


class SchedulerMetrics:
    """A RunObserver keeping the metrics; `serve` exposes them over HTTP."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._last_success = Gauge(
            "cassy_scheduler_last_success_timestamp_seconds",
            "When the job's last successful run ended (Unix time).",
            ["job"],
            registry=self.registry,
        )
        self._last_outcome = Gauge(
            "cassy_scheduler_last_run_outcome",
            "1 for the outcome of the job's last finished run, 0 for the others.",
            ["job", "outcome"],
            registry=self.registry,
        )
        self._duration = Gauge(
            "cassy_scheduler_last_run_duration_seconds",
            "How long the job's last run took, start to end.",
            ["job"],
            registry=self.registry,
        )
        self._runs = Counter(
            "cassy_scheduler_runs",
            "Finished runs by outcome since the scheduler started.",
            ["job", "outcome"],
            registry=self.registry,
        )
        self._running = Gauge(
            "cassy_scheduler_run_in_progress",
            "1 while a run of the job is in progress.",
            ["job"],
            registry=self.registry,
        )
        self._stored = Gauge(
            "cassy_scheduler_stored_bytes",
            "Bytes the built-in server holds for the job's backups, as its last prune left them.",
            ["job", "cluster_id"],
            registry=self.registry,
        )
        self._next = _NextRuns()
        self.registry.register(self._next)
        self._server: WSGIServer | None = None
        self._thread: Thread | None = None

    def use_schedule(self, next_fires: NextFires) -> None:
        """Where scrapes read each job's next firing (the daemon's `next_fires`)."""
        self._next.source = next_fires

    def seed(self, jobs: Iterable[JobConfig], history: RunHistory) -> None:
        """Start from the recorded history, so a restart does not zero last success."""
        for job in jobs:
            success = history.last_success(job.name)
            if success is not None and success.finished_at is not None:
                self._last_success.labels(job.name).set(success.finished_at.timestamp())
            last = next((r for r in history.list_runs(job.name, 5) if r.outcome.is_final), None)
            if last is not None:
                self._set_outcome(job.name, last.outcome)

    def run_started(self, start: RunStart) -> None:
        self._running.labels(start.job_name).set(1)

    def run_finished(self, result: RunResult) -> None:
        job = result.job_name
        self._running.labels(job).set(0)
        self._runs.labels(job, result.outcome.value).inc()
        self._set_outcome(job, result.outcome)
        if result.started_at is not None and result.finished_at is not None:
            took = (result.finished_at - result.started_at).total_seconds()
            self._duration.labels(job).set(took)
        if result.succeeded and result.finished_at is not None:
            self._last_success.labels(job).set(result.finished_at.timestamp())

    def backups_stored(self, job: str, cluster_id: str, held: int) -> None:
        """After a prune of `job` (a Pruner's `stored`)."""
        self._stored.labels(job, cluster_id).set(held)

    def _set_outcome(self, job: str, outcome: Outcome) -> None:
        for each in _OUTCOMES:
            self._last_outcome.labels(job, each.value).set(1 if each is outcome else 0)

    def serve(self, listen: str) -> tuple[str, int]:
        """Listen on host:port (port 0 picks one); returns the address bound."""
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        try:
            server, thread = start_http_server(int(port), host, registry=self.registry)
        except OSError as exc:
            raise MetricsError(
                f"cannot serve metrics on {listen}: {exc.strerror}; free the port or change "
                "[scheduler] metrics_listen"
            ) from None
        self._server, self._thread = server, thread
        bound = server.server_address
        _log.info("metrics endpoint listening address=%s:%d", bound[0], bound[1])
        return str(bound[0]), int(bound[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
