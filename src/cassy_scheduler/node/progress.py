"""How far a node's transfer has got: files and bytes done, told to whoever watches."""

from __future__ import annotations

import threading
from collections.abc import Callable

Progress = Callable[[int, int], None]
"""Called with (files done, bytes done) after each file; it must be quick and thread-safe."""


class Tally:
    """Counts files finished by several workers and passes the totals on."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._lock = threading.Lock()
        self.files = 0
        self.bytes = 0

    def add(self, size: int) -> None:
        with self._lock:
            self.files += 1
            self.bytes += size
            files, done = self.files, self.bytes
        if self._progress is not None:
            self._progress(files, done)
