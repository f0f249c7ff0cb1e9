"""Delivering notices in the background, each target on its own, so a slow or dead target
never holds up a run, nor another target's notices.

Every target has a lane: a thread and a queue ordered by when each delivery is next due. An
attempt that fails goes back in the lane with a doubling wait, so the notices behind it are
not held up by its retries either; each attempt has a hard time cap (a mail server that
accepts a connection and never answers costs one cap, not the queue). Every attempt is
recorded in the notice journal. At close, what cannot be delivered within the time given is
recorded as not delivered, and close returns on time whatever a target is doing.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from cassy_scheduler.backoff import doubling
from cassy_scheduler.clock import Clock
from cassy_scheduler.config.targets import CommandChannel, EmailChannel, NotifyTarget
from cassy_scheduler.notify.journal import DeliveryRecord, JournalError, NoticeJournal
from cassy_scheduler.notify.notice import Notice
from cassy_scheduler.notify.senders import Sender

_log = logging.getLogger(__name__)
_MAX_BACKOFF_FACTOR = 16
_APPRISE_CAP_S = 60.0
STOPPED = "not delivered (or not confirmed): the scheduler stopped first"

SenderFactory = Callable[[NotifyTarget], Sender]


@dataclass(frozen=True)
class Delivery:
    target: NotifyTarget
    notice: Notice


def attempt_cap(target: NotifyTarget) -> float:
    """The longest one attempt may take: the channel's own timeout per step, a few steps."""
    channel = target.channel
    if isinstance(channel, EmailChannel):
        return 3 * channel.timeout.total_seconds()  # connect, greeting and TLS, the message
    if isinstance(channel, CommandChannel):
        return channel.timeout.total_seconds() + 5.0
    return _APPRISE_CAP_S


@dataclass(order=True)
class _Queued:
    due: float
    seq: int
    attempt: int = field(compare=False)
    delivery: Delivery = field(compare=False)


