"""The short demo's verdict waits for runs still in flight, and its schedules leave room."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cassy_scheduler.history import RunHistory
from cassy_scheduler.records import Outcome, RunRecord
from cassy_scheduler.timetable import Schedule
from tests.unit.fakes import FakeClock
from tools.demo.__main__ import _last_cell
from tools.demo.configs import short_schedules
from tools.demo.verdict import Verdict, judge, standing

T0 = datetime(2026, 12, 1, 18, 13, 54, tzinfo=UTC)


def run(job_type: str, outcome: Outcome, at: datetime = T0) -> RunRecord:
    return RunRecord(1, job_type, job_type, at, outcome)


def test_a_run_that_finishes_after_the_deadline_is_waited_for() -> None:
    at_deadline = [
        run("snapshot", Outcome.SUCCEEDED),
        run("incremental", Outcome.SUCCEEDED),
        run("cluster-wide", Outcome.RUNNING),
    ]
    assert judge(standing(at_deadline, {}, {})) is Verdict.WAIT
    later = [*at_deadline[:2], run("cluster-wide", Outcome.SUCCEEDED)]
    assert judge(standing(later, {}, {})) is Verdict.PASS


def test_a_run_due_but_still_queued_is_waited_for_too() -> None:
    runs = [run("snapshot", Outcome.SUCCEEDED), run("incremental", Outcome.SUCCEEDED)]
    due = {"cluster-wide": T0 + timedelta(seconds=60)}
    assert judge(standing(runs, due, {})) is Verdict.WAIT
    recorded = {"cluster-wide": T0 + timedelta(seconds=60)}
    skipped = [*runs, run("cluster-wide", Outcome.SKIPPED)]
    assert judge(standing(skipped, due, recorded)) is Verdict.FAIL


def test_a_type_that_failed_with_nothing_in_flight_fails_at_once() -> None:
    runs = [run("snapshot", Outcome.SUCCEEDED), run("incremental", Outcome.FAILED)]
    found = standing([*runs, run("cluster-wide", Outcome.SUCCEEDED)], {}, {})
    assert judge(found) is Verdict.FAIL and found.missing == {"incremental"}


def test_short_schedules_start_soon_in_order_and_25_seconds_apart() -> None:
    for start in (T0, T0.replace(minute=59, second=50), T0.replace(second=0)):
        firsts = {
            name: Schedule.parse(expression).next_after(start)
            for name, expression in zip(
                ("snapshot", "incremental", "cluster-wide"), short_schedules(start), strict=True
            )
        }
        assert firsts["snapshot"] == start + timedelta(seconds=20)
        assert firsts["cluster-wide"] == start + timedelta(seconds=45)
        assert firsts["incremental"] == start + timedelta(seconds=70)
        second = Schedule.parse(short_schedules(start)[0]).next_after(firsts["snapshot"])
        assert second - firsts["snapshot"] == timedelta(minutes=2)


def test_the_live_table_shows_the_last_run_and_a_newer_skip_beside_it(tmp_path: Path) -> None:
    with RunHistory.open(tmp_path / "history.sqlite", FakeClock(T0)) as history:
        assert _last_cell(history, "snapshot")[0].plain == "-"
        started = history.start_run("snapshot", "snapshot", T0)
        history.finish_run(started.run_id, Outcome.SUCCEEDED, snapshot_id="0a1b2c3d-4e5f")
        history.record_skipped("snapshot", "snapshot", T0 + timedelta(minutes=2), "still runs")
        cell, snapshot = _last_cell(history, "snapshot")
    assert cell.plain == "succeeded 18:13:54\nskipped 18:15:54"
    assert snapshot == "0a1b2c3d"
