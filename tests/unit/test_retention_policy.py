"""Retention decisions: restic's forget rules over good chains, and the rails of a safe prune."""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest

from cassy_scheduler.retention.policy import (
    Chain,
    Decision,
    Incremental,
    RetentionPolicy,
    State,
    Verdict,
    decide,
)

BERLIN = ZoneInfo("Europe/Berlin")
LATER = datetime(2031, 1, 1, tzinfo=UTC)  # `now` for tests where failed_grace plays no part
DAY = timedelta(days=1)


def sid(t: datetime) -> str:
    """A snapshot id that is its UTC instant, so expected sets can be written as dates."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def good(t: datetime, incrementals: tuple[Incremental, ...] = (), restoring: bool = False) -> Chain:
    return Chain(sid(t), t, State.GOOD, incrementals=incrementals, restoring=restoring)


def every(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    times = []
    while start <= end:
        times.append(start)
        start += step
    return times


def run(
    chains: Sequence[Chain],
    policy: RetentionPolicy,
    *,
    now: datetime = LATER,
    zone: tzinfo = UTC,
    extended: str | None = None,
) -> dict[str, Decision]:
    decisions = decide(chains, policy, now=now, zone=zone, extended=extended)
    return {d.chain.snapshot_id: d for d in decisions}


def kept(decisions: dict[str, Decision]) -> list[str]:
    """The kept snapshot ids, newest first (ids sort as their instants)."""
    return sorted((i for i, d in decisions.items() if d.verdict is Verdict.KEEP), reverse=True)


# --- 1. the calendar rules, each alone, over a year -------------------------------------------


def newest_of_buckets(
    times: Sequence[datetime], key: Callable[[datetime], Hashable], n: int
) -> set[str]:
    """Independent oracle: the newest instant of each bucket, then the n most recent of those;
    with fewer than n buckets, the oldest instant too (restic 0.17's rule)."""
    newest: dict[Hashable, datetime] = {}
    for t in times:
        if key(t) not in newest or t > newest[key(t)]:
            newest[key(t)] = t
    chosen = {sid(t) for t in sorted(newest.values(), reverse=True)[:n]}
    return chosen | {sid(min(times))} if len(newest) < n else chosen


ORACLE_KEYS: dict[str, Callable[[datetime], Hashable]] = {
    "hourly": lambda t: t.strftime("%Y-%m-%d %H"),
    "daily": lambda t: t.date(),
    "weekly": lambda t: t.date() - timedelta(days=t.weekday()),  # the Monday starting it
    "monthly": lambda t: t.strftime("%Y-%m"),
    "yearly": lambda t: t.year,
}

START_2026 = datetime(2026, 1, 1, tzinfo=UTC)
END_2026 = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
SERIES = {
    "6-hourly": every(START_2026, END_2026, timedelta(hours=6)),
    "daily": every(START_2026.replace(hour=3), END_2026, DAY),
    "weekly": every(datetime(2026, 1, 4, 22, tzinfo=UTC), END_2026, 7 * DAY),  # Sundays
}
RULES = [
    pytest.param(RetentionPolicy(keep_hourly=5), "hourly", 5, id="hourly5"),
    pytest.param(RetentionPolicy(keep_hourly=30), "hourly", 30, id="hourly30"),
    pytest.param(RetentionPolicy(keep_daily=10), "daily", 10, id="daily10"),
    pytest.param(RetentionPolicy(keep_weekly=8), "weekly", 8, id="weekly8"),
    pytest.param(RetentionPolicy(keep_monthly=6), "monthly", 6, id="monthly6"),
    pytest.param(RetentionPolicy(keep_monthly=24), "monthly", 24, id="monthly24"),
    pytest.param(RetentionPolicy(keep_yearly=3), "yearly", 3, id="yearly3"),
    pytest.param(RetentionPolicy(keep_last=7), "last", 7, id="last7"),
    pytest.param(RetentionPolicy(keep_within=timedelta(days=3)), "within", 3, id="within3d"),
]


@pytest.mark.parametrize("series", SERIES)
@pytest.mark.parametrize(("policy", "rule", "n"), RULES)
def test_each_rule_alone_keeps_what_an_independent_oracle_says(
    series: str, policy: RetentionPolicy, rule: str, n: int
) -> None:
    """Each rule on its own, on hourly-ish, daily and weekly series, against a naive oracle."""
    times = SERIES[series]
    if rule == "last":
        expected = {sid(t) for t in sorted(times, reverse=True)[:n]}
    elif rule == "within":
        expected = {sid(t) for t in times if t > max(times) - n * DAY}
    else:
        expected = newest_of_buckets(times, ORACLE_KEYS[rule], n)
    decisions = run([good(t) for t in times], policy)
    assert set(kept(decisions)) == expected
    for i in expected:
        assert any(r.startswith(f"keep_{rule}") for r in decisions[i].reasons)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (
            RetentionPolicy(keep_hourly=3),
            ["2026-12-31T18:00Z", "2026-12-31T12:00Z", "2026-12-31T06:00Z"],
        ),
        (
            RetentionPolicy(keep_daily=3),
            ["2026-12-31T18:00Z", "2026-12-30T18:00Z", "2026-12-29T18:00Z"],
        ),
        # 2026-12-31 is a Thursday of 2026-W53; W52 ends on Sunday 2026-12-27.
        (RetentionPolicy(keep_weekly=2), ["2026-12-31T18:00Z", "2026-12-27T18:00Z"]),
        (
            RetentionPolicy(keep_monthly=3),
            ["2026-12-31T18:00Z", "2026-11-30T18:00Z", "2026-10-31T18:00Z"],
        ),
        # only one year has backups: the rule is unfilled, so the oldest stays too
        (RetentionPolicy(keep_yearly=5), ["2026-12-31T18:00Z", "2026-01-01T00:00Z"]),
        # strictly newer than newest - 1d: 2026-12-30T18:00 itself is out
        (
            RetentionPolicy(keep_within=DAY),
            ["2026-12-31T18:00Z", "2026-12-31T12:00Z", "2026-12-31T06:00Z", "2026-12-31T00:00Z"],
        ),
    ],
)
def test_hand_written_calendar_cases(policy: RetentionPolicy, expected: list[str]) -> None:
    """Literal expectations on 6-hourly 2026 backups, so the oracle above is not the only judge."""
    assert kept(run([good(t) for t in SERIES["6-hourly"]], policy)) == expected


