"""verify: every file a snapshot's manifests list is present and whole, reported per node."""

from __future__ import annotations

from pathlib import Path

import pytest

from cassy_scheduler.node.transfer import BackupIdentity, LocalFile, upload_files
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage import FilesystemStorage
from cassy_scheduler.storage.layout import node_backup_prefix
from cassy_scheduler.verify import ProblemKind, stored_nodes, verify_snapshot

CLUSTER = "prod-1"
SID = "snap-1"
TABLE = "shop/orders-0123456789abcdef0123456789abcdef"
NODES = ("127.0.0.1", "127.0.0.2")


def _upload(
    storage: FilesystemStorage,
    tmp_path: Path,
    node: str,
    *,
    kind: BackupType,
    created_at: int,
    files: dict[str, bytes],
) -> None:
    local = []
    for relative, data in files.items():
        path = tmp_path / "node" / node / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        local.append(LocalFile(path, relative))
    identity = BackupIdentity(CLUSTER, SID, node, kind, created_at)
    upload_files(storage, node_backup_prefix(CLUSTER, SID, node), local, identity, workers=1)


@pytest.fixture
def storage(tmp_path: Path) -> FilesystemStorage:
    store = FilesystemStorage(tmp_path / "store", durable=False)
    for node in NODES:
        _upload(
            store,
            tmp_path,
            node,
            kind=BackupType.NODE_SNAPSHOT,
            created_at=100,
            files={
                f"{TABLE}/snapshots/{SID}/nb-1-big-Data.db": b"one" * 10,
                f"{TABLE}/snapshots/{SID}/manifest.json": b"{}",
            },
        )
        _upload(
            store,
            tmp_path,
            node,
            kind=BackupType.NODE_INCREMENTAL,
            created_at=200,
            files={f"{TABLE}/backups/nb-2-big-Data.db": b"two" * 10},
        )
    return store


def _key(node: str, path: str) -> str:
    return node_backup_prefix(CLUSTER, SID, node) + path


def test_a_whole_backup_verifies_on_every_node(storage: FilesystemStorage) -> None:
    report = verify_snapshot(storage, CLUSTER, SID)
    assert report.ok
    assert [n.node_ip for n in report.nodes] == list(NODES)
    for node in report.nodes:
        assert (node.manifests, node.files, node.bytes) == (2, 3, 62)
    assert stored_nodes(storage, CLUSTER, SID) == list(NODES)


def test_each_kind_of_damage_is_reported_on_its_node_naming_the_file(
    storage: FilesystemStorage,
) -> None:
    data = f"{TABLE}/snapshots/{SID}/nb-1-big-Data.db"
    backup = f"{TABLE}/backups/nb-2-big-Data.db"
    storage.put_bytes(_key("127.0.0.1", data), b"One" * 10)  # same size, other bytes
    storage.put_bytes(_key("127.0.0.2", backup), b"two")
    storage.delete(_key("127.0.0.2", data))
    report = verify_snapshot(storage, CLUSTER, SID)
    assert not report.ok
    problems = {n.node_ip: [(p.kind, p.path) for p in n.problems] for n in report.nodes}
    assert problems == {
        "127.0.0.1": [(ProblemKind.WRONG_CHECKSUM, data)],
        "127.0.0.2": [(ProblemKind.WRONG_SIZE, backup), (ProblemKind.MISSING, data)],
    }


def test_a_node_expected_but_without_a_manifest_is_a_problem(storage: FilesystemStorage) -> None:
    report = verify_snapshot(storage, CLUSTER, SID, nodes=[*NODES, "127.0.0.3"])
    (third,) = [n for n in report.nodes if n.node_ip == "127.0.0.3"]
    assert [p.kind for p in third.problems] == [ProblemKind.NO_MANIFEST]
    assert not report.ok


def test_incrementals_without_their_snapshot_are_not_restorable(
    storage: FilesystemStorage,
) -> None:
    prefix = node_backup_prefix(CLUSTER, SID, "127.0.0.1")
    storage.delete(f"{prefix}upload-manifests/0000000000100-node_snapshot.json")
    report = verify_snapshot(storage, CLUSTER, SID)
    (first,) = [n for n in report.nodes if n.node_ip == "127.0.0.1"]
    assert [p.kind for p in first.problems] == [ProblemKind.NOT_RESTORABLE]


def test_a_corrupt_manifest_is_reported(storage: FilesystemStorage) -> None:
    prefix = node_backup_prefix(CLUSTER, SID, "127.0.0.2")
    storage.put_bytes(f"{prefix}upload-manifests/0000000000200-node_incremental.json", b"{")
    report = verify_snapshot(storage, CLUSTER, SID)
    (second,) = [n for n in report.nodes if n.node_ip == "127.0.0.2"]
    assert [p.kind for p in second.problems] == [ProblemKind.BAD_MANIFEST]


def test_nothing_stored_is_not_ok(tmp_path: Path) -> None:
    empty = FilesystemStorage(tmp_path / "empty", durable=False)
    report = verify_snapshot(empty, CLUSTER, SID)
    assert report.nodes == () and not report.ok
