"""Which runs each target hears about, and delivery that retries, records and never blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cassy_scheduler.config.model import SchedulerConfig
from cassy_scheduler.history import RunHistory
from cassy_scheduler.notify.dispatcher import Dispatcher
from cassy_scheduler.notify.journal import NoticeJournal
from cassy_scheduler.records import Failure, Outcome
from cassy_scheduler.runtime import Runtime
from cassy_scheduler.scheduling.locks import RunLocks
from cassy_scheduler.scheduling.runner import Runner
from tests.receivers import free_port, smtp_receiver
from tests.unit.fakes import T0, FakeCassy, FakeClock
from tests.unit.notify_fakes import RecordingSender, config, result

TARGETS = """\
[notify.mail]
type = "command"
command = ["true"]
when = "{when}"
"""

SEQUENCE = [
    (Outcome.SUCCEEDED, None),
    (Outcome.FAILED, Failure.NODES_FAILED),
    (Outcome.FAILED, Failure.UNREACHABLE),
    (Outcome.TIMED_OUT, Failure.TIMED_OUT),
    (Outcome.SKIPPED, Failure.ALREADY_RUNNING),  # one overlap: routine
    (Outcome.SKIPPED, Failure.MISSED),
    (Outcome.SKIPPED, Failure.ALREADY_RUNNING),  # an overlap after a missed run: routine too
    (Outcome.SUCCEEDED, None),
    (Outcome.SKIPPED, Failure.ALREADY_RUNNING),
    (Outcome.SKIPPED, Failure.ALREADY_RUNNING),  # the second in a row: worth a notice
    (Outcome.SKIPPED, Failure.ALREADY_RUNNING),  # and the streak is not repeated
    (Outcome.SUCCEEDED, None),
    (Outcome.INTERRUPTED, Failure.STOPPED),
    (Outcome.SUCCEEDED, None),
]


@pytest.fixture
def history(tmp_path: Path) -> Iterator[RunHistory]:
    with RunHistory.open(tmp_path / "history.sqlite") as opened:
        yield opened


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[NoticeJournal]:
    with NoticeJournal.open(tmp_path / "history.sqlite") as opened:
        yield opened


def play(
    settings: SchedulerConfig, history: RunHistory, journal: NoticeJournal, sender: RecordingSender
) -> list[str]:
    """Record each run of SEQUENCE, tell the dispatcher, return the subjects sent."""
    dispatcher = Dispatcher(settings, history, journal, FakeClock(), sender.factory)
    try:
        for outcome, failure in SEQUENCE:
            if outcome is Outcome.SKIPPED:
                record = history.record_skipped("nightly", "snapshot", T0, "skipped", failure)
            else:
                record = history.start_run("nightly", "snapshot", T0)
                history.finish_run(record.run_id, outcome)
            dispatcher.run_finished(result(outcome, run_id=record.run_id, failure=failure))
        assert dispatcher.wait_idle(30)
    finally:
        dispatcher.close(30)
    return [n.facts["outcome"] + "/" + str(n.facts["failure"]) for _, n in sender.notices]


def test_failure_sends_every_failed_timed_out_interrupted_and_repeated_overlap(
    tmp_path: Path, history: RunHistory, journal: NoticeJournal
) -> None:
    sent = play(
        config(tmp_path, TARGETS.format(when="failure")), history, journal, RecordingSender()
    )
    assert sent == [
        "failed/nodes-failed",
        "failed/unreachable",
        "timed_out/timed-out",
        "skipped/already-running",
        "interrupted/stopped",
    ]


def test_change_sends_the_first_failure_and_the_first_recovery_only(
    tmp_path: Path, history: RunHistory, journal: NoticeJournal
) -> None:
    sent = play(
        config(tmp_path, TARGETS.format(when="change")), history, journal, RecordingSender()
    )
    assert sent == [
        "failed/nodes-failed",
        "succeeded/None",
        "interrupted/stopped",
        "succeeded/None",
    ]


def test_a_job_overrides_the_targets_policy(
    tmp_path: Path, history: RunHistory, journal: NoticeJournal
) -> None:
    settings = config(
        tmp_path,
        TARGETS.format(when="failure"),
        job_extra='notify = [{target = "mail", when = "always"}]',
    )
    sent = play(settings, history, journal, RecordingSender())
    assert len(sent) == len(SEQUENCE)


def test_a_failing_sender_is_retried_with_backoff_and_each_attempt_recorded(
    tmp_path: Path, history: RunHistory, journal: NoticeJournal
) -> None:
    settings = config(tmp_path, TARGETS.format(when="always") + 'retry_backoff = "5s"\n')
    sender = RecordingSender(fail_first=2)
    clock = FakeClock()
    dispatcher = Dispatcher(settings, history, journal, clock, sender.factory)
    dispatcher.run_finished(result(run_id=7))
    assert dispatcher.wait_idle(30)
    dispatcher.close(30)
    assert clock.waits == [5.0, 10.0]
    attempts = journal.deliveries(run_id=7)
    assert [(d.attempt, d.delivered) for d in attempts] == [(1, False), (2, False), (3, True)]
    assert attempts[0].error == "attempt 1 refused" and attempts[0].target == "mail"
    assert len(sender.notices) == 1


MAIL_DOWN = """\
[notify.mail]
type = "email"
host = "127.0.0.1"
port = {port}
security = "plain"
sender = "backups@example.com"
to = ["ops@example.com"]
when = "always"
retries = 2
retry_backoff = "30s"
"""


def test_smtp_down_leaves_the_outcome_unchanged_and_the_failure_in_history(
    tmp_path: Path, history: RunHistory, journal: NoticeJournal
) -> None:
    settings = config(tmp_path, MAIL_DOWN.format(port=free_port()))
    clock = FakeClock()
    cassy = FakeCassy()
    cassy.add_cluster("prod-cluster", ("127.0.0.2",))
    dispatcher = Dispatcher(settings, history, journal, clock)
    runner = Runner(cassy, history, RunLocks(tmp_path / "locks", clock), clock, [dispatcher])
    job = settings.job("nightly")
    first = runner.run(job, T0)
    second = runner.run(job, T0)  # not held up by the first run's notice
    assert dispatcher.wait_idle(60)
    dispatcher.close(30)
    assert (first.outcome, second.outcome) == (Outcome.SUCCEEDED, Outcome.SUCCEEDED)
    assert history.get_run(first.run_id or 0).outcome is Outcome.SUCCEEDED
    tries = journal.deliveries(run_id=first.run_id)
    assert [(d.attempt, d.delivered) for d in tries] == [(1, False), (2, False), (3, False)]
    assert tries[-1].error is not None and "Connection refused" in tries[-1].error


def test_the_dispatcher_mails_a_run_to_a_real_smtp_server(
    tmp_path: Path, history: RunHistory, journal: NoticeJournal
) -> None:
    with smtp_receiver() as receiver:
        settings = config(tmp_path, MAIL_DOWN.format(port=receiver.port))
        dispatcher = Dispatcher(settings, history, journal, FakeClock())
        dispatcher.run_finished(result(run_id=3))
        (mail,) = receiver.wait_for(1)
        assert dispatcher.wait_idle(30)
        dispatcher.close(30)
    assert mail.subject == "OK snapshot prod-cluster: 3 of 3 nodes completed"
    assert [d.delivered for d in journal.deliveries(run_id=3)] == [True]


def test_a_reloaded_config_changes_targets_and_policies_at_once(tmp_path: Path) -> None:
    quiet = config(tmp_path, TARGETS.format(when="failure"), "")
    sender = RecordingSender()
    clock = FakeClock()
    with Runtime(quiet, clock, senders=sender.factory) as runtime:
        daemon = runtime.daemon()
        daemon.start()
        runtime.notifier.run_finished(result(Outcome.FAILED, run_id=1, failed=("127.0.0.2",)))
        config(tmp_path, TARGETS.format(when="always"), 'notify = ["mail"]')
        assert daemon.reload(T0, "test")
        runtime.notifier.run_finished(result(Outcome.SUCCEEDED, run_id=2))
        assert runtime.notifier.wait_idle(30)
    assert [n.run_id for _, n in sender.notices] == [2]
