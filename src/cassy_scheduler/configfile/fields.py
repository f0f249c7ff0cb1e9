"""Duration fields for the config files' pydantic models: "30s" in, a timedelta out, and a
problem that says how to write one. Apart from durations.py so that printing a duration
does not load pydantic."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

from cassy_scheduler.configfile.durations import DurationError, parse_duration


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
