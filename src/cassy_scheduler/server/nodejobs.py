"""The life of a request's node work, one for backups and restores alike.

Before the reply: the nodes are reserved (a node runs one operation at a time), one row per
node is recorded, checks that may refuse run, and every row goes STARTED. After it: a
coordinator thread hands each node's work to a pool, and each node's row ends COMPLETED, or
FAILED with the reason its work gave. At shutdown (`shut_down`): no new requests, running
work gets a grace, then running nodetool calls are killed and what is left is failed, so no
row stays STARTED.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from cassy_scheduler.clock import SYSTEM_CLOCK, Clock, epoch_ms
from cassy_scheduler.node.discovery import CqlAccess
from cassy_scheduler.node.executor import NodeEndpoint, NodeExecutor
from cassy_scheduler.node.nodetool import Nodetool
from cassy_scheduler.node.side import LocalSide, NodeSide
from cassy_scheduler.node.sshnode import SshNodes
from cassy_scheduler.protocol.types import OperationStatus
from cassy_scheduler.server.errors import (
    SERVER_STOPPED,
    NodesBusyError,
    ServerStoppingError,
    reason_of,
)
from cassy_scheduler.server.reservations import NodeReservations
from cassy_scheduler.server.rows import HistoryKey
from cassy_scheduler.storage.base import Storage

log = logging.getLogger(__name__)

ABANDON_WAIT_S = 5.0

RowUpdate = Callable[[HistoryKey, OperationStatus, str | None], object]
"""Sets one row's status and reason (the metadata's update for backup or restore rows)."""


@dataclass(frozen=True)
class NodeAccess:
    """How operations reach nodes: endpoints by address, the executor, CQL access, timeouts."""

    executor: NodeExecutor
    endpoint: Callable[[str], NodeEndpoint]
    cql: CqlAccess = field(default_factory=CqlAccess)
    nodetool_timeout_s: float = 1800.0
    reservations: NodeReservations = field(default_factory=NodeReservations)
    ssh: SshNodes | None = None  # set when some nodes are reached over SSH

    def nodetool(self, address: str) -> Nodetool:
        return Nodetool(self.executor, self.endpoint(address), self.nodetool_timeout_s)

    def side(self, address: str, storage: Storage) -> NodeSide:
        """Where the node's work runs: in this process, or on its host over SSH."""
        endpoint = self.endpoint(address)
        if endpoint.ssh is None:
            return LocalSide(endpoint, storage, self.nodetool(address))
        if self.ssh is None:
            raise AssertionError(f"{address} is reached over SSH but no SSH nodes were set up")
        return self.ssh.side(endpoint, self.nodetool_timeout_s)


