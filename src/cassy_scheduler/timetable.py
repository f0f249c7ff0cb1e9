"""When a job fires: cron in a timezone, per-job jitter, and what to do about missed runs.

Cron semantics come from cronsim, which follows Debian cron, DST included: a job at a fixed
time that falls into a spring-forward gap runs once right after the gap, and one that falls into
a fall-back overlap runs once, on the first pass. An optional leading seconds field is applied
on top of the minute schedule, so it never changes which minutes fire on DST days.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError
from cronsim.cronsim import Field

NICKNAMES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_FIELD_HELP: dict[str, str] = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31, L (last day) or LW (last weekday)",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 (0 and 7 are Sunday), SUN-SAT, 5L (last Friday) or 1#2 (second Monday)",
}
DEFAULT_TIMEZONE = "UTC"
"""The zone of a schedule that names none."""

_FIELD_ORDER = ("minute", "hour", "day-of-month", "month", "day-of-week")
_EXAMPLE = 'for example "30 0 * * *" runs at 00:30 every day, "0 * * * *" at the top of every hour'
_SEARCH_FROM = datetime(2000, 1, 1, tzinfo=UTC)
_ONE_SECOND = timedelta(seconds=1)
_WINDOW_LIMIT = 100_000


class ScheduleError(ValueError):
    """A cron expression or timezone that cannot be used, with a hint on what to write."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


