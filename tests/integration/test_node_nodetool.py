"""Nodetool and the data-dir scan against a real Cassandra 5.0 node: what it writes, we find."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from cassandra.cluster import Session

from cassy_scheduler.node.datadir import (
    DataFile,
    backup_files,
    covered_backup_files,
    delete_files,
    snapshot_files,
    snapshot_tags,
    table_dirs,
)
from cassy_scheduler.node.executor import LocalExecutor, NodeEndpoint
from cassy_scheduler.node.liveness import cassandra_running
from cassy_scheduler.node.nodetool import Nodetool
from tools.localcluster import LocalCluster

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.cassandra


def local_executor() -> LocalExecutor:
    return LocalExecutor([str(REPO / "tools/localcluster/nodetool")])


def endpoint(cluster: LocalCluster, node: int | str) -> NodeEndpoint:
    spec = cluster.spec(node)
    return NodeEndpoint(spec.address, "127.0.0.1", spec.jmx_port, spec.data_dir)


def nodetool_for(cluster: LocalCluster, node: int | str = 1) -> Nodetool:
    return Nodetool(local_executor(), endpoint(cluster, node), timeout_s=180)


def _create_table(session: Session, keyspace: str) -> None:
    session.execute(f"CREATE TABLE {keyspace}.kv (k int PRIMARY KEY, v text, w int)")
    session.execute(f"CREATE INDEX kv_v ON {keyspace}.kv (v)")


def _write(session: Session, keyspace: str, start: int, count: int) -> None:
    insert = session.prepare(f"INSERT INTO {keyspace}.kv (k, v, w) VALUES (?, ?, ?)")
    for k in range(start, start + count):
        session.execute(insert, (k, f"value-{k % 7}", k))


def _walk(data_dir: Path, keyspace: str, below: tuple[str, ...]) -> set[str]:
    """Every file os.walk finds under `<table dir>/<below>` of the keyspace, data-dir relative."""
    found = set()
    for table in (data_dir / keyspace).iterdir():
        root = table.joinpath(*below)
        for directory, _, names in os.walk(root):
            for name in names:
                found.add((Path(directory) / name).relative_to(data_dir).as_posix())
    return found


def _relatives(files: list[DataFile]) -> set[str]:
    return {f.relative for f in files}


def test_snapshot_files_are_exactly_what_cassandra_wrote(
    cluster1: LocalCluster, session1: Session, keyspace1: str
) -> None:
    data_dir = cluster1.spec(1).data_dir
    nodetool = nodetool_for(cluster1)
    _create_table(session1, keyspace1)
    _write(session1, keyspace1, 0, 100)

    # No explicit flush: the snapshot must flush the memtable itself.
    nodetool.snapshot("snap-a", [keyspace1])

    files = snapshot_files(data_dir, "snap-a", [keyspace1])
    assert _relatives(files) == _walk(data_dir, keyspace1, ("snapshots", "snap-a"))
    assert [f.relative for f in files] == sorted(f.relative for f in files)
    names = {f.relative.split("/snapshots/snap-a/")[1] for f in files}
    assert {"manifest.json", "schema.cql"} <= names
    assert any(n.endswith("-Data.db") and "/" not in n for n in names)
    assert any(n.startswith(".kv_v/") and n.endswith("-Data.db") for n in names)
    for file in files:
        assert file.path == data_dir / file.relative
        assert file.size == file.path.stat().st_size
    (table,) = table_dirs(data_dir, [keyspace1])
    assert table.table == "kv"
    assert "snap-a" in snapshot_tags(data_dir, [keyspace1])

    nodetool.clear_snapshot("snap-a")
    assert snapshot_files(data_dir, "snap-a", [keyspace1]) == []
    assert "snap-a" not in snapshot_tags(data_dir, [keyspace1])


def test_backup_files_are_exactly_what_flushes_wrote(
    cluster1: LocalCluster, session1: Session, keyspace1: str
) -> None:
    data_dir = cluster1.spec(1).data_dir
    nodetool = nodetool_for(cluster1)
    _create_table(session1, keyspace1)
    _write(session1, keyspace1, 0, 50)
    nodetool.flush([keyspace1])
    _write(session1, keyspace1, 50, 50)
    nodetool.flush([keyspace1])

    files = backup_files(data_dir, [keyspace1])
    assert _relatives(files) == _walk(data_dir, keyspace1, ("backups",))
    data_files = [f.relative for f in files if f.relative.endswith("-Data.db")]
    assert len([r for r in data_files if "/.kv_v/" not in r]) == 2
    assert len([r for r in data_files if "/.kv_v/" in r]) == 2


def test_a_new_snapshot_covers_earlier_backups_but_not_later_ones(
    cluster1: LocalCluster, session1: Session, keyspace1: str
) -> None:
    data_dir = cluster1.spec(1).data_dir
    nodetool = nodetool_for(cluster1)
    _create_table(session1, keyspace1)
    _write(session1, keyspace1, 0, 50)
    nodetool.flush([keyspace1])
    before = backup_files(data_dir, [keyspace1])
    assert before

    _write(session1, keyspace1, 50, 50)  # left in the memtable for the snapshot to flush
    nodetool.snapshot("snap-b", [keyspace1])
    right_after = backup_files(data_dir, [keyspace1])
    assert len(right_after) > len(before)
    taken = snapshot_files(data_dir, "snap-b", [keyspace1])

    _write(session1, keyspace1, 100, 50)
    nodetool.flush([keyspace1])
    later = backup_files(data_dir, [keyspace1])
    written_after = _relatives(later) - _relatives(right_after)
    assert any(r.endswith("-Data.db") for r in written_after)

    covered = covered_backup_files(before, later, taken)
    assert _relatives(covered) == _relatives(right_after)
    delete_files(covered)
    assert _relatives(backup_files(data_dir, [keyspace1])) == written_after
    # The snapshot's hard links survive the deletion of their backup twins.
    assert all(f.path.exists() for f in taken)
    nodetool.clear_snapshot("snap-b")


def test_clear_all_snapshots(cluster1: LocalCluster, session1: Session, keyspace1: str) -> None:
    data_dir = cluster1.spec(1).data_dir
    nodetool = nodetool_for(cluster1)
    _create_table(session1, keyspace1)
    _write(session1, keyspace1, 0, 10)
    nodetool.snapshot("snap-c", [keyspace1])
    nodetool.snapshot("snap-d", [keyspace1, "system_schema"])
    assert {"snap-c", "snap-d"} <= snapshot_tags(data_dir, [keyspace1, "system_schema"])

    nodetool.clear_all_snapshots()

    assert snapshot_tags(data_dir, [keyspace1, "system_schema"]) == set()
    for tag in ("snap-c", "snap-d"):
        assert snapshot_files(data_dir, tag, [keyspace1, "system_schema"]) == []


def test_status_lists_the_node_up_normal(cluster1: LocalCluster) -> None:
    (node,) = nodetool_for(cluster1).status()
    assert (node.address, node.code) == (cluster1.spec(1).address, "UN")
    assert node.host_id


def test_data_file_directories(cluster1: LocalCluster) -> None:
    assert nodetool_for(cluster1).data_file_directories() == [cluster1.spec(1).data_dir]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_running_node_answers_and_a_stopped_one_refuses(cluster1: LocalCluster) -> None:
    spec = cluster1.spec(1)
    assert cassandra_running([("127.0.0.1", spec.jmx_port), (spec.address, spec.cql_port)])
    assert cassandra_running([("127.0.0.1", _free_port()), ("127.0.0.99", 9042)]) is False