class DeliveryWorker:
    """One lane per target; submit() never blocks; close() when done."""

    def __init__(self, journal: NoticeJournal, clock: Clock, senders: SenderFactory) -> None:
        self._journal = journal
        self._clock = clock
        self._senders = senders
        self._lock = threading.Condition()
        self._lanes: dict[str, _Lane] = {}
        self._closed = False
        self._recording = True

    def submit(self, delivery: Delivery) -> None:
        with self._lock:
            if self._closed:
                _log.error(
                    "notice dropped; notifications closed job=%s target=%s subject=%r",
                    delivery.notice.job_name,
                    delivery.target.name,
                    delivery.notice.subject,
                )
                return
            lane = self._lanes.get(delivery.target.name)
            if lane is None:
                lane = self._lanes[delivery.target.name] = _Lane(self, delivery.target.name)
            lane.put(delivery)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every submitted delivery is done; False when timeout_s passed first."""
        with self._lock:
            return self._lock.wait_for(self._idle, timeout_s)

    def close(self, timeout_s: float) -> None:
        """Deliver what is due within timeout_s; record the rest as not delivered, on time."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            deadline = self.now() + timeout_s
            self._lock.wait_for(lambda: self._nothing_due_by(deadline), timeout_s)
            left = [(lane, item) for lane in self._lanes.values() for item in lane.abandon()]
            for lane in self._lanes.values():
                lane.stop()
            self._lock.notify_all()
        for lane, (attempt, delivery) in left:
            self._record(delivery, attempt, STOPPED)
            _log.error(
                "notice not delivered; the scheduler stopped job=%s target=%s subject=%r",
                delivery.notice.job_name,
                lane.name,
                delivery.notice.subject,
            )
        with self._lock:
            self._recording = False  # the journal closes next; stuck attempts write nothing

    def _idle(self) -> bool:
        return all(lane.idle for lane in self._lanes.values())

    def _nothing_due_by(self, deadline: float) -> bool:
        """No lane sends anything more before `deadline` (a retry due after it waits in vain)."""
        return all(lane.waits_past(deadline) for lane in self._lanes.values())

    def now(self) -> float:
        return self._clock.monotonic()

    def wait(self, seconds: float, wake: threading.Event) -> None:
        self._clock.wait(seconds, wake)

    # -- one attempt, from a lane's thread --

    def attempt(self, delivery: Delivery, attempt: int) -> str | None:
        """Try once within the target's cap; the error, or None when it was delivered."""
        target, notice = delivery.target, delivery.notice
        outcome: list[str | None] = []

        def send() -> None:
            try:
                self._senders(target).send(notice)
                outcome.append(None)
            except Exception as exc:  # a sender's bug counts as a failed attempt too
                outcome.append(str(exc) or repr(exc))

        cap = attempt_cap(target)
        sender = threading.Thread(target=send, name=f"notify-send-{target.name}", daemon=True)
        sender.start()
        sender.join(cap)
        error = outcome[0] if outcome else f"no answer within {cap:g} s (the attempt's cap)"
        self._record(delivery, attempt, error)
        return error

    def _record(self, delivery: Delivery, attempt: int, error: str | None) -> None:
        with self._lock:
            if not self._recording:
                return
            try:
                self._journal.record_delivery(
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
            except JournalError as exc:
                _log.error(
                    "delivery not recorded target=%s error=%r", delivery.target.name, str(exc)
                )


class _Lane:
    """One target's queue and the thread that works through it."""

    def __init__(self, worker: DeliveryWorker, name: str) -> None:
        self.name = name
        self._worker = worker
        self._lock = worker._lock  # one condition for every lane: idleness is global
        self._queue: list[_Queued] = []
        self._seq = itertools.count()
        self._busy: _Queued | None = None
        self._stopped = False
        self._wake = threading.Event()  # set by put() and stop(): look at the queue again
        self._thread = threading.Thread(target=self._loop, name=f"notify-{name}", daemon=True)
        self._thread.start()

    @property
    def idle(self) -> bool:
        return not self._queue and self._busy is None

    def waits_past(self, deadline: float) -> bool:
        """Idle, or holding only retries due after `deadline` (the caller holds the lock)."""
        return self._busy is None and all(item.due > deadline for item in self._queue)

    def put(self, delivery: Delivery, attempt: int = 1, due: float | None = None) -> None:
        """Queue a delivery (the caller holds the lock)."""
        when = self._worker.now() if due is None else due
        heapq.heappush(self._queue, _Queued(when, next(self._seq), attempt, delivery))
        self._wake.set()
        self._lock.notify_all()

    def abandon(self) -> list[tuple[int, Delivery]]:
        """Everything not yet delivered, taken out of the lane (the caller holds the lock)."""
        left = [(item.attempt, item.delivery) for item in sorted(self._queue)]
        if self._busy is not None:
            left.append((self._busy.attempt, self._busy.delivery))
        self._queue.clear()
        self._busy = None
        return left

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def _loop(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            try:
                error = self._worker.attempt(item.delivery, item.attempt)
            except Exception:  # one bad delivery must not end the lane
                _log.exception("notification worker error target=%s", self.name)
                error = "internal error"
            with self._lock:
                if self._busy is item:
                    self._busy = None
                    if not self._stopped:
                        self._after(item, error)
                self._lock.notify_all()

    def _next(self) -> _Queued | None:
        """The next due delivery, marked busy, once it is due; None when the lane stops.

        Waits go through the clock (a test's clock needs no sleeping) and end early when
        put() or stop() sets the wake event.
        """
        while True:
            with self._lock:
                if self._stopped:
                    return None
                now = self._worker.now()
                if self._queue and self._queue[0].due <= now:
                    self._busy = heapq.heappop(self._queue)
                    return self._busy
                wait = self._queue[0].due - now if self._queue else None
                self._wake.clear()
            if wait is None:
                self._wake.wait()
            else:
                self._worker.wait(wait, self._wake)

    def _after(self, item: _Queued, error: str | None) -> None:
        target, notice = item.delivery.target, item.delivery.notice
        if error is None:
            _log.info(
                "notice delivered job=%s target=%s event=%s attempt=%d",
                notice.job_name,
                target.name,
                notice.event.value,
                item.attempt,
            )
            return
        if item.attempt > target.retries:
            _log.error(
                "notice not delivered job=%s target=%s attempts=%d error=%r subject=%r",
                notice.job_name,
                target.name,
                item.attempt,
                error,
                notice.subject,
            )
            return
        delay = doubling(target.retry_backoff, item.attempt, _MAX_BACKOFF_FACTOR)
        _log.warning(
            "notice delivery failed; retrying job=%s target=%s attempt=%d retry_in_s=%g error=%r",
            notice.job_name,
            target.name,
            item.attempt,
            delay.total_seconds(),
            error,
        )
        self.put(item.delivery, item.attempt + 1, self._worker.now() + delay.total_seconds())