# --- 2. the year boundary ---------------------------------------------------------------------


YEAR_END = every(datetime(2026, 12, 25, 12, tzinfo=UTC), datetime(2027, 1, 8, 12, tzinfo=UTC), DAY)


def test_iso_week_53_of_2026_spans_the_new_year() -> None:
    """The premise of the next test: 2026-12-28..2027-01-03 is ISO week 2026-W53."""
    assert date(2026, 12, 27).isocalendar()[:2] == (2026, 52)
    assert date(2026, 12, 28).isocalendar()[:2] == (2026, 53)
    assert date(2027, 1, 3).isocalendar()[:2] == (2026, 53)
    assert date(2027, 1, 4).isocalendar()[:2] == (2027, 1)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # W53 is one bucket across the new year: its newest is 2027-01-03, nothing of 12-28..01-02
        (RetentionPolicy(keep_weekly=2), ["2027-01-08T12:00Z", "2027-01-03T12:00Z"]),
        # only three weeks have backups: W52, W53 and 2027-W01, and the oldest stays too
        (
            RetentionPolicy(keep_weekly=10),
            ["2027-01-08T12:00Z", "2027-01-03T12:00Z", "2026-12-27T12:00Z", "2026-12-25T12:00Z"],
        ),
        (RetentionPolicy(keep_yearly=2), ["2027-01-08T12:00Z", "2026-12-31T12:00Z"]),
        (
            RetentionPolicy(keep_monthly=5),
            ["2027-01-08T12:00Z", "2026-12-31T12:00Z", "2026-12-25T12:00Z"],
        ),
    ],
)
def test_year_boundary(policy: RetentionPolicy, expected: list[str]) -> None:
    """Weeks are ISO weeks (keyed by ISO year), years and months are calendar ones."""
    assert kept(run([good(t) for t in YEAR_END], policy)) == expected


# --- 3. DST in Europe/Berlin ------------------------------------------------------------------


def local_hours(first: datetime, last: datetime) -> list[datetime]:
    """Every UTC hour from one local wall time to another (so DST gaps and repeats show)."""
    return every(first.astimezone(UTC), last.astimezone(UTC), timedelta(hours=1))


