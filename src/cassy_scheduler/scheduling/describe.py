"""Cron expressions in plain words, so `status` and `check` can say when a job runs.

Common shapes get a natural sentence ("at 00:30 every day", "every 10 seconds"); anything else
gets a faithful field-by-field sentence rather than a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from cassy_scheduler.timetable import NICKNAMES, Schedule

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_MONTH_CODES = [m[:3].upper() for m in _MONTHS]
_DAY_CODES = [d[:3].upper() for d in _DAYS]
_NTH = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}


@dataclass(frozen=True)
class _Item:
    """One comma-separated term of a field: a value, a range, a step, or a special token."""

    start: int | None = None  # None: the whole range ("*")
    end: int | None = None
    step: int = 1
    special: str = ""  # "L", "LW", "nL" (last weekday n), "n#k" (k-th weekday n)

    @property
    def is_any(self) -> bool:
        return self.start is None and self.step == 1 and not self.special

    @property
    def is_value(self) -> bool:
        return self.start is not None and self.end is None and self.step == 1 and not self.special


@dataclass(frozen=True)
class _Field:
    name: str
    unit: str
    items: tuple[_Item, ...]
    text: str

    @property
    def is_any(self) -> bool:
        return len(self.items) == 1 and self.items[0].is_any

    @property
    def values(self) -> list[int] | None:
        """The listed values when the field is only plain values, else None."""
        if all(i.is_value for i in self.items):
            return sorted(i.start for i in self.items if i.start is not None)
        return None

    @property
    def every(self) -> int | None:
        """n for a bare "*/n" field."""
        if len(self.items) == 1:
            item = self.items[0]
            if item.start is None and item.step > 1 and not item.special:
                return item.step
        return None

    @property
    def range(self) -> tuple[int, int] | None:
        if len(self.items) == 1:
            item = self.items[0]
            if item.start is not None and item.end is not None and item.step == 1:
                return item.start, item.end
        return None


def describe(expression: str) -> str:
    """A plain-language sentence for a cron expression or nickname (validated first)."""
    Schedule.parse(expression)
    text = " ".join(expression.split())
    parts = NICKNAMES.get(text.lower(), text).split(" ")
    if len(parts) == 5:
        parts.insert(0, "0")
    sec, minute, hour, dom, month, dow = (
        _parse_field(name, unit, value)
        for (name, unit), value in zip(
            (
                ("second", "second"),
                ("minute", "minute"),
                ("hour", "hour"),
                ("day-of-month", "day of the month"),
                ("month", "month"),
                ("day-of-week", "day of the week"),
            ),
            parts,
            strict=True,
        )
    )
    days = _day_phrase(dom, month, dow)
    daily = _daily_times(sec, minute, hour)
    if daily is not None:
        return f"{daily} {days}"
    times = _sub_daily(sec, minute, hour) or _field_sentence(
        "at", (sec, minute, hour), skip_zero=True
    )
    return times if days == "every day" else f"{times} {days}"


def _parse_field(name: str, unit: str, text: str) -> _Field:
    items = tuple(_parse_item(name, term) for term in text.upper().split(","))
    return _Field(name, unit, items, text)


def _parse_item(name: str, term: str) -> _Item:
    if term in ("L", "LW") or term.endswith("L") or "#" in term:
        return _Item(special=term)
    step = 1
    if "/" in term:
        term, step_text = term.split("/", 1)
        step = int(step_text)
    if term == "*":
        return _Item(step=step)
    if "-" in term:
        low, high = term.split("-", 1)
        return _Item(_number(name, low), _number(name, high), step)
    value = _number(name, term)
    if step > 1:
        return _Item(value, None, step)
    return _Item(value)


def _number(name: str, token: str) -> int:
    if name == "month" and token in _MONTH_CODES:
        return _MONTH_CODES.index(token) + 1
    if name == "day-of-week":
        if token in _DAY_CODES:
            return _DAY_CODES.index(token)
        return int(token) % 7
    return int(token)


def _clock(hour: int, minute: int, second: int = 0) -> str:
    return f"{hour:02d}:{minute:02d}" + (f":{second:02d}" if second else "")


def _join(words: list[str], last: str = "and") -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + f" {last} " + words[-1]


def _daily_times(sec: _Field, minute: _Field, hour: _Field) -> str | None:
    """ "at 00:30" when the time of day is a short list of fixed times."""
    seconds, minutes, hours = sec.values, minute.values, hour.values
    if not (seconds and minutes and hours) or len(seconds) * len(minutes) * len(hours) > 6:
        return None
    times = [_clock(h, m, s) for h in hours for m in minutes for s in seconds]
    return "at " + _join(times)


def _sub_daily(sec: _Field, minute: _Field, hour: _Field) -> str | None:
    """Shapes that fire more often than daily: every n seconds/minutes/hours, within hours."""
    if sec.values != [0]:
        if minute.is_any and hour.is_any:
            if sec.is_any:
                return "every second"
            if sec.every and 60 % sec.every == 0:
                return f"every {sec.every} seconds"
        return None
    hours_phrase = _within_hours(hour)
    minutes = minute.values
    if minutes is not None and len(minutes) == 1:
        m = minutes[0]
        if hour.is_any:
            return f"every hour at minute {m}"
        if hour.every and 24 % hour.every == 0:
            return f"every {hour.every} hours at minute {m}"
        if hour.range:
            low, high = hour.range
            return f"every hour from {_clock(low, m)} to {_clock(high, m)}"
        return None
    if minutes is not None and hour.is_any:
        return f"every hour at minutes {_join([str(v) for v in minutes])}"
    if minute.is_any:
        return "every minute" + hours_phrase if hours_phrase is not None else None
    if minute.every and 60 % minute.every == 0 and hours_phrase is not None:
        return f"every {minute.every} minutes{hours_phrase}"
    return None


def _within_hours(hour: _Field) -> str | None:
    if hour.is_any:
        return ""
    values = hour.values
    if values is not None and len(values) == 1:
        return f" from {_clock(values[0], 0)} to {_clock(values[0], 59)}"
    if hour.range:
        low, high = hour.range
        return f" from {_clock(low, 0)} to {_clock(high, 59)}"
    return None


def _day_phrase(dom: _Field, month: _Field, dow: _Field) -> str:
    # Debian cron: when neither day field starts with "*", a day matching either one fires.
    either = not dom.text.startswith("*") and not dow.text.startswith("*")
    months = "" if month.is_any else " in " + _render_values(month)
    if dom.is_any and dow.is_any:
        return ("every day" + months) if months else "every day"
    if dom.is_any:
        return _weekday_phrase(dow) + months
    if dow.is_any:
        return _month_day_phrase(dom, month)
    if either:
        return f"{_month_day_phrase(dom, month)}, and also {_weekday_phrase(dow)}{months}"
    return "on " + " and ".join(_render_items(f) for f in (dom, month, dow) if not f.is_any)


def _weekday_phrase(dow: _Field) -> str:
    words: list[str] = []
    for item in dow.items:
        if item.special.endswith("L"):
            words.append(f"the last {_DAYS[int(item.special[:-1]) % 7]} of the month")
        elif "#" in item.special:
            day, nth = item.special.split("#")
            words.append(f"the {_NTH[int(nth)]} {_DAYS[int(day) % 7]} of the month")
        elif item.is_value and item.start is not None:
            words.append(_DAYS[item.start])
        elif item.start is not None and item.end is not None and item.step == 1:
            return f"from {_DAYS[item.start]} to {_DAYS[item.end % 7]}" + (
                "" if len(dow.items) == 1 else " and " + _render_items(dow)
            )
        else:
            return f"on {_render_items(dow)}"
    return "on " + _join(words)


def _month_day_phrase(dom: _Field, month: _Field) -> str:
    values = dom.values
    month_values = month.values
    if values is not None and month_values is not None and len(values) == len(month_values) == 1:
        return f"on {values[0]} {_MONTHS[month_values[0] - 1]}"
    where = "of every month" if month.is_any else "in " + _render_values(month)
    if len(dom.items) == 1 and dom.items[0].special == "L":
        return f"on the last day {where}"
    if len(dom.items) == 1 and dom.items[0].special == "LW":
        return f"on the last weekday {where}"
    if values is not None:
        label = "day" if len(values) == 1 else "days"
        return f"on {label} {_join([str(v) for v in values])} {where}"
    if dom.range:
        low, high = dom.range
        return f"on days {low} to {high} {where}"
    return f"on {_render_items(dom)}" + ("" if month.is_any else f" {where}")


def _render_values(field: _Field) -> str:
    """Months (or other named values) as words: "January and July", "March to May"."""
    names = _MONTHS if field.name == "month" else None
    values = field.values
    if values is not None and names is not None:
        return _join([names[v - 1] for v in values])
    if field.range and names is not None:
        low, high = field.range
        return f"{names[low - 1]} to {names[high - 1]}"
    return _render_items(field)


def _render_items(field: _Field) -> str:
    return " and ".join(_render_item(field, item) for item in field.items)


def _render_item(field: _Field, item: _Item) -> str:
    unit = field.unit
    if item.special:
        return f'{unit} "{item.special}"'
    if item.is_any:
        return f"every {unit}"
    low = _name(field, item.start)
    if item.step == 1:
        if item.end is None:
            return f"{unit} {low}"
        return f"{unit}s {low} to {_name(field, item.end)}"
    nth = _ordinal(item.step)
    if item.start is None:
        return f"every {nth} {unit}"
    end = f" to {_name(field, item.end)}" if item.end is not None else ""
    return f"every {nth} {unit} from {low}{end}"


def _name(field: _Field, value: int | None) -> str:
    if value is None:
        return ""
    if field.name == "month":
        return _MONTHS[value - 1]
    if field.name == "day-of-week":
        return _DAYS[value % 7]
    return str(value)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _field_sentence(lead: str, fields: tuple[_Field, ...], *, skip_zero: bool) -> str:
    """The faithful fallback: each restricted field said in turn."""
    phrases = [
        _render_items(f)
        for f in fields
        if not (skip_zero and f.name == "second" and f.values == [0])
        and not (f.is_any and f.name in ("month", "day-of-month", "day-of-week"))
    ]
    return f"{lead} " + ", ".join(phrases)
