"""Duration, size and rate fields for the config files' pydantic models: "30s" in, a
timedelta out ("16MiB" in, bytes out), and a problem that says how to write one. Apart from
durations.py and sizes.py so that printing a duration does not load pydantic."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

from cassy_scheduler.configfile.durations import DurationError, parse_duration
from cassy_scheduler.configfile.sizes import RATE_HINT, SIZE_HINT, SizeError, parse_rate, parse_size


def _duration(value: object) -> object:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "duration_type",
            "a duration must be a quoted string, got {given}",
            {"given": repr(value), "hint": 'write e.g. "30s", "5m" or "2h"'},
        )
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise PydanticCustomError("duration", str(exc), {"hint": exc.hint}) from None


Duration = Annotated[timedelta, BeforeValidator(_duration)]
"""A duration field of a config file's pydantic model: "30s" in, a timedelta out."""


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise PydanticCustomError(
            "duration_positive",
            "must be longer than zero",
            {"hint": 'write e.g. "30s", "5m" or "2h"'},
        )
    return value


PositiveDuration = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_positive)]
"""A duration that must be longer than zero: a timeout."""


def _reader(parse: Callable[[str], int], kind: str, hint: str) -> Callable[[object], object]:
    def read(value: object) -> object:
        if not isinstance(value, str):
            raise PydanticCustomError(
                f"{kind}_type",
                f"a {kind} must be a quoted string, got {{given}}",
                {"given": repr(value), "hint": hint},
            )
        try:
            return parse(value)
        except SizeError as exc:
            raise PydanticCustomError(kind, str(exc), {"hint": exc.hint}) from None

    return read


Size = Annotated[int, BeforeValidator(_reader(parse_size, "size", SIZE_HINT))]
"""A size field: "16MiB" in, bytes out."""

Rate = Annotated[int, BeforeValidator(_reader(parse_rate, "rate", RATE_HINT))]
"""A rate field: "200MB/s" in, bytes per second out."""