def test_keep_daily_buckets_by_the_local_date_over_spring_forward() -> None:
    """The 23-hour 2026-03-29 is one day; a day's newest is its local 23:00, not UTC's."""
    times = local_hours(
        datetime(2026, 3, 28, tzinfo=BERLIN), datetime(2026, 3, 30, 23, tzinfo=BERLIN)
    )
    assert sum(1 for t in times if t.astimezone(BERLIN).day == 29) == 23
    chains = [good(t) for t in times]
    assert kept(run(chains, RetentionPolicy(keep_daily=3), zone=BERLIN)) == [
        "2026-03-30T21:00Z",  # local 23:00 CEST
        "2026-03-29T21:00Z",  # local 23:00 CEST, the day began at 00:00 CET
        "2026-03-28T22:00Z",  # local 23:00 CET
    ]
    # in UTC the buckets differ: the newest of UTC's 03-29 is 23:00 UTC (local 01:00 on 03-30)
    assert kept(run(chains, RetentionPolicy(keep_daily=2), zone=UTC)) == [
        "2026-03-30T21:00Z",
        "2026-03-29T23:00Z",
    ]


def test_keep_daily_and_the_25_hour_day() -> None:
    """Fall back: 2026-10-25 has 25 hourly backups in Berlin, and is still ONE daily bucket."""
    times = local_hours(
        datetime(2026, 10, 24, tzinfo=BERLIN), datetime(2026, 10, 26, 23, tzinfo=BERLIN)
    )
    on_25 = [sid(t) for t in times if t.astimezone(BERLIN).date().day == 25]
    assert len(on_25) == 25
    decisions = run([good(t) for t in times], RetentionPolicy(keep_daily=3), zone=BERLIN)
    assert kept(decisions) == ["2026-10-26T22:00Z", "2026-10-25T22:00Z", "2026-10-24T21:00Z"]
    assert [i for i in on_25 if decisions[i].verdict is Verdict.KEEP] == ["2026-10-25T22:00Z"]


def test_keep_hourly_treats_the_repeated_wall_hour_as_one_bucket() -> None:
    """At fall back Berlin's 02:xx happens twice (UTC 00:30 CEST and 01:30 CET). The module
    buckets by the local (year, month, day, hour) and ignores `fold`, so both are one hourly
    bucket and only the later one is kept; restic (local wall clock) does the same. Six
    backups thus make five hourly buckets."""
    times = every(
        datetime(2026, 10, 24, 22, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 3, 30, tzinfo=UTC),
        timedelta(hours=1),
    )
    assert [t.astimezone(BERLIN).hour for t in times] == [0, 1, 2, 2, 3, 4]
    decisions = run([good(t) for t in times], RetentionPolicy(keep_hourly=6), zone=BERLIN)
    assert decisions["2026-10-25T00:30Z"].verdict is Verdict.DELETE
    assert kept(decisions) == [
        "2026-10-25T03:30Z",
        "2026-10-25T02:30Z",
        "2026-10-25T01:30Z",
        "2026-10-24T23:30Z",
        "2026-10-24T22:30Z",
    ]


def test_keep_hourly_over_the_missing_hour() -> None:
    """Spring forward skips 02:xx: four consecutive UTC hours are four local hours, all kept."""
    times = every(
        datetime(2026, 3, 28, 23, tzinfo=UTC),
        datetime(2026, 3, 29, 2, tzinfo=UTC),
        timedelta(hours=1),
    )
    assert [t.astimezone(BERLIN).hour for t in times] == [0, 1, 3, 4]
    decisions = run([good(t) for t in times], RetentionPolicy(keep_hourly=4), zone=BERLIN)
    assert len(kept(decisions)) == 4


# --- 4. Medusa #607: failed backups must not push good ones out -------------------------------


D0 = datetime(2026, 5, 1, tzinfo=UTC)
GOOD5 = [good(D0 + i * DAY) for i in range(5)]
FAILED5 = [
    Chain(snapshot_id=sid(D0 + i * DAY), created_at=D0 + i * DAY, state=State.INCOMPLETE)
    for i in range(5, 10)
]


@pytest.mark.parametrize(
    ("now", "failed_kept"),
    [
        (D0 + 9 * DAY + timedelta(hours=1), 5),  # all failed ones within failed_grace
        (D0 + 14 * DAY + timedelta(hours=12), 2),  # days 5..7 are past 7d, 8 and 9 are not
        (D0 + 17 * DAY, 0),  # all past failed_grace
    ],
)
def test_medusa_607_failed_backups_are_not_counted(now: datetime, failed_kept: int) -> None:
    """5 good then 5 newer failed, keep_last=5: the good ones all stay; the failed ones wait out
    failed_grace uncounted, then go."""
    decisions = run(GOOD5 + FAILED5, RetentionPolicy(keep_last=5), now=now)
    for chain in GOOD5:
        assert decisions[chain.snapshot_id].verdict is Verdict.KEEP
        assert "keep_last" in decisions[chain.snapshot_id].reasons
    failed = [decisions[c.snapshot_id] for c in FAILED5]
    assert sum(1 for d in failed if d.verdict is Verdict.KEEP) == failed_kept
    for d in failed:
        assert "keep_last" not in d.reasons
        assert ("not counted" in d.why) == (d.verdict is Verdict.KEEP)
        assert (now - d.chain.created_at > timedelta(days=7)) == (d.verdict is Verdict.DELETE)


