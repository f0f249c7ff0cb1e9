"""Schedules checked against croniter as an independent reference, and against Debian cron's
documented DST rules where croniter differs from it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter  # type: ignore[import-untyped]

from cassy_scheduler.timetable import (
    JobTimetable,
    MissedRunPolicy,
    Schedule,
    ScheduleError,
    decide_misfire,
    jitter_offset,
    load_timezone,
)

START = datetime(2025, 6, 10, 13, 17, 42, tzinfo=UTC)


def reference(expr: str, start: datetime, n: int, zone: str = "UTC") -> list[datetime]:
    kwargs = {"second_at_beginning": True} if len(expr.split()) == 6 else {}
    it = croniter(expr, start.astimezone(ZoneInfo(zone)), **kwargs)
    return [it.get_next(datetime).astimezone(UTC) for _ in range(n)]


@pytest.mark.parametrize(
    "expr",
    [
        "30 0 * */1 *",  # the seed's daily snapshot
        "15 0 * * 0",  # the seed's weekly cluster-wide backup
        "0 * * * *",  # the seed's hourly incremental backup
        "*/15 9-17 * * 1-5",
        "0 0 1,15 * *",
        "5 4 * * SUN",
        "0 12 * JAN,JUL *",
    ],
)
@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York"])
def test_five_field_expressions_match_croniter(expr: str, zone: str) -> None:
    schedule = Schedule.parse(expr, zone)
    assert schedule.next_n(START, 30) == reference(expr, START, 30, zone)


@pytest.mark.parametrize(
    "expr", ["*/10 * * * * *", "0 30 0 * * *", "15,45 */5 * * * *", "7 0 3 * * 0"]
)
def test_leading_seconds_field_matches_croniter(expr: str) -> None:
    assert Schedule.parse(expr).next_n(START, 40) == reference(expr, START, 40)


@pytest.mark.parametrize(
    ("nickname", "expr"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_nicknames_match_their_expansion(nickname: str, expr: str) -> None:
    assert Schedule.parse(nickname).next_n(START, 5) == reference(expr, START, 5)
    assert Schedule.parse(nickname.upper()).expression == nickname.upper()


def test_results_are_aware_utc_and_strictly_after() -> None:
    schedule = Schedule.parse("30 0 * * *", "Europe/Berlin")
    exactly = datetime(2025, 6, 9, 22, 30, tzinfo=UTC)  # 00:30 in Berlin
    fire = schedule.next_after(exactly)
    assert fire == exactly + timedelta(days=1)
    assert fire.tzinfo is UTC


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ScheduleError, match="no timezone"):
        Schedule.parse("0 * * * *").next_after(datetime(2025, 1, 1))


def local(zone: str, *parts: int, fold: int = 0) -> datetime:
    year, month, day, hour, minute, *rest = parts
    second = rest[0] if rest else 0
    wall = datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(zone), fold=fold)
    return wall.astimezone(UTC)


# Spring forward: Berlin skips 02:00-03:00 on 2025-03-30, New York on 2025-03-09.
# Debian cron runs a job whose time falls in the gap once, right after the gap; croniter agrees.
@pytest.mark.parametrize(
    ("zone", "day"), [("Europe/Berlin", (2025, 3, 30)), ("America/New_York", (2025, 3, 9))]
)
@pytest.mark.parametrize("expr", ["30 2 * * *", "0 30 2 * * *"])
def test_spring_forward_gap_runs_once_after_the_gap(
    zone: str, day: tuple[int, int, int], expr: str
) -> None:
    start = local(zone, *day, 0, 0)
    fires = Schedule.parse(expr, zone).next_n(start, 2)
    assert fires[0] == local(zone, *day, 3, 0)
    next_day = (day[0], day[1], day[2] + 1)
    assert fires[1] == local(zone, *next_day, 2, 30)
    assert fires == reference(expr, start, 2, zone)


# Fall back: Berlin repeats 02:00-03:00 on 2025-10-26, New York repeats 01:00-02:00 on
# 2025-11-02. Debian cron runs a fixed-time job once, on the first pass (cronsim documents and
# tests this). croniter runs it twice, so here the expected values are Debian's, not croniter's.
@pytest.mark.parametrize(
    ("zone", "day", "expr", "hour"),
    [
        ("Europe/Berlin", (2025, 10, 26), "30 2 * * *", 2),
        ("America/New_York", (2025, 11, 2), "30 1 * * *", 1),
        ("Europe/Berlin", (2025, 10, 26), "10 30 2 * * *", 2),
    ],
)
def test_fall_back_overlap_runs_once_on_the_first_pass(
    zone: str, day: tuple[int, int, int], expr: str, hour: int
) -> None:
    start = local(zone, *day, 0, 0)
    second = 10 if len(expr.split()) == 6 else 0
    fires = Schedule.parse(expr, zone).next_n(start, 2)
    first_pass = local(zone, *day, hour, 30, second, fold=0)
    assert fires[0] == first_pass
    assert fires[1] - fires[0] == timedelta(days=1, hours=1)
    croniter_fires = reference(expr, start, 2, zone)
    assert croniter_fires[1] == local(zone, *day, hour, 30, second, fold=1)  # the difference


def test_fall_back_overlap_from_inside_the_second_pass_does_not_go_back() -> None:
    zone = "Europe/Berlin"
    inside = local(zone, 2025, 10, 26, 2, 15, fold=1)  # after the 02:30 first-pass run
    fire = Schedule.parse("30 2 * * *", zone).next_after(inside)
    assert fire == local(zone, 2025, 10, 27, 2, 30)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
def test_hourly_jobs_follow_real_hours_across_dst(zone: str) -> None:
    for day in ((2025, 3, 30), (2025, 10, 26), (2025, 3, 9), (2025, 11, 2)):
        start = local(zone, *day, 0, 0)
        fires = Schedule.parse("0 * * * *", zone).next_n(start, 6)
        assert fires == reference("0 * * * *", start, 6, zone)
        assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(fires))


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("30 0 * *", "has 4 field(s)"),
        ("61 * * * *", 'minute field "61"'),
        ("0 24 * * *", 'hour field "24"'),
        ("0 0 32 * *", 'day-of-month field "32"'),
        ("0 0 * 13 *", 'month field "13"'),
        ("0 0 * * 8", 'day-of-week field "8"'),
        ("61 0 0 * * *", 'second field "61"'),
        ("0 0 31 2 *", "never fires: day 31 of the month does not exist in Feb"),
        ("0 0 31 4,6,9,11 *", "does not exist in Apr, Jun, Sep, Nov (at most 30 days)"),
        ("@fortnightly", "not a schedule nickname"),
        ("@reboot", "not a schedule nickname"),
        ("", "empty"),
    ],
)
def test_bad_expressions_say_what_is_wrong_and_give_an_example(expr: str, words: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule.parse(expr)
    assert words in caught.value.message
    assert caught.value.hint


def test_unknown_timezone_suggests_close_names() -> None:
    with pytest.raises(ScheduleError) as caught:
        load_timezone("Europe/Berln")
    assert "Europe/Berlin" in caught.value.hint
    with pytest.raises(ScheduleError) as caught:
        load_timezone("new_york")
    assert "America/New_York" in caught.value.hint


def test_jitter_is_stable_per_job_and_fire_and_within_bounds() -> None:
    fire = datetime(2025, 6, 10, 0, 30, tzinfo=UTC)
    jitter = timedelta(minutes=5)
    offsets = {jitter_offset("nightly", fire + timedelta(days=d), jitter) for d in range(50)}
    assert all(timedelta(0) <= o < jitter for o in offsets)
    assert len(offsets) > 10
    assert jitter_offset("nightly", fire, jitter) == jitter_offset("nightly", fire, jitter)
    assert jitter_offset("nightly", fire, timedelta(0)) == timedelta(0)


def test_job_timetable_applies_jitter_to_the_scheduled_instant() -> None:
    timetable = JobTimetable("nightly", Schedule.parse("30 0 * * *"), timedelta(minutes=5))
    fires = timetable.next_fires(START, 3)
    assert [f.scheduled_for for f in fires] == reference("30 0 * * *", START, 3)
    assert all(f.scheduled_for <= f.run_at < f.scheduled_for + timedelta(minutes=5) for f in fires)
    assert timetable.next_fire(START) == fires[0]


HOURLY = Schedule.parse("0 * * * *")
LAST = datetime(2025, 6, 10, 9, 0, tzinfo=UTC)


def test_nothing_is_missed_without_an_earlier_run_or_before_the_next_fire() -> None:
    assert decide_misfire(HOURLY, None, LAST, MissedRunPolicy.RUN_ONCE, None).missed_count == 0
    soon = LAST + timedelta(minutes=59)
    decision = decide_misfire(HOURLY, LAST, soon, MissedRunPolicy.RUN_ONCE, None)
    assert decision.missed_count == 0
    assert decision.catch_up_for is None


def test_run_once_coalesces_missed_runs_into_the_latest() -> None:
    now = LAST + timedelta(hours=5, minutes=20)
    decision = decide_misfire(HOURLY, LAST, now, MissedRunPolicy.RUN_ONCE, None)
    assert decision.missed_count == 5
    assert decision.catch_up_for == LAST + timedelta(hours=5)


def test_run_once_skips_when_the_latest_missed_run_is_beyond_the_grace() -> None:
    now = LAST + timedelta(hours=5, minutes=20)
    late = decide_misfire(HOURLY, LAST, now, MissedRunPolicy.RUN_ONCE, timedelta(minutes=10))
    assert late.catch_up_for is None
    assert "misfire_grace" in late.reason
    ok = decide_misfire(HOURLY, LAST, now, MissedRunPolicy.RUN_ONCE, timedelta(minutes=30))
    assert ok.catch_up_for == LAST + timedelta(hours=5)


def test_skip_drops_every_missed_run() -> None:
    now = LAST + timedelta(hours=3)
    decision = decide_misfire(HOURLY, LAST, now, MissedRunPolicy.SKIP, None)
    assert decision.missed_count == 3
    assert decision.latest_missed == now
    assert decision.catch_up_for is None


def test_many_missed_runs_are_counted_up_to_a_limit_and_the_latest_still_found() -> None:
    every_second = Schedule.parse("* * * * * *")
    now = LAST + timedelta(days=2, seconds=7)
    decision = decide_misfire(
        every_second, LAST, now, MissedRunPolicy.RUN_ONCE, None, count_limit=100
    )
    assert decision.count_is_lower_bound
    assert decision.missed_count == 100
    assert decision.catch_up_for == now


def test_latest_between_finds_sparse_fires() -> None:
    yearly = Schedule.parse("@yearly")
    start = datetime(2020, 6, 1, tzinfo=UTC)
    end = datetime(2024, 6, 1, tzinfo=UTC)
    assert yearly.latest_between(start, end) == datetime(2024, 1, 1, tzinfo=UTC)
    assert yearly.latest_between(end, end + timedelta(days=30)) is None
