"""The audit log as the access gate writes it: each row stored, and, when the server keeps
rows for a limited time ([access] audit_keep), the ones older than that removed at start
and then at most once an hour, in the writer's own thread (no timer to stop)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

from cassy_scheduler.server.rows import AuditRecord

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0


class AuditStore(Protocol):
    def record_call(self, record: AuditRecord) -> None: ...

    def prune_audit(self, before_ms: int) -> int: ...


class KeptAuditLog:
    """The gate's audit sink: a row written is never lost to a prune that fails."""

    def __init__(
        self,
        store: AuditStore,
        keep: timedelta | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._keep = keep
        self._clock = clock
        self._lock = threading.Lock()
        self._pruned_at: float | None = None
        self.prune()

    def record_call(self, record: AuditRecord) -> None:
        self._store.record_call(record)
        due = self._pruned_at is not None and self._clock() - self._pruned_at >= PRUNE_EVERY_S
        if due:
            try:
                self.prune()
            except Exception:  # the row is written; the next hour tries again
                log.exception("audit rows older than %s not removed", self._keep)

    def prune(self) -> int:
        """Remove the rows older than the keep time; how many went (0 when all are kept)."""
        if self._keep is None:
            return 0
        with self._lock:
            now = self._clock()
            self._pruned_at = now
            before_ms = int((now - self._keep.total_seconds()) * 1000)
            removed = self._store.prune_audit(before_ms)
        if removed:
            log.info("audit rows removed count=%d older_than=%s", removed, self._keep)
        return removed
