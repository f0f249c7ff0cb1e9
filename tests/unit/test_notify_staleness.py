"""Staleness with an injected clock: no success for alert_after alerts once, recovery once,
across restarts; the daemon looks every stale_check; `check` says the same."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from cassy_scheduler.history import RunHistory
from cassy_scheduler.notify.dispatcher import Dispatcher
from cassy_scheduler.notify.journal import NoticeJournal
from cassy_scheduler.notify.staleness import StalenessWatch
from cassy_scheduler.preflight import Severity, preflight
from cassy_scheduler.records import Outcome
from cassy_scheduler.runtime import Runtime
from tests.unit.fakes import T0, FakeCassy, FakeClock
from tests.unit.notify_fakes import RecordingSender, config, result

TARGET = """\
[notify.mail]
type = "command"
command = ["true"]
when = "failure"
"""
JOB = 'notify = ["mail"]\nalert_after = "26h"'


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def history(tmp_path: Path, clock: FakeClock) -> Iterator[RunHistory]:
    with RunHistory.open(tmp_path / "history.sqlite", clock) as opened:
        yield opened


def record(history: RunHistory, outcome: Outcome) -> int:
    run = history.start_run("nightly", "snapshot", T0)
    history.finish_run(run.run_id, outcome)
    return run.run_id


class Watched:
    def __init__(self, tmp_path: Path, history: RunHistory, clock: FakeClock) -> None:
        self.settings = config(tmp_path, TARGET, JOB)
        self.sender = RecordingSender()
        self.history, self.clock = history, clock
        self.journal = NoticeJournal.open(tmp_path / "history.sqlite")
        self.dispatcher = Dispatcher(
            self.settings, history, self.journal, clock, self.sender.factory
        )
        self.watch = StalenessWatch(self.settings, history, self.journal, clock, self.dispatcher)

    def at(self, offset: timedelta) -> list[str]:
        """Move the clock, check every job, return the subjects sent so far."""
        self.clock.set(T0 + offset)
        self.watch.tick()
        assert self.dispatcher.wait_idle(30)
        return [n.subject for _, n in self.sender.notices]

    def restart(self) -> None:
        self.dispatcher.close(30)
        self.dispatcher = Dispatcher(
            self.settings, self.history, self.journal, self.clock, self.sender.factory
        )
        self.watch = StalenessWatch(
            self.settings, self.history, self.journal, self.clock, self.dispatcher
        )


def test_a_job_without_success_for_alert_after_alerts_once_then_recovers_once(
    tmp_path: Path, history: RunHistory, clock: FakeClock
) -> None:
    w = Watched(tmp_path, history, clock)
    record(history, Outcome.SUCCEEDED)
    assert w.at(hours(0)) == []
    clock.set(T0 + hours(1))
    record(history, Outcome.FAILED)  # failing runs do not reset the count
    assert w.at(hours(25)) == []
    assert w.at(hours(26)) == [
        "STALE snapshot prod-cluster: no successful run for 1d2h (alert_after 1d2h)"
    ]
    assert len(w.at(hours(30))) == 1
    w.restart()  # the alert is remembered in the history, not repeated
    assert len(w.at(hours(40))) == 1
    clock.set(T0 + hours(41))
    run_id = record(history, Outcome.SUCCEEDED)
    w.watch.run_finished(result(Outcome.SUCCEEDED, run_id=run_id))
    assert w.dispatcher.wait_idle(30)
    sent = [n for _, n in w.sender.notices]
    assert [n.event.value for n in sent] == ["stale", "fresh"]
    assert sent[1].subject == "RECOVERED snapshot prod-cluster: a run succeeded again"
    assert not sent[1].failing
    assert len(w.at(hours(42))) == 2 and len(w.at(hours(80))) == 3  # stale again later
    w.dispatcher.close(30)


def test_a_job_that_never_ran_counts_from_when_the_watch_first_saw_it(
    tmp_path: Path, history: RunHistory, clock: FakeClock
) -> None:
    w = Watched(tmp_path, history, clock)
    assert w.at(hours(0)) == []
    w.restart()
    assert w.at(hours(25.9)) == []
    (subject,) = w.at(hours(26))
    assert subject.startswith("STALE snapshot prod-cluster: no successful run since watching")
    w.dispatcher.close(30)


def test_the_daemon_checks_staleness_every_stale_check_even_for_a_disabled_job(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = config(tmp_path, TARGET, JOB + "\nenabled = false\n")
    sender = RecordingSender()
    with Runtime(settings, clock, senders=sender.factory) as runtime:
        daemon = runtime.daemon()
        daemon.start()
        daemon.tick(T0)
        daemon.tick(T0 + hours(26))
        daemon.tick(T0 + hours(26) + timedelta(seconds=30))  # within stale_check: no look
        daemon.tick(T0 + hours(27))
        assert runtime.notifier.wait_idle(30)
        with NoticeJournal.open_read_only(settings.runtime.history_path) as journal:
            state = journal.stale_state("nightly")
    assert [n.event.value for _, n in sender.notices] == ["stale"]
    assert state is not None and state.stale_since == T0 + hours(26)


def test_check_reports_a_stale_job_as_critical_and_a_fresh_one_as_ok(
    tmp_path: Path, history: RunHistory, clock: FakeClock
) -> None:
    settings = config(tmp_path, TARGET, JOB)
    cassy = FakeCassy()
    cassy.add_cluster("prod-cluster")
    record(history, Outcome.SUCCEEDED)
    fresh = [
        f for f in preflight(settings, cassy, T0 + hours(2), history) if "nightly" in f.subject
    ]
    assert (Severity.OK, "fresh: last success 2h ago (alert_after 1d2h)") in [
        (f.severity, f.message) for f in fresh
    ]
    stale = preflight(settings, cassy, T0 + hours(30), history)
    critical = [f.message for f in stale if f.severity is Severity.CRITICAL]
    assert critical == ["STALE: last success 1d6h ago (alert_after 1d2h)"]
