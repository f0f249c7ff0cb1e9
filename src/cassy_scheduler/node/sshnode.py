"""Nodes on other hosts: their work done by `cassy-scheduler node` there, over SSH.

`SshNodes` holds the connections and gives each node reached over SSH a `RemoteSide` (the
backup and restore work) and the `SshExecutor` (nodetool, for discovery and the cluster-wide
cut). The first call on a connection asks the node program its protocol version and refuses
a host whose program is missing or speaks another one, with the install command. With object
storage each node program opens the store itself, so file contents never pass through the
server; with `file://` storage they come through the session (node/storagechannel.py).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from cassy_scheduler.node.executor import NodeEndpoint, NodeExecutor
from cassy_scheduler.node.placement import NodeDirectories, PlacementResult
from cassy_scheduler.node.progress import Progress
from cassy_scheduler.node.remote import (
    LAST_WORD_S,
    NodeProgramError,
    install_hint,
    result_field,
    run_remote,
)
from cassy_scheduler.node.side import ProgressLog
from cassy_scheduler.node.ssh import SshConnections, SshError
from cassy_scheduler.node.sshtarget import SshTarget
from cassy_scheduler.node.wire import PROTOCOL_VERSION, Message
from cassy_scheduler.node.work import (
    BackupDone,
    BackupOrder,
    NodeFacts,
    RestoreOrder,
    directories_document,
)
from cassy_scheduler.storage.base import Storage
from cassy_scheduler.storage.options import StorageOptions

_log = logging.getLogger(__name__)


class SshNodes:
    """Everything the server needs to work on nodes over SSH, sharing one set of connections."""

    def __init__(self, storage: Storage, storage_options: StorageOptions) -> None:
        self.connections = SshConnections()
        self._storage = storage
        self._options = storage_options
        self._lock = threading.Lock()
        self._checked: set[SshTarget] = set()
        self._in_flight = 0
        self._stopping = False

    def side(self, endpoint: NodeEndpoint, nodetool_timeout_s: float) -> RemoteSide:
        assert endpoint.ssh is not None
        return RemoteSide(self, endpoint.address, endpoint.ssh, nodetool_timeout_s)

    def call(
        self,
        target: SshTarget,
        op: str,
        request: Message,
        *,
        cancelled: Callable[[], bool] = lambda: False,
        progress: Progress | None = None,
        with_storage: bool = False,
    ) -> Message:
        with self._lock:
            if self._stopping:
                raise SshError(f"{op} on {target.where} not started: the server is stopping")
            self._in_flight += 1
        try:
            self._check_program(target)
            if target.environment:
                request = {**request, "environment": dict(target.environment)}
            return run_remote(
                self.connections,
                target,
                op,
                request,
                storage=self._storage if with_storage else None,
                cancelled=cancelled,
                progress=progress,
            )
        except SshError:
            self._forget(target)
            raise
        finally:
            with self._lock:
                self._in_flight -= 1

    def storage_spec(self, target: SshTarget) -> Message:
        """How the node program reaches storage: the store itself (with the credentials this
        server read, sent on the session's input), or through the session for `file://`."""
        if self._options.scheme == "file":
            return {"channel": self._storage.uri, "sealed_with": self._storage.sealed_with}
        options = self._options
        if target.max_bandwidth is not None:
            options = dataclasses.replace(options, max_bandwidth=target.max_bandwidth)
        return {"options": options.to_document()}

    def _check_program(self, target: SshTarget) -> None:
        with self._lock:
            if target in self._checked:
                return
        hello = run_remote(self.connections, target, "hello", {})
        protocol = hello.get("protocol")
        if protocol != PROTOCOL_VERSION:
            raise NodeProgramError(
                f"the node program on {target.where} (version {hello.get('version')}) speaks "
                f"protocol {protocol}, this server {PROTOCOL_VERSION}: {install_hint(target)}"
            )
        with self._lock:
            self._checked.add(target)

    def _forget(self, target: SshTarget) -> None:
        with self._lock:
            self._checked.discard(target)

    def stop(self) -> int:
        """Refuse new calls and close every connection (each remote program sees its input
        end and stops); calls still running first get their program's last word."""
        with self._lock:
            self._stopping = True
            running = self._in_flight
        if not running:
            return self.connections.close()
        closing = threading.Timer(LAST_WORD_S + 0.5, self.connections.close)
        closing.daemon = True
        closing.start()
        return running


class RemoteSide:
    """One node's host, reached over SSH (a `NodeSide`)."""

    def __init__(
        self, nodes: SshNodes, address: str, target: SshTarget, nodetool_timeout_s: float
    ) -> None:
        self._nodes = nodes
        self._address = address
        self._target = target
        self._nodetool_timeout_s = nodetool_timeout_s

    def facts(self, data_dir: Path, keyspaces: Sequence[str]) -> NodeFacts:
        result = self._nodes.call(
            self._target, "facts", {"data_dir": str(data_dir), "keyspaces": list(keyspaces)}
        )
        return NodeFacts(
            str(result_field(result, "data_dir")),
            tuple(result_field(result, "keyspaces")),
            tuple(result_field(result, "snapshot_tags")),
        )

    def remove_snapshots(self, data_dir: Path, tags: Sequence[str]) -> None:
        if tags:
            self._nodes.call(
                self._target, "remove-snapshots", {"data_dir": str(data_dir), "tags": list(tags)}
            )

    def back_up(self, order: BackupOrder, cancelled: Callable[[], bool]) -> BackupDone:
        result = self._nodes.call(
            self._target,
            "backup",
            {
                "order": order.to_message(),
                "storage": self._nodes.storage_spec(self._target),
                "nodetool_timeout_s": self._nodetool_timeout_s,
            },
            cancelled=cancelled,
            progress=ProgressLog("backup", self._address),
            with_storage=True,
        )
        try:
            return BackupDone.from_message(result)
        except (KeyError, TypeError) as exc:
            raise NodeProgramError(
                f"the node program's result lacks {exc}: another version?"
            ) from None

    def restore_problems(self, dirs: NodeDirectories | None, cql_port: int) -> str | None:
        result = self._nodes.call(
            self._target,
            "restore-check",
            {
                "dirs": None if dirs is None else directories_document(dirs),
                "cql": [self._address, cql_port],
            },
        )
        problem = result_field(result, "problem")
        return None if problem is None else str(problem)

    def restore(self, order: RestoreOrder, cancelled: Callable[[], bool]) -> PlacementResult:
        result = self._nodes.call(
            self._target,
            "restore",
            {"order": order.to_message(), "storage": self._nodes.storage_spec(self._target)},
            cancelled=cancelled,
            progress=ProgressLog("restore", self._address),
            with_storage=True,
        )
        for leftover in result.get("leftovers", ()):
            _log.warning(
                "removed a staging directory left by an earlier restore node=%s path=%s",
                self._address,
                leftover,
            )
        return PlacementResult(
            int(result_field(result, "files")),
            int(result_field(result, "bytes")),
            tuple(result_field(result, "keyspaces")),
        )


class SshExecutor:
    """nodetool on a node's own host, through its node program (a `NodeExecutor`); nodes
    without SSH go to `local`."""

    def __init__(self, nodes: SshNodes, local: NodeExecutor) -> None:
        self._nodes = nodes
        self._local = local

    def run(self, node: NodeEndpoint, args: Sequence[str], timeout_s: float) -> str:
        if node.ssh is None:
            return self._local.run(node, args, timeout_s)
        result = self._nodes.call(
            node.ssh, "nodetool", {"args": list(args), "timeout_s": timeout_s}
        )
        return str(result_field(result, "output"))

    def stop_running(self) -> int:
        return self._local.stop_running() + self._nodes.stop()
