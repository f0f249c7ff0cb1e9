"""The node's side of an operation, as the server holds it: here, or over SSH.

The server decides (from its records) what each node does; a `NodeSide` does it where the
node's files are. `LocalSide` runs node/work.py in this process, for nodes whose data
directories this host reads; `RemoteSide` (node/sshnode.py) has `cassy-scheduler node` run it
on the node's own host.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from cassy_scheduler.node.datadir import remove_snapshot
from cassy_scheduler.node.executor import NodeEndpoint
from cassy_scheduler.node.nodetool import Nodetool
from cassy_scheduler.node.placement import NodeDirectories, PlacementResult
from cassy_scheduler.node.work import (
    BackupDone,
    BackupOrder,
    NodeFacts,
    RestoreOrder,
    back_up,
    node_facts,
    restore,
    restore_problems,
)
from cassy_scheduler.storage.base import Storage

_log = logging.getLogger(__name__)

PROGRESS_LOG_EVERY_S = 10.0


class NodeSide(Protocol):
    """What the server asks of one node's host."""

    def facts(self, data_dir: Path, keyspaces: Sequence[str]) -> NodeFacts: ...

    def remove_snapshots(self, data_dir: Path, tags: Sequence[str]) -> None: ...

    def back_up(self, order: BackupOrder, cancelled: Callable[[], bool]) -> BackupDone: ...

    def restore_problems(self, dirs: NodeDirectories | None, cql_port: int) -> str | None: ...

    def restore(self, order: RestoreOrder, cancelled: Callable[[], bool]) -> PlacementResult: ...


class ProgressLog:
    """Logs a node's files and bytes done, at most every PROGRESS_LOG_EVERY_S."""

    def __init__(self, what: str, node: str) -> None:
        self._what = what
        self._node = node
        self._lock = threading.Lock()
        self._logged = time.monotonic()

    def __call__(self, files: int, done: int) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._logged < PROGRESS_LOG_EVERY_S:
                return
            self._logged = now
        _log.info(
            "%s progress node=%s files_done=%d bytes_done=%d", self._what, self._node, files, done
        )


class LocalSide:
    """A node whose directories are on this host: the work runs in the server."""

    def __init__(self, endpoint: NodeEndpoint, storage: Storage, nodetool: Nodetool) -> None:
        self._endpoint = endpoint
        self._storage = storage
        self._nodetool = nodetool

    def facts(self, data_dir: Path, keyspaces: Sequence[str]) -> NodeFacts:
        return node_facts(data_dir, keyspaces)

    def remove_snapshots(self, data_dir: Path, tags: Sequence[str]) -> None:
        for tag in tags:
            remove_snapshot(data_dir, tag)

    def back_up(self, order: BackupOrder, cancelled: Callable[[], bool]) -> BackupDone:
        return back_up(
            order,
            self._storage,
            self._nodetool,
            cancelled=cancelled,
            progress=ProgressLog("backup", self._endpoint.address),
        )

    def restore_problems(self, dirs: NodeDirectories | None, cql_port: int) -> str | None:
        ports = [
            (self._endpoint.jmx_host, self._endpoint.jmx_port),
            (self._endpoint.address, cql_port),
        ]
        return restore_problems(dirs, ports)

    def restore(self, order: RestoreOrder, cancelled: Callable[[], bool]) -> PlacementResult:
        placed, leftovers = restore(
            order,
            self._storage,
            cancelled=cancelled,
            progress=ProgressLog("restore", self._endpoint.address),
        )
        for leftover in leftovers:
            _log.warning("removed a staging directory left by an earlier restore path=%s", leftover)
        return placed