def load_timezone(name: str) -> ZoneInfo:
    """Resolve an IANA timezone name, suggesting close names when it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    close = suggest_timezones(name)
    hint = (
        "did you mean " + " or ".join(f'"{c}"' for c in close) + "?"
        if close
        else 'write an IANA name such as "UTC", "Europe/Berlin" or "America/New_York"'
    )
    raise ScheduleError(f'unknown timezone "{name}"', hint)


def suggest_timezones(name: str, limit: int = 3) -> list[str]:
    """IANA names close to `name`: same spelling in another case, same city, or similar text."""
    zones = sorted(available_timezones())
    lowered = name.strip().lower().replace(" ", "_")
    exact = [z for z in zones if z.lower() == lowered]
    if exact:
        return exact[:limit]
    same_city = [z for z in zones if z.rsplit("/", 1)[-1].lower() == lowered]
    if same_city:
        return same_city[:limit]
    by_lower = {z.lower(): z for z in zones}
    close = difflib.get_close_matches(lowered, list(by_lower), n=limit, cutoff=0.6)
    return [by_lower[c] for c in close]


@dataclass(frozen=True)
class Schedule:
    """A cron schedule in one timezone; every instant it returns is aware and in UTC."""

    expression: str
    timezone: ZoneInfo
    minute_expression: str
    seconds: tuple[int, ...]

    @classmethod
    def parse(cls, expression: str, timezone: str | ZoneInfo = DEFAULT_TIMEZONE) -> Schedule:
        """Read a 5-field cron line, a 6-field one with leading seconds, or a nickname."""
        zone = timezone if isinstance(timezone, ZoneInfo) else load_timezone(timezone)
        text = " ".join(expression.split())
        if not text:
            raise ScheduleError("the schedule is empty", f"write a cron expression; {_EXAMPLE}")
        if text.startswith("@"):
            return cls._from_nickname(expression, text, zone)
        parts = text.split(" ")
        if len(parts) not in (5, 6):
            raise ScheduleError(
                f'"{expression}" has {len(parts)} field(s); a cron expression has 5 '
                "(minute hour day-of-month month day-of-week), or 6 with a leading seconds field",
                _EXAMPLE,
            )
        seconds = (0,) if len(parts) == 5 else _parse_seconds(expression, parts[0])
        minute_expression = " ".join(parts[-5:])
        _check_fields(expression, minute_expression)
        schedule = cls(expression, zone, minute_expression, seconds)
        _, _, day, month, _ = minute_expression.split(" ")
        if day not in ("*", "?") and month != "*":
            # Only a day of the month in chosen months can name no real date (30 February).
            schedule._require_fires()
        return schedule

    @classmethod
    def _from_nickname(cls, expression: str, text: str, zone: ZoneInfo) -> Schedule:
        nickname = text.lower()
        if nickname in NICKNAMES:
            return cls(expression, zone, NICKNAMES[nickname], (0,))
        if nickname == "@reboot":
            hint = "a backup job needs a time; use @daily or a cron expression instead"
        else:
            close = difflib.get_close_matches(nickname, list(NICKNAMES), n=1)
            known = ", ".join(NICKNAMES)
            hint = f'did you mean "{close[0]}"?' if close else f"use one of {known}"
        raise ScheduleError(f'"{expression}" is not a schedule nickname this program knows', hint)

    @property
    def timezone_name(self) -> str:
        return self.timezone.key

    def __str__(self) -> str:
        return self.expression

    def next_after(self, after: datetime) -> datetime:
        """The first scheduled instant strictly after `after`."""
        for fire in self._iter_from(after):
            return fire
        raise ScheduleError(f'"{self.expression}" never fires after {after.isoformat()}')

    def next_n(self, after: datetime, n: int) -> list[datetime]:
        """The next `n` scheduled instants strictly after `after`, earliest first."""
        fires: list[datetime] = []
        for fire in self._iter_from(after):
            if len(fires) >= n:
                break
            fires.append(fire)
        return fires

    def fires_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Scheduled instants in (start, end], earliest first, at most `limit` of them."""
        fires: list[datetime] = []
        for fire in self._iter_from(start):
            if fire > end or len(fires) >= limit:
                break
            fires.append(fire)
        return fires

    def latest_between(self, start: datetime, end: datetime) -> datetime | None:
        """The last scheduled instant in (start, end], searched in windows growing back from end."""
        for window in (timedelta(hours=1), timedelta(days=1), timedelta(days=32)):
            lower = max(start, end - window)
            fires = self.fires_between(lower, end, limit=_WINDOW_LIMIT)
            if fires:
                return fires[-1]
            if lower == start:
                return None
        latest: datetime | None = None
        lower = start
        while fires := self.fires_between(lower, end, limit=_WINDOW_LIMIT):
            latest = lower = fires[-1]
        return latest

    def _iter_from(self, after: datetime) -> Iterator[datetime]:
        after = _require_aware(after).astimezone(UTC)
        floor = after.replace(second=0, microsecond=0)
        minutes = CronSim(self.minute_expression, (floor - _ONE_SECOND).astimezone(self.timezone))
        last: datetime | None = None
        while True:
            try:
                minute = next(minutes).astimezone(UTC)
            except StopIteration:
                return
            for second in self.seconds:
                fire = minute + timedelta(seconds=second)
                # In a fall-back overlap the wall-clock walk can step back in real time.
                if fire > after and (last is None or fire > last):
                    last = fire
                    yield fire

    def _require_fires(self) -> None:
        try:
            self.next_after(_SEARCH_FROM)
        except ScheduleError:
            raise ScheduleError(
                f'"{self.expression}" never matches a real date', _EXAMPLE
            ) from None


def _require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ScheduleError(
            f"{moment.isoformat()} has no timezone",
            "pass an aware datetime, e.g. datetime.now(UTC)",
        )
    return moment


def _parse_seconds(expression: str, field: str) -> tuple[int, ...]:
    try:
        values = Field.SECOND.parse(field.upper())
    except CronSimError:
        raise _field_error(expression, "second", field) from None
    return tuple(sorted(v for v in values if isinstance(v, int)))


def _check_fields(expression: str, minute_expression: str) -> None:
    try:
        CronSim(minute_expression, _SEARCH_FROM)
    except CronSimError as exc:
        parts = minute_expression.split(" ")
        impossible = _impossible_date(expression, parts[2], parts[3])
        if impossible is not None:
            raise impossible from None
        for index, name in enumerate(_FIELD_ORDER):
            if str(exc).lower().endswith(name):
                raise _field_error(expression, name, parts[index]) from None
        raise ScheduleError(
            f'"{expression}" is not a valid cron expression: {exc}', _EXAMPLE
        ) from None


