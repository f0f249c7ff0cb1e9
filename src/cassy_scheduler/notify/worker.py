"""Delivering notices in a background thread, so a slow or dead target never holds up a run.

Each delivery is tried 1 + retries times with doubling waits; every attempt, failed or not,
is recorded in the run history, and a notice that could not be delivered is logged.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from cassy_scheduler.config.targets import NotifyTarget
from cassy_scheduler.notify.notice import Notice
from cassy_scheduler.notify.senders import Sender
from cassy_scheduler.scheduling.clock import Clock
from cassy_scheduler.scheduling.history import DeliveryRecord, HistoryError, RunHistory

_log = logging.getLogger(__name__)
_MAX_BACKOFF_FACTOR = 16

SenderFactory = Callable[[NotifyTarget], Sender]


@dataclass(frozen=True)
class Delivery:
    target: NotifyTarget
    notice: Notice


class DeliveryWorker:
    """A queue of deliveries and the one thread that works through it; close() when done."""

    def __init__(self, history: RunHistory, clock: Clock, senders: SenderFactory) -> None:
        self._history = history
        self._clock = clock
        self._senders = senders
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._abort = threading.Event()
        self._closed = False
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._loop, name="notify", daemon=True)
        self._thread.start()

    def submit(self, delivery: Delivery) -> None:
        if self._closed:
            _log.error(
                "notice dropped; notifications closed job=%s target=%s subject=%r",
                delivery.notice.job_name,
                delivery.target.name,
                delivery.notice.subject,
            )
            return
        with self._idle:
            self._pending += 1
        self._queue.put(delivery)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every submitted delivery is done; False when timeout_s passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    def close(self, timeout_s: float) -> None:
        """Finish what is queued within timeout_s; after it, give up remaining retries."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            _log.warning("notifications still pending at close; giving up retries")
            self._abort.set()
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    if self._closed:
                        return
                    continue
                self._deliver(item)
            except Exception:  # one bad delivery must not end the worker
                _log.exception("notification worker error")
            if item is not None:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, delivery: Delivery) -> None:
        target, notice = delivery.target, delivery.notice
        sender = self._senders(target)
        attempts = target.retries + 1
        for attempt in range(1, attempts + 1):
            error: str | None = None
            try:
                sender.send(notice)
            except Exception as exc:  # a sender's bug counts as a failed attempt too
                error = str(exc) or repr(exc)
            self._record(delivery, attempt, error)
            if error is None:
                _log.info(
                    "notice delivered job=%s target=%s via=%r event=%s attempt=%d",
                    notice.job_name,
                    target.name,
                    sender.describe(),
                    notice.event.value,
                    attempt,
                )
                return
            if attempt == attempts:
                _log.error(
                    "notice not delivered job=%s target=%s via=%r attempts=%d error=%r subject=%r",
                    notice.job_name,
                    target.name,
                    sender.describe(),
                    attempt,
                    error,
                    notice.subject,
                )
                return
            delay = _backoff(target.retry_backoff, attempt)
            _log.warning(
                "notice delivery failed; retrying job=%s target=%s attempt=%d retry_in_s=%g "
                "error=%r",
                notice.job_name,
                target.name,
                attempt,
                delay.total_seconds(),
                error,
            )
            if self._clock.wait(delay.total_seconds(), self._abort):
                _log.error(
                    "notice not delivered; stopped before retrying job=%s target=%s subject=%r",
                    notice.job_name,
                    target.name,
                    notice.subject,
                )
                return

    def _record(self, delivery: Delivery, attempt: int, error: str | None) -> None:
        try:
            self._history.record_delivery(
                DeliveryRecord(
                    job_name=delivery.notice.job_name,
                    target=delivery.target.name,
                    kind=delivery.notice.event.value,
                    attempt=attempt,
                    at=self._clock.now(),
                    delivered=error is None,
                    run_id=delivery.notice.run_id,
                    error=error,
                )
            )
        except HistoryError as exc:
            _log.error("delivery not recorded target=%s error=%r", delivery.target.name, str(exc))


def _backoff(base: timedelta, attempt: int) -> timedelta:
    return base * min(1 << max(attempt - 1, 0), _MAX_BACKOFF_FACTOR)