# --- 5. Medusa #194: age and count together ---------------------------------------------------


DAYS20 = [good(D0 + i * DAY) for i in range(20)]  # 2026-05-01 .. 2026-05-20


@pytest.mark.parametrize(
    ("keep_last", "oldest_kept", "count"),
    [(10, "2026-05-11T00:00Z", 10), (3, "2026-05-14T00:00Z", 7), (None, "2026-05-14T00:00Z", 7)],
)
def test_medusa_194_within_and_last_keep_the_union(
    keep_last: int | None, oldest_kept: str, count: int
) -> None:
    """keep_within=7d keeps created_at > 05-20 - 7d (05-14..05-20); keep_last adds its own."""
    policy = RetentionPolicy(keep_last=keep_last, keep_within=timedelta(days=7))
    ids = kept(run(DAYS20, policy))
    assert len(ids) == count
    assert ids[0] == "2026-05-20T00:00Z"
    assert ids[-1] == oldest_kept


def test_keep_within_counts_from_the_newest_good_backup_not_now() -> None:
    """A scheduler back after two months, with newer failed backups, still keeps the week."""
    failed = Chain(snapshot_id="zz-failed", created_at=D0 + 40 * DAY, state=State.INCOMPLETE)
    decisions = run(
        [*DAYS20, failed], RetentionPolicy(keep_within=timedelta(days=7)), now=D0 + 80 * DAY
    )
    assert [i for i in kept(decisions) if i != "zz-failed"][-1] == "2026-05-14T00:00Z"
    assert decisions["zz-failed"].verdict is Verdict.DELETE
    assert "keep_within" in decisions["2026-05-20T00:00Z"].reasons
    assert "keep_within" not in decisions["2026-05-13T00:00Z"].reasons


# --- 6. the rails -----------------------------------------------------------------------------


def test_min_keep_tops_up_the_rules() -> None:
    """keep_last=1 with min_keep=3 keeps three, the extra two for min_keep alone."""
    decisions = run(DAYS20, RetentionPolicy(keep_last=1, min_keep=3))
    assert kept(decisions) == ["2026-05-20T00:00Z", "2026-05-19T00:00Z", "2026-05-18T00:00Z"]
    assert decisions["2026-05-19T00:00Z"].reasons == ("min_keep",)


@pytest.mark.parametrize(
    "policy",
    [RetentionPolicy(), RetentionPolicy(keep_within=timedelta(0))],
    ids=["none", "within0"],
)
def test_the_newest_good_backup_stays_when_no_rule_keeps_anything(policy: RetentionPolicy) -> None:
    """No rule set, or keep_within=0 (nothing is strictly newer than the newest): newest stays."""
    decisions = run(DAYS20, policy)
    assert kept(decisions) == ["2026-05-20T00:00Z"]
    assert decisions["2026-05-20T00:00Z"].reasons == ("the newest good backup",)
    assert decisions["2026-05-19T00:00Z"].reasons == ("no rule keeps it",)


def test_the_chain_the_current_incrementals_extend_stays() -> None:
    """An old snapshot still extended by today's incrementals must not be pruned under them."""
    decisions = run(DAYS20, RetentionPolicy(keep_last=2), extended="2026-05-01T00:00Z")
    assert decisions["2026-05-01T00:00Z"].verdict is Verdict.KEEP
    assert decisions["2026-05-01T00:00Z"].reasons == ("the current incrementals extend it",)
    assert decisions["2026-05-02T00:00Z"].verdict is Verdict.DELETE
    unknown = run(DAYS20, RetentionPolicy(keep_last=2), extended="no-such-id")
    assert len(kept(unknown)) == 2


