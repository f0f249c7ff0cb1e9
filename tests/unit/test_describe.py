"""Plain-language schedules: common shapes read naturally, the rest field by field."""

from __future__ import annotations

import pytest

from cassy_scheduler.scheduling.describe import describe
from cassy_scheduler.timetable import ScheduleError


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("30 0 * */1 *", "at 00:30 every day"),
        ("15 0 * * 0", "at 00:15 on Sunday"),
        ("0 * * * *", "every hour at minute 0"),
        ("*/10 * * * * *", "every 10 seconds"),
        ("* * * * * *", "every second"),
        ("* * * * *", "every minute"),
        ("*/15 * * * *", "every 15 minutes"),
        ("0,30 * * * *", "every hour at minutes 0 and 30"),
        ("0 */6 * * *", "every 6 hours at minute 0"),
        ("0 9-17 * * *", "every hour from 09:00 to 17:00"),
        ("*/5 9-17 * * *", "every 5 minutes from 09:00 to 17:59"),
        ("* 2 * * *", "every minute from 02:00 to 02:59"),
        ("0 9,17 * * *", "at 09:00 and 17:00 every day"),
        ("10 30 2 * * *", "at 02:30:10 every day"),
        ("30 2 * * 1-5", "at 02:30 from Monday to Friday"),
        ("0 3 * * 1,3,5", "at 03:00 on Monday, Wednesday and Friday"),
        ("0 0 * * 7", "at 00:00 on Sunday"),
        ("0 0 1 * *", "at 00:00 on day 1 of every month"),
        ("0 0 1,15 * *", "at 00:00 on days 1 and 15 of every month"),
        ("0 0 1-7 * *", "at 00:00 on days 1 to 7 of every month"),
        ("0 0 1 1 *", "at 00:00 on 1 January"),
        ("0 0 1 1,7 *", "at 00:00 on day 1 in January and July"),
        ("0 0 * 1 *", "at 00:00 every day in January"),
        ("0 0 * JAN-MAR SUN", "at 00:00 on Sunday in January to March"),
        ("0 0 L * *", "at 00:00 on the last day of every month"),
        ("0 0 LW * *", "at 00:00 on the last weekday of every month"),
        ("0 0 * * 5L", "at 00:00 on the last Friday of the month"),
        ("0 0 * * 1#2", "at 00:00 on the second Monday of the month"),
        ("0 0 1 * 1", "at 00:00 on day 1 of every month, and also on Monday"),
        ("@daily", "at 00:00 every day"),
        ("@midnight", "at 00:00 every day"),
        ("@hourly", "every hour at minute 0"),
        ("@weekly", "at 00:00 on Sunday"),
        ("@monthly", "at 00:00 on day 1 of every month"),
        ("@yearly", "at 00:00 on 1 January"),
        # Shapes without a natural sentence are said field by field.
        ("*/7 * * * *", "at every 7th minute, every hour"),
        ("0-30/5 9-17 * * *", "at every 5th minute from 0 to 30, hours 9 to 17"),
        ("0 0 */2 * *", "at 00:00 on every 2nd day of the month"),
    ],
)
def test_describe(expr: str, words: str) -> None:
    assert describe(expr) == words


def test_describe_refuses_what_the_timetable_refuses() -> None:
    with pytest.raises(ScheduleError):
        describe("61 * * * *")
