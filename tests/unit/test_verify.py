"""verify: every file a snapshot's manifests list is present and whole, reported per node."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from cassy_scheduler.node.manifest import BackupIdentity
from cassy_scheduler.node.transfer import LocalFile, upload_files
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage import FilesystemStorage
from cassy_scheduler.storage.layout import node_backup_prefix
from cassy_scheduler.verify import (
    CheckMethod,
    ProblemKind,
    choose_method,
    stored_nodes,
    verify_snapshot,
)

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


# --- backups written without manifests, as Scalar's Cassy writes them -----------------------

COMPONENTS = ("Data.db", "Index.db", "Statistics.db", "TOC.txt", "Digest.crc32")


def _sstable(generation: int, data: bytes) -> dict[str, bytes]:
    """The files of one SSTable, as Cassandra writes them: TOC and CRC32 of Data.db."""
    name = f"nb-{generation}-big-"
    return {
        f"{name}Data.db": data,
        f"{name}Index.db": b"index",
        f"{name}Statistics.db": b"stats",
        f"{name}TOC.txt": "\n".join(COMPONENTS).encode() + b"\n",
        f"{name}Digest.crc32": str(zlib.crc32(data)).encode(),
    }


@pytest.fixture
def cassy_written(tmp_path: Path) -> FilesystemStorage:
    """Two nodes' snapshot and one incremental, in Cassy's layout, with no manifests."""
    store = FilesystemStorage(tmp_path / "cassy", durable=False)
    for node in NODES:
        snapshot = {
            f"{TABLE}/snapshots/{SID}/{name}": data
            for name, data in _sstable(1, b"rows" * 1000).items()
        }
        snapshot[f"{TABLE}/snapshots/{SID}/manifest.json"] = b'{"files": ["nb-1-big-Data.db"]}'
        backups = {f"{TABLE}/backups/{n}": d for n, d in _sstable(2, b"later" * 100).items()}
        for path, data in {**snapshot, **backups}.items():
            store.put_bytes(_key(node, path), data)
    return store


def test_a_cassy_written_backup_verifies_by_its_sstable_digests(
    cassy_written: FilesystemStorage,
) -> None:
    report = verify_snapshot(cassy_written, CLUSTER, SID, NODES)
    assert report.ok, report
    assert {n.method for n in report.nodes} == {CheckMethod.SSTABLE_DIGESTS}
    assert all(n.files == 11 for n in report.nodes)


def test_a_corrupt_data_file_fails_its_digest(cassy_written: FilesystemStorage) -> None:
    data = f"{TABLE}/snapshots/{SID}/nb-1-big-Data.db"
    cassy_written.put_bytes(_key("127.0.0.2", data), b"ROWS" * 1000)  # same size
    report = verify_snapshot(cassy_written, CLUSTER, SID, NODES)
    problems = {n.node_ip: [(p.kind, p.path) for p in n.problems] for n in report.nodes}
    assert problems == {"127.0.0.1": [], "127.0.0.2": [(ProblemKind.WRONG_CHECKSUM, data)]}
    assert report.restorable == ("127.0.0.1",)


def test_missing_components_and_sstables_are_named(cassy_written: FilesystemStorage) -> None:
    index = f"{TABLE}/backups/nb-2-big-Index.db"
    cassy_written.delete(_key("127.0.0.1", index))
    for name in _sstable(1, b""):
        cassy_written.delete(_key("127.0.0.2", f"{TABLE}/snapshots/{SID}/{name}"))
    report = verify_snapshot(cassy_written, CLUSTER, SID, NODES)
    first, second = report.nodes
    assert [(p.kind, p.path) for p in first.problems] == [(ProblemKind.MISSING, index)]
    assert [p.kind for p in second.problems] == [ProblemKind.MISSING]
    assert "listed in the snapshot's manifest.json" in second.problems[0].detail


def test_an_empty_component_fails_only_where_cassandra_never_writes_one_empty(
    cassy_written: FilesystemStorage,
) -> None:
    """BTI's Rows.db is empty when no partition has a row index; an empty Data.db is damage."""
    rows = f"{TABLE}/snapshots/{SID}/nb-1-big-Rows.db"
    toc = f"{TABLE}/snapshots/{SID}/nb-1-big-TOC.txt"
    index = f"{TABLE}/snapshots/{SID}/nb-1-big-Index.db"
    for node in NODES:
        cassy_written.put_bytes(_key(node, rows), b"")
        cassy_written.put_bytes(_key(node, toc), "\n".join((*COMPONENTS, "Rows.db")).encode())
    cassy_written.put_bytes(_key("127.0.0.2", index), b"")
    report = verify_snapshot(cassy_written, CLUSTER, SID, NODES)
    problems = {n.node_ip: [(p.kind, p.path) for p in n.problems] for n in report.nodes}
    assert problems == {"127.0.0.1": [], "127.0.0.2": [(ProblemKind.WRONG_SIZE, index)]}


def test_a_node_of_the_backup_with_nothing_stored_fails(
    cassy_written: FilesystemStorage,
) -> None:
    report = verify_snapshot(cassy_written, CLUSTER, SID, [*NODES, "127.0.0.3"])
    (third,) = [n for n in report.nodes if n.node_ip == "127.0.0.3"]
    assert [p.kind for p in third.problems] == [ProblemKind.NO_FILES]
    assert report.restorable == NODES and not report.ok


def test_a_failed_row_fails_its_node_whatever_storage_holds(storage: FilesystemStorage) -> None:
    report = verify_snapshot(
        storage, CLUSTER, SID, NODES, not_completed={"127.0.0.2": "FAILED (killed)"}
    )
    (second,) = [n for n in report.nodes if n.node_ip == "127.0.0.2"]
    assert [p.kind for p in second.problems] == [ProblemKind.NOT_COMPLETED]
    assert "FAILED (killed)" in second.problems[0].detail
    assert report.restorable == ("127.0.0.1",)


def test_once_a_node_has_a_manifest_a_node_without_one_fails(
    storage: FilesystemStorage, tmp_path: Path
) -> None:
    storage.put_bytes(_key("127.0.0.3", f"{TABLE}/snapshots/{SID}/nb-1-big-Data.db"), b"x")
    report = verify_snapshot(storage, CLUSTER, SID, NODES)
    (third,) = [n for n in report.nodes if n.node_ip == "127.0.0.3"]
    assert third.method is CheckMethod.NONE
    assert [p.kind for p in third.problems] == [ProblemKind.NO_MANIFEST]


@pytest.mark.parametrize(
    ("own", "any_node", "method"),
    [
        (True, True, CheckMethod.MANIFEST),
        (False, True, CheckMethod.NONE),
        (False, False, CheckMethod.SSTABLE_DIGESTS),
    ],
)
def test_how_a_node_is_checked(own: bool, any_node: bool, method: CheckMethod) -> None:
    assert choose_method(own, any_node) is method