_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February at its longest
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _impossible_date(expression: str, day: str, month: str) -> ScheduleError | None:
    """The error for valid days of the month that none of the chosen months has (31 2)."""
    try:
        days = {d for d in Field.DAY.parse(day.upper()) if isinstance(d, int) and d > 0}
        months = {m for m in Field.MONTH.parse(month.upper()) if isinstance(m, int)}
    except CronSimError:
        return None
    if not days or not months or any(min(days) <= _DAYS_IN_MONTH[m - 1] for m in months):
        return None
    named = ", ".join(_MONTH_NAMES[m - 1] for m in sorted(months))
    longest = max(_DAYS_IN_MONTH[m - 1] for m in months)
    return ScheduleError(
        f'"{expression}" never fires: day {day} of the month does not exist in {named} '
        f"(at most {longest} days)",
        'pick a day every chosen month has, "L" for the last day of the month, or other months',
    )


def _field_error(expression: str, name: str, value: str) -> ScheduleError:
    return ScheduleError(
        f'the {name} field "{value}" of "{expression}" is not valid',
        f"{name} takes {_FIELD_HELP[name]}, lists (1,15), ranges (1-5) and steps (*/15); "
        + _EXAMPLE,
    )


def jitter_offset(job_name: str, scheduled_for: datetime, jitter: timedelta) -> timedelta:
    """A stable delay in [0, jitter), whole seconds, so previews match what will really happen."""
    span = int(jitter.total_seconds())
    if span <= 0:
        return timedelta(0)
    key = f"{job_name}\0{scheduled_for.astimezone(UTC).isoformat()}".encode()
    digest = hashlib.sha256(key).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % span)


@dataclass(frozen=True)
class Fire:
    """One firing of a job: the instant the schedule names and when it really starts."""

    scheduled_for: datetime
    run_at: datetime


@dataclass(frozen=True)
class JobTimetable:
    """A job's schedule with its jitter applied, keyed by the job's name."""

    job_name: str
    schedule: Schedule
    jitter: timedelta = timedelta(0)

    def fire_for(self, scheduled_for: datetime) -> Fire:
        offset = jitter_offset(self.job_name, scheduled_for, self.jitter)
        return Fire(scheduled_for, scheduled_for + offset)

    def next_fire(self, after: datetime) -> Fire:
        """The first firing whose scheduled instant is strictly after `after`."""
        return self.fire_for(self.schedule.next_after(after))

    def next_fires(self, after: datetime, n: int) -> list[Fire]:
        return [self.fire_for(s) for s in self.schedule.next_n(after, n)]


class MissedRunPolicy(StrEnum):
    """What to do with runs that should have happened while the scheduler was not running."""

    RUN_ONCE = "run-once"
    SKIP = "skip"


@dataclass(frozen=True)
class Misfire:
    """The verdict on missed runs: how many, and which one (if any) to run now as a catch-up."""

    missed_count: int
    count_is_lower_bound: bool
    latest_missed: datetime | None
    catch_up_for: datetime | None
    reason: str


def decide_misfire(
    schedule: Schedule,
    last_scheduled: datetime | None,
    now: datetime,
    policy: MissedRunPolicy,
    grace: timedelta | None,
    *,
    count_limit: int = 1000,
) -> Misfire:
    """Coalesce missed instants in (last_scheduled, now] into at most one catch-up run.

    With `run-once` the latest missed instant runs now, unless it is older than `grace`
    (None: no limit); with `skip` every missed instant is dropped.
    """
    if last_scheduled is None:
        return Misfire(0, False, None, None, "no earlier run is recorded")
    listed = schedule.fires_between(last_scheduled, now, limit=count_limit + 1)
    if not listed:
        return Misfire(0, False, None, None, "no run was missed")
    capped = len(listed) > count_limit
    count = min(len(listed), count_limit)
    latest = schedule.latest_between(last_scheduled, now) if capped else listed[-1]
    assert latest is not None
    counted = f"{'more than ' if capped else ''}{count} missed run(s)"
    if policy is MissedRunPolicy.SKIP:
        return Misfire(count, capped, latest, None, f"{counted} skipped (missed_runs = skip)")
    late = now - latest
    if grace is not None and late > grace:
        return Misfire(
            count,
            capped,
            latest,
            None,
            f"{counted} skipped: the latest, {latest.isoformat()}, is {late} late, "
            f"beyond misfire_grace {grace}",
        )
    return Misfire(count, capped, latest, latest, f"{counted} coalesced into one catch-up run")
