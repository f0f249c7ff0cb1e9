"""TakeBackup for a run: never started twice, and a refusal always named.

An answer can be lost after the server accepted the request (a deadline passed, the
connection dropped): before the runner retries, the cluster's rows newer than the newest
seen before the first attempt (`mark`) are looked at, and an accepted request is taken as
ours. A refusal whose reply carries no snapshot id (Scalar's Cassy answering INTERNAL after a
failed pause; the built-in server refusing down nodes) may still have left rows: those name
the snapshot and each node's cause.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cassy_scheduler.client import BackupAck, CassyAborted, CassyError
from cassy_scheduler.outcome import (
    BackupLister,
    BackupOutcome,
    find_accepted_backup,
    find_refused_backup,
)
from cassy_scheduler.protocol.types import BackupType

_log = logging.getLogger(__name__)


class TakingClient(BackupLister, Protocol):
    """The calls taking a backup makes (CassyClient has them)."""

    def take_backup(
        self,
        cluster_id: str,
        backup_type: BackupType,
        snapshot_id: str | None = None,
        target_ips: Iterable[str] = (),
        *,
        timeout_s: float | None = None,
    ) -> BackupAck: ...


@dataclass(frozen=True)
class Request:
    """One run's backup request: enough to take it, and to find it in the server's rows."""

    cluster_id: str
    backup_type: BackupType
    base_id: str | None
    mark: int  # the cluster's newest row (created_at ms) before the first attempt
    nodes: Sequence[str]
    label: str  # "job=... run_id=..." for the log

    def taker(self, client: TakingClient) -> Callable[[], BackupAck]:
        """The call the runner retries: TakeBackup, or the request a lost answer belonged to."""
        answer_lost = False

        def take() -> BackupAck:
            nonlocal answer_lost
            try:
                return client.take_backup(self.cluster_id, self.backup_type, self.base_id)
            except CassyError as exc:
                # ABORTED after a lost answer: the nodes may be busy with that very request.
                if not (exc.is_transient or (answer_lost and isinstance(exc, CassyAborted))):
                    raise
                answer_lost = True
                accepted = find_accepted_backup(client, *self._facts())
                if accepted is None:
                    raise
                _log.warning(
                    "backup accepted although its answer was lost %s snapshot_id=%s code=%s",
                    self.label,
                    accepted.snapshot_id,
                    exc.code.name,
                )
                return accepted

        return take

    def refused_rows(self, client: TakingClient) -> BackupOutcome | None:
        """The rows the server recorded for a refused request, if it recorded any."""
        try:
            found = find_refused_backup(client, *self._facts())
        except CassyError as exc:
            _log.info("refused backup not looked up %s error=%r", self.label, str(exc))
            return None
        if found is not None:
            _log.warning(
                "refused backup found in the server's history %s snapshot_id=%s",
                self.label,
                found.ack.snapshot_id,
            )
        return found

    def _facts(self) -> tuple[str, BackupType, str | None, int, Sequence[str]]:
        return (self.cluster_id, self.backup_type, self.base_id, self.mark, self.nodes)


def with_recorded_rows(message: str, found: BackupOutcome) -> str:
    """A refusal's message with the snapshot id and causes the server's rows give."""
    causes = "; ".join(f"{n.target_ip}: {n.reason}" for n in found.nodes if n.reason)
    recorded = f"the server recorded it as snapshot {found.ack.snapshot_id}, every node FAILED"
    return f"{message} ({recorded}{': ' + causes if causes else ''})"