class NodeJobs:
    """Requests of one kind ("backup" or "restore") and the threads that carry them out."""

    def __init__(
        self,
        kind: str,
        nodes: NodeAccess,
        update: RowUpdate,
        fail_unfinished: Callable[[str], int],
        *,
        parallel_nodes: int,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.kind = kind
        self.nodes = nodes
        self._update = update
        self._fail_unfinished = fail_unfinished
        self._clock = clock
        self.pool = ThreadPoolExecutor(parallel_nodes, thread_name_prefix=f"{kind}-node")
        self.stopping = threading.Event()
        self.abandoned = threading.Event()  # the grace is over: work stops at its next step
        self._lock = threading.Lock()
        self._coordinators: list[threading.Thread] = []

    def now_ms(self) -> int:
        return epoch_ms(self._clock.now())

    # -- before the reply --

    def begin(
        self,
        targets: Sequence[str],
        what: str,
        record: Callable[[int], Sequence[HistoryKey]],
        check: Callable[[Sequence[HistoryKey]], None] | None = None,
        *,
        ready: Callable[[], None] | None = None,
    ) -> list[HistoryKey]:
        """Reserve the nodes, run `ready` (checks that need them reserved and write nothing),
        record their rows (at `created_at` now), run `check`, and mark the rows STARTED;
        anything raised releases the nodes again."""
        if self.stopping.is_set():
            raise NodesBusyError("the server is shutting down; try again once it is back")
        self.nodes.reservations.reserve(targets, what)
        try:
            if ready is not None:
                ready()
            keys = list(record(self.now_ms()))
            if check is not None:
                check(keys)
            for key in keys:
                self._update(key, OperationStatus.STARTED, None)
        except BaseException:
            self.nodes.reservations.release(targets)
            raise
        return keys

    def run(self, name: str, targets: Sequence[str], coordinate: Callable[[], None]) -> None:
        """Carry the request on in a thread; its nodes are released when it ends."""

        def body() -> None:
            try:
                coordinate()
            except Exception:  # every row is ended by `finish`; this is a bug, and logged
                log.exception("%s coordinator failed", self.kind)
            finally:
                self.nodes.reservations.release(targets)

        worker = threading.Thread(target=body, name=name, daemon=True)
        with self._lock:
            self._coordinators = [t for t in self._coordinators if t.is_alive()]
            self._coordinators.append(worker)
        worker.start()

    # -- after it --

    def each_node(
        self, keys: Iterable[HistoryKey], work_of: Callable[[HistoryKey], Callable[[], str]]
    ) -> None:
        """Every node's work in the pool at once; returns when each row has its outcome."""
        wait([self.pool.submit(self.finish, key, work_of(key)) for key in keys])

    def finish(self, key: HistoryKey, work: Callable[[], str]) -> None:
        """Run one node's work and record its outcome; `work` says what it did."""
        try:
            if self.stopping.is_set():
                raise ServerStoppingError(SERVER_STOPPED)
            summary = work()
        except Exception as exc:
            self.fail(key, reason_of(exc))
            return
        self._update(key, OperationStatus.COMPLETED, None)
        log.info(
            "node %s completed cluster_id=%s node=%s snapshot_id=%s %s",
            self.kind,
            key.cluster_id,
            key.target_ip,
            key.snapshot_id,
            summary,
        )

    def fail(self, key: HistoryKey, reason: str) -> None:
        log.warning(
            "node %s failed cluster_id=%s node=%s snapshot_id=%s reason=%s",
            self.kind,
            key.cluster_id,
            key.target_ip,
            key.snapshot_id,
            reason,
        )
        self._update(key, OperationStatus.FAILED, reason)

    # -- shutdown, driven by shut_down for every kind at once --

    def _running(self) -> list[threading.Thread]:
        with self._lock:
            return [t for t in self._coordinators if t.is_alive()]

    def _join(self, deadline: float) -> None:
        for thread in self._running():
            thread.join(max(0.0, deadline - time.monotonic()))

    def _close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        failed = self._fail_unfinished(SERVER_STOPPED)
        if failed:
            log.warning(
                "%s rows left unfinished at shutdown marked FAILED rows=%d", self.kind, failed
            )


def shut_down(
    kinds: Sequence[NodeJobs],
    executor: NodeExecutor,
    grace_s: float,
    on_stop: Callable[[], None] = lambda: None,
) -> None:
    """Stop taking requests, let running work finish within `grace_s` (all kinds at once),
    then kill running nodetool calls and have work stop at its next step; what is left after
    ABANDON_WAIT_S more is recorded FAILED. `on_stop` runs first (end pause windows)."""
    for jobs in kinds:
        jobs.stopping.set()
    on_stop()
    deadline = time.monotonic() + grace_s
    for jobs in kinds:
        jobs._join(deadline)
    if any(jobs._running() for jobs in kinds):
        for jobs in kinds:
            jobs.abandoned.set()
        stopped = executor.stop_running()
        log.warning("grace period over: stopping running work nodetool_calls=%d", stopped)
        deadline = time.monotonic() + ABANDON_WAIT_S
        for jobs in kinds:
            jobs._join(deadline)
    for jobs in kinds:
        jobs._close()
    executor.stop_running()  # calls made outside any request's work (discovery, checks) too
