"""Waits that double between attempts, for retries of anything that may work next time."""

from __future__ import annotations

from datetime import timedelta


def doubling(base: timedelta, attempt: int, cap: int) -> timedelta:
    """base after the first attempt, then twice, four times ... at most `cap` times base."""
    return base * min(1 << max(attempt - 1, 0), cap)