def test_running_and_restoring_chains_are_held_even_when_old() -> None:
    """A running backup (snapshot or incremental) or a running restore holds its chain."""
    old = D0 - 100 * DAY
    running = Chain(snapshot_id="a-running", created_at=old, state=State.RUNNING)
    running_incr = good(old + DAY, incrementals=(Incremental(old + 2 * DAY, State.RUNNING),))
    restoring = good(old + 3 * DAY, restoring=True)
    restoring_failed = Chain(
        snapshot_id="b-restoring", created_at=old, state=State.INCOMPLETE, restoring=True
    )
    held = [running, running_incr, restoring, restoring_failed]
    decisions = run([*DAYS20, *held], RetentionPolicy(keep_last=2))
    for chain in held:
        decision = decisions[chain.snapshot_id]
        assert decision.verdict is Verdict.KEEP
        assert decision.why.startswith("held: ")
    assert decisions["a-running"].reasons == ("held: a backup of it is running",)
    assert decisions[sid(old + 3 * DAY)].reasons == ("held: a restore from it is running",)
    assert len([i for i in kept(decisions) if i.startswith("2026-05")]) == 2


def test_deleting_chains_are_deleted_even_when_newest_and_young() -> None:
    """A deletion that began must finish; it is not a backup to keep or count."""
    t = D0 + 30 * DAY
    deleting = Chain(snapshot_id=sid(t), created_at=t, state=State.DELETING)
    decisions = run([*DAYS20, deleting], RetentionPolicy(keep_last=1), now=t + timedelta(minutes=5))
    assert decisions[sid(t)].verdict is Verdict.DELETE
    assert kept(decisions) == ["2026-05-20T00:00Z"]


def test_failed_incrementals_of_kept_chains_go_after_failed_grace() -> None:
    """Records of failed incrementals older than failed_grace go; younger and good ones stay."""
    now = D0 + 30 * DAY
    stale = Incremental(now - 10 * DAY, State.INCOMPLETE)
    fresh = Incremental(now - DAY, State.INCOMPLETE)
    fine = Incremental(now - 10 * DAY, State.GOOD)
    base = D0 + 15 * DAY
    chains = [
        good(base, incrementals=(fine, stale, fresh)),
        good(base - DAY, incrementals=(stale,)),
    ]
    decisions = run(chains, RetentionPolicy(keep_last=1), now=now)
    assert decisions[sid(base)].verdict is Verdict.KEEP
    assert decisions[sid(base)].incrementals == (stale,)
    assert decisions[sid(base - DAY)].verdict is Verdict.DELETE
    assert decisions[sid(base - DAY)].incrementals == ()  # its files go with the chain


def test_decisions_come_newest_first_one_per_chain() -> None:
    """Whatever the input order, each chain gets one decision, newest first."""
    failed = [Chain(f"f{i}", D0 + i * DAY + timedelta(hours=1), State.INCOMPLETE) for i in (3, 9)]
    chains = [*DAYS20, *failed, Chain("c-del", D0 - DAY, State.DELETING)]
    shuffled = list(chains)
    random.Random(607).shuffle(shuffled)
    decisions = decide(shuffled, RetentionPolicy(keep_daily=3), now=LATER, zone=UTC)
    assert [d.chain for d in decisions] == sorted(chains, key=lambda c: c.created_at, reverse=True)


@pytest.mark.parametrize("age", [timedelta(hours=1), timedelta(days=8)])
def test_no_rule_keeps_an_incomplete_chain_even_the_newest(age: timedelta) -> None:
    """The newest backup failed: keep_last=1 and the newest-good rail go to the newest GOOD one."""
    t = D0 + 30 * DAY
    failed = Chain(snapshot_id=sid(t), created_at=t, state=State.INCOMPLETE)
    decisions = run([*DAYS20, failed], RetentionPolicy(keep_last=1, keep_daily=1), now=t + age)
    assert not {"keep_last", "keep_daily", "the newest good backup"} & set(
        decisions[sid(t)].reasons
    )
    assert decisions[sid(t)].verdict is (
        Verdict.KEEP if age < timedelta(days=7) else Verdict.DELETE
    )
    assert decisions["2026-05-20T00:00Z"].reasons == (
        "keep_last",
        "keep_daily",
        "the newest good backup",
    )


def test_a_rule_not_yet_filled_keeps_the_oldest_too_and_says_so() -> None:
    """restic 0.17: ten daily backups under keep_monthly = 12 keep the newest and the oldest,
    so a young job's first backup is there to become the monthly one."""
    times = every(datetime(2026, 3, 1, 3, tzinfo=UTC), datetime(2026, 3, 10, 4, tzinfo=UTC), DAY)
    decisions = run([good(t) for t in times], RetentionPolicy(keep_monthly=12))
    assert kept(decisions) == ["2026-03-10T03:00Z", "2026-03-01T03:00Z"]
    assert decisions[sid(times[0])].reasons == (
        "keep_monthly (the oldest, while the rule is unfilled)",
    )
