"""Each target delivers on its own: a target that hangs or keeps failing holds up no other
target and no newer notice, every attempt has a cap, and close() returns on time with what
was left recorded as not delivered."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from cassy_scheduler.config.targets import EmailChannel, NotifyTarget, NotifyWhen, SmtpSecurity
from cassy_scheduler.notify import DeliveryError
from cassy_scheduler.notify.journal import NoticeJournal
from cassy_scheduler.notify.notice import Event, Notice
from cassy_scheduler.notify.worker import STOPPED, Delivery, DeliveryWorker, attempt_cap
from tests.unit.fakes import FakeClock


def target(name: str, *, retries: int = 0, timeout_s: float = 0.2) -> NotifyTarget:
    channel = EmailChannel(
        "127.0.0.1",
        25,
        SmtpSecurity.PLAIN,
        "a@example.com",
        ("b@example.com",),
        timeout=timedelta(seconds=timeout_s),
    )
    return NotifyTarget(name, channel, NotifyWhen.ALWAYS, "x.toml", 1, retries, timedelta(10))


def notice(subject: str) -> Notice:
    return Notice(Event.RUN, "nightly", subject, subject, subject, {}, failing=True, run_id=1)


class Senders:
    """`good` delivers, `dead` refuses every attempt, `stuck` never answers until released."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, str]] = []
        self.attempts: dict[str, int] = {}
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, chosen: NotifyTarget) -> Senders.One:
        return Senders.One(self, chosen.name)

    class One:
        def __init__(self, owner: Senders, name: str) -> None:
            self.owner, self.name = owner, name

        def describe(self) -> str:
            return self.name

        def send(self, sent: Notice) -> None:
            with self.owner.lock:
                self.owner.attempts[self.name] = self.owner.attempts.get(self.name, 0) + 1
            if self.name == "dead":
                raise DeliveryError("connection refused")
            if self.name == "stuck":
                self.owner.release.wait(30)
            with self.owner.lock:
                self.owner.delivered.append((self.name, sent.subject))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[NoticeJournal]:
    with NoticeJournal.open(tmp_path / "history.sqlite") as opened:
        yield opened


def test_a_stuck_and_a_dead_target_hold_up_no_other_target(journal: NoticeJournal) -> None:
    senders = Senders()
    worker = DeliveryWorker(journal, FakeClock(), senders)
    stuck, dead, good = target("stuck", timeout_s=20), target("dead", retries=5), target("good")
    try:
        for subject in ("FAILED first", "FAILED second"):
            for chosen in (stuck, dead, good):
                worker.submit(Delivery(chosen, notice(subject)))
        deadline = threading.Event()
        for _ in range(200):
            with senders.lock:
                if len([d for d in senders.delivered if d[0] == "good"]) == 2:
                    break
            deadline.wait(0.05)
        with senders.lock:
            assert [s for name, s in senders.delivered if name == "good"] == [
                "FAILED first",
                "FAILED second",
            ]
            assert not any(name == "stuck" for name, _ in senders.delivered)
    finally:
        worker.close(1.0)
        senders.release.set()
    records = journal.deliveries()
    stuck_records = [r for r in records if r.target == "stuck"]
    assert {r.error for r in stuck_records} == {STOPPED} and len(stuck_records) == 2
    dead_records = [r for r in records if r.target == "dead"]
    assert all(not r.delivered for r in dead_records)
    assert max(r.attempt for r in dead_records) >= 2  # its retries went on beside the others


def test_an_attempt_that_never_answers_is_cut_at_its_cap(journal: NoticeJournal) -> None:
    senders = Senders()
    worker = DeliveryWorker(journal, FakeClock(), senders)
    stuck = target("stuck", timeout_s=0.1)
    assert attempt_cap(stuck) == pytest.approx(0.3)
    try:
        worker.submit(Delivery(stuck, notice("FAILED")))
        assert worker.wait_idle(10)
    finally:
        worker.close(1.0)
        senders.release.set()
    (record,) = journal.deliveries()
    assert not record.delivered and record.error == "no answer within 0.3 s (the attempt's cap)"


class FlakyOnce(Senders):
    """The first attempt fails, once `gate` opens; every later one delivers."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def __call__(self, chosen: NotifyTarget) -> Senders.One:
        if self.attempts:
            return Senders.One(self, chosen.name)
        self.gate.wait(30)  # both notices are queued before the first attempt ends
        return Senders.One(self, "dead")


def test_a_retry_waiting_does_not_hold_up_the_next_notice(journal: NoticeJournal) -> None:
    senders = FlakyOnce()
    worker = DeliveryWorker(journal, FakeClock(), senders)
    flaky = target("flaky", retries=1)
    try:
        worker.submit(Delivery(flaky, notice("first")))
        worker.submit(Delivery(flaky, notice("second")))
        senders.gate.set()
        assert worker.wait_idle(10)
    finally:
        worker.close(1.0)
    assert [s for _, s in senders.delivered] == ["second", "first"]


def test_close_does_not_wait_for_a_retry_due_after_its_deadline(journal: NoticeJournal) -> None:
    """A retry due in ten days cannot be sent within close's minute: it is recorded as not
    delivered at once, and close returns without waiting the minute out."""
    senders = FlakyOnce()
    senders.gate.set()
    worker = DeliveryWorker(journal, _StillClock(), senders)
    worker.submit(Delivery(target("flaky", retries=1), notice("first")))
    closing = threading.Thread(target=worker.close, args=(3600.0,))
    with worker._lock:
        worker._lock.wait_for(lambda: bool(journal.deliveries()), 30)
    closing.start()
    closing.join(120)  # far below the hour close was given
    assert not closing.is_alive()
    assert [(r.delivered, r.error) for r in journal.deliveries()][-1] == (False, STOPPED)


class _StillClock(FakeClock):
    """A clock whose waits pass no time: a retry ten days off stays ten days off."""

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if stop is None:
            return False
        return stop.wait(min(seconds, 0.05))
