"""Time behind one small interface, for the scheduler and the server alike, so tests never
sleep.

Wall-clock instants (aware, UTC) say when things are due and are recorded; the monotonic clock
measures waits, so a wall-clock step cannot stretch or cut a timeout.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Now, a monotonic reading, and a wait that a stop event can cut short."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Wait up to `seconds`; True when `stop` was set (at once or during the wait)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if stop is None:
            time.sleep(max(seconds, 0.0))
            return False
        return stop.wait(max(seconds, 0.0))


SYSTEM_CLOCK = SystemClock()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(instant: datetime) -> int:
    """Milliseconds since the epoch, the unit of every timestamp Cassy carries (exact: no
    float in between)."""
    return (instant - _EPOCH) // timedelta(milliseconds=1)
