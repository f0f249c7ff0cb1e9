"""One operation per node at a time, backups and restores alike.

A snapshot clears the node's old snapshots and a restore fills its empty directories: either
running beside another operation on the same node would break it, so both kinds take their
nodes from one shared table before they start.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from cassy_scheduler.server.errors import NodesBusyError


class NodeReservations:
    """Which nodes have an operation running, and which one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: dict[str, str] = {}  # node address -> what runs there

    def reserve(self, nodes: Iterable[str], what: str) -> None:
        """Take every node or none; `what` describes the operation in others' refusals."""
        wanted = list(nodes)
        with self._lock:
            busy = {n: self._busy[n] for n in wanted if n in self._busy}
            if busy:
                described = ", ".join(f"{n} ({w})" for n, w in sorted(busy.items()))
                raise NodesBusyError(
                    f"an operation is still running on {described}; wait for it to finish "
                    "(ListBackups and ListRestoreStatuses show its status)"
                )
            self._busy.update(dict.fromkeys(wanted, what))

    def release(self, nodes: Iterable[str]) -> None:
        with self._lock:
            for node in nodes:
                self._busy.pop(node, None)
