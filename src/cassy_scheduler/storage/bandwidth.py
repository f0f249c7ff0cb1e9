"""One byte rate shared by every transfer of a server, so backups do not starve a node's
network: each chunk waits for its turn before it is sent or after it is fetched."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

_BURST_SECONDS = 0.25
"""How far ahead of the rate a quiet limiter lets the next bytes go: a quarter second of
allowance, so the rate holds over any second-long window within a few percent."""


class BandwidthLimit:
    """A pacing limiter: bytes are granted at `bytes_per_second`, in order of asking."""

    def __init__(
        self,
        bytes_per_second: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if bytes_per_second < 1:
            raise ValueError(f"bytes_per_second must be at least 1, got {bytes_per_second}")
        self.bytes_per_second = bytes_per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_free = clock()

    def take(self, count: int) -> None:
        """Wait until `count` more bytes fit the rate (a chunk larger than a second's worth
        simply waits longer)."""
        if count <= 0:
            return
        with self._lock:
            now = self._clock()
            start = max(self._next_free, now - _BURST_SECONDS)
            self._next_free = start + count / self.bytes_per_second
            wait = start - now
        if wait > 0:
            self._sleep(wait)


class Unlimited:
    """No limit: the default."""

    def take(self, count: int) -> None:
        return None
