"""Durations as people write them in config files: "90s", "5m", "1h30m", "2d"."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_PATTERN = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
DURATION_HINT = 'write a whole number with a unit s, m, h or d, e.g. "90s", "5m", "1h30m" or "2d"'


class DurationError(ValueError):
    """A duration string that cannot be read; `hint` says how to write one."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.hint = DURATION_HINT


def parse_duration(text: str) -> timedelta:
    """Read units from largest to smallest, each at most once; "0" alone means no time."""
    compact = text.strip().lower().replace(" ", "")
    if compact == "0":
        return timedelta(0)
    match = _PATTERN.fullmatch(compact)
    if not compact or match is None or not any(match.groups()):
        raise DurationError(f'"{text}" is not a duration')
    seconds = sum(
        int(value) * factor
        for value, factor in zip(match.groups(), _UNITS.values(), strict=True)
        if value
    )
    return timedelta(seconds=seconds)


def format_duration(duration: timedelta) -> str:
    """The inverse of parse_duration for whole seconds: 5400s becomes "1h30m"."""
    remaining = int(duration.total_seconds())
    if remaining <= 0:
        return "0s"
    parts: list[str] = []
    for unit, factor in _UNITS.items():
        amount, remaining = divmod(remaining, factor)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)
