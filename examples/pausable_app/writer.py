"""The application's work: logical writes, each a pair of rows in two partitions.

A producer queues one logical write at a steady rate; workers take them from the queue and
write the first row, then the second. A logical write is "outstanding" from the moment a
worker takes it until its second row is acknowledged. While paused, workers take nothing, so
new writes wait in the queue; on unpause they are written in order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

RETRY_DELAY_S = 0.2


def create_table_cql(keyspace: str, table: str = "pairs") -> str:
    """The table both halves go to; `id` is the partition key, so each row is its own partition."""
    return (
        f"CREATE TABLE IF NOT EXISTS {keyspace}.{table} "
        "(id text PRIMARY KEY, pair text, half text, written_at timestamp)"
    )


@dataclass(frozen=True)
class WriterSettings:
    """How the application writes: who it is, how fast, and the gap between the two halves."""

    instance_id: str
    keyspace: str
    table: str = "pairs"
    pairs_per_second: float = 40.0
    workers: int = 4
    gap_s: float = 0.005
    max_queued: int = 100_000


class PairWriter:
    """Queue, workers and the pause gate; every counter is read under one condition."""

    def __init__(self, session: Any, settings: WriterSettings) -> None:
        self._session = session
        self._settings = settings
        self._insert = session.prepare(
            f"INSERT INTO {settings.keyspace}.{settings.table} (id, pair, half, written_at) "
            "VALUES (?, ?, ?, toTimestamp(now()))"
        )
        self._state = threading.Condition()
        self._queue: deque[int] = deque()
        self._paused = False
        self._stopping = False
        self._in_flight = 0
        self._written = 0
        self._next_pair = 0
        self._write_errors = 0
        self._pauses = 0
        self._unpauses = 0
        self._paused_since: float | None = None
        self._paused_total_s = 0.0
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._produce, name="producer", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, name=f"worker-{n}", daemon=True)
            for n in range(self._settings.workers)
        ]
        for thread in self._threads:
            thread.start()

    # ---------------------------------------------------------------- pausing
    def pause(self, wait_outstanding: bool, timeout_s: float | None) -> bool:
        """Stop taking new writes; with `wait_outstanding`, wait until none is in flight.

        Returns False if outstanding writes did not finish within `timeout_s`.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._state:
            if not self._paused:
                self._paused = True
                self._pauses += 1
                self._paused_since = time.monotonic()
            if not wait_outstanding:
                return True
            while self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._state.wait(remaining)
        return True

    def unpause(self) -> None:
        """Take writes again; the queued ones go first."""
        with self._state:
            if self._paused:
                self._paused = False
                self._unpauses += 1
                if self._paused_since is not None:
                    self._paused_total_s += time.monotonic() - self._paused_since
                self._paused_since = None
            self._state.notify_all()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish outstanding writes and stop; queued writes are dropped."""
        with self._state:
            self._stopping = True
            self._state.notify_all()
        for thread in self._threads:
            thread.join(timeout_s)

    def stats(self) -> dict[str, object]:
        with self._state:
            return {
                "instance": self._settings.instance_id,
                "paused": self._paused,
                "pairs_written": self._written,
                "pairs_queued": len(self._queue),
                "in_flight": self._in_flight,
                "pauses": self._pauses,
                "unpauses": self._unpauses,
                "write_errors": self._write_errors,
                "paused_seconds_total": round(self._paused_total_s, 3),
            }

    # ---------------------------------------------------------------- working
    def _produce(self) -> None:
        interval = 1.0 / self._settings.pairs_per_second
        next_at = time.monotonic()
        while True:
            with self._state:
                if self._stopping:
                    return
                if len(self._queue) < self._settings.max_queued:
                    self._queue.append(self._next_pair)
                    self._next_pair += 1
                    self._state.notify()
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def _work(self) -> None:
        while True:
            with self._state:
                while not self._stopping and (self._paused or not self._queue):
                    self._state.wait()
                if self._stopping:
                    return
                pair = self._queue.popleft()
                self._in_flight += 1
            try:
                self._write_pair(pair)
            finally:
                with self._state:
                    self._in_flight -= 1
                    self._written += 1
                    self._state.notify_all()

    def _write_pair(self, pair: int) -> None:
        """Both halves, one after the other; each retried until it is acknowledged."""
        pair_id = f"{self._settings.instance_id}/{pair}"
        self._write_row(f"{pair_id}/a", pair_id, "a")
        if self._settings.gap_s:
            time.sleep(self._settings.gap_s)
        self._write_row(f"{pair_id}/b", pair_id, "b")

    def _write_row(self, row_id: str, pair_id: str, half: str) -> None:
        while True:
            try:
                self._session.execute(self._insert, (row_id, pair_id, half))
                return
            except Exception as exc:  # the driver raises many kinds; all are retried
                with self._state:
                    self._write_errors += 1
                log.warning("write failed, retrying row=%s error=%s", row_id, exc)
                time.sleep(RETRY_DELAY_S)
