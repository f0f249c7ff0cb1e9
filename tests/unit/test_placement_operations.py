"""Restore operations over placement: refusals write nothing, rows go STARTED at once and end
COMPLETED or FAILED with a reason that names the damaged file."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from cassy_scheduler.node.discovery import CqlAccess
from cassy_scheduler.node.executor import NodeEndpoint
from cassy_scheduler.node.manifest import BackupIdentity
from cassy_scheduler.node.placement import NodeDirectories
from cassy_scheduler.node.transfer import LocalFile, upload_files
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.server.errors import NodesNotRestorableError
from cassy_scheduler.server.metadata import SqliteMetadataStore
from cassy_scheduler.server.nodejobs import NodeAccess
from cassy_scheduler.server.restore import RestoreOperations
from cassy_scheduler.server.rows import ClusterRecord, RestoreRecord
from cassy_scheduler.storage import FilesystemStorage
from cassy_scheduler.storage.layout import node_backup_prefix

NODES = ("127.0.0.1", "127.0.0.2")
SID = "snap-1"
TABLE = "shop/orders-0123456789abcdef0123456789abcdef"
DATA = f"{TABLE}/snapshots/{SID}/nb-1-big-Data.db"


class LocalExecutor:
    """Files on this host; restores never run nodetool."""

    def stop_running(self) -> int:
        return 0

    def run(self, node: NodeEndpoint, args: Sequence[str], timeout_s: float) -> str:
        raise AssertionError(f"a restore ran nodetool {args}")


class Ports:
    """Each node's JMX port as a real socket on loopback: bound and refusing while the node
    is stopped, listening once `start` says it runs; and one refusing CQL port for all."""

    def __init__(self, nodes: Sequence[str]) -> None:
        self._sockets = {node: self._bound() for node in nodes}
        self.cql = self._bound()

    @staticmethod
    def _bound() -> socket.socket:
        bound = socket.socket()
        bound.bind(("127.0.0.1", 0))
        return bound

    def jmx_port(self, node: str) -> int:
        return int(self._sockets[node].getsockname()[1])

    def start(self, node: str) -> None:
        self._sockets[node].listen()

    def stop(self, node: str) -> None:
        self._sockets[node].close()
        self._sockets[node] = self._bound()

    def close(self) -> None:
        for bound in (*self._sockets.values(), self.cql):
            bound.close()


CLUSTER = ClusterRecord("prod-1", "prod", NODES, ("shop",), "/unused", 0, 0)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[RestoreOperations, SqliteMetadataStore, Ports]]:
    storage = FilesystemStorage(tmp_path / "store", durable=False)
    for node in NODES:
        source = tmp_path / "source" / node / DATA
        source.parent.mkdir(parents=True)
        source.write_bytes(b"rows of " + node.encode())
        identity = BackupIdentity("prod-1", SID, node, BackupType.NODE_SNAPSHOT, 100)
        prefix = node_backup_prefix("prod-1", SID, node)
        upload_files(storage, prefix, [LocalFile(source, DATA)], identity, workers=1)
    metadata = SqliteMetadataStore(tmp_path / "metadata.db")
    ports = Ports(NODES)
    nodes = NodeAccess(
        executor=LocalExecutor(),
        endpoint=lambda a: NodeEndpoint(a, "127.0.0.1", ports.jmx_port(a)),
        cql=CqlAccess(port=int(ports.cql.getsockname()[1])),
    )

    def directories(node: str, cluster: ClusterRecord) -> NodeDirectories:
        return NodeDirectories.beside(tmp_path / "nodes" / node / "data")

    operations = RestoreOperations(metadata, storage, nodes, directories)
    yield operations, metadata, ports
    operations.shutdown(5)
    metadata.close()
    ports.close()


def _final(metadata: SqliteMetadataStore, timeout_s: float = 30) -> list[RestoreRecord]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = metadata.list_restores(snapshot_id=SID)
        if rows and all(r.status.is_final for r in rows):
            return rows
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)


def test_every_node_is_restored_and_completed(
    setup: tuple[RestoreOperations, SqliteMetadataStore, Ports], tmp_path: Path
) -> None:
    operations, metadata, _ = setup
    started = operations.start_restore(CLUSTER, SID, (), snapshot_only=False)
    assert started.targets == NODES
    rows = _final(metadata)
    assert {r.target_ip: r.status for r in rows} == dict.fromkeys(NODES, OperationStatus.COMPLETED)
    for node in NODES:
        placed = tmp_path / "nodes" / node / "data" / TABLE / "nb-1-big-Data.db"
        assert placed.read_bytes() == b"rows of " + node.encode()


def test_a_running_node_is_refused_naming_it_and_nothing_is_recorded(
    setup: tuple[RestoreOperations, SqliteMetadataStore, Ports], tmp_path: Path
) -> None:
    operations, metadata, ports = setup
    ports.start("127.0.0.2")
    (tmp_path / "nodes" / "127.0.0.1" / "hints").mkdir(parents=True)
    (tmp_path / "nodes" / "127.0.0.1" / "hints" / "x.hints").write_bytes(b"")
    with pytest.raises(NodesNotRestorableError) as refused:
        operations.start_restore(CLUSTER, SID, (), snapshot_only=False)
    message = str(refused.value)
    assert "127.0.0.1: hints directory" in message
    assert "127.0.0.2: Cassandra is running" in message
    assert metadata.list_restores(snapshot_id=SID) == []
    assert not (tmp_path / "nodes" / "127.0.0.1" / "data").exists()
    # Refused requests release their nodes: once fixed, the restore is accepted.
    ports.stop("127.0.0.2")
    (tmp_path / "nodes" / "127.0.0.1" / "hints" / "x.hints").unlink()
    operations.start_restore(CLUSTER, SID, ["127.0.0.1"], snapshot_only=False)
    assert [r.status for r in _final(metadata)] == [OperationStatus.COMPLETED]


def test_a_corrupt_object_fails_only_its_node_with_the_file_named(
    setup: tuple[RestoreOperations, SqliteMetadataStore, Ports], tmp_path: Path
) -> None:
    operations, metadata, _ = setup
    damaged = tmp_path / "store" / node_backup_prefix("prod-1", SID, "127.0.0.2") / DATA
    damaged.write_bytes(b"rows of 127.0.0.3")
    operations.start_restore(CLUSTER, SID, (), snapshot_only=False)
    rows = {r.target_ip: r for r in _final(metadata)}
    assert rows["127.0.0.1"].status is OperationStatus.COMPLETED
    assert rows["127.0.0.2"].status is OperationStatus.FAILED
    assert rows["127.0.0.2"].reason is not None and DATA in rows["127.0.0.2"].reason
    assert not (tmp_path / "nodes" / "127.0.0.2" / "data").exists()
