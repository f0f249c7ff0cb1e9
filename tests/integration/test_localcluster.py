"""The local cluster is real Cassandra: CQL, nodetool, snapshots, incremental backups, restarts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from cassandra.query import SimpleStatement

from tests.conftest import cql_session
from tools.localcluster import LocalCluster

REPO = Path(__file__).resolve().parents[2]


def _table_dir(cluster: LocalCluster, node: int, keyspace: str, table: str) -> Path:
    (found,) = (cluster.spec(node).data_dir / keyspace).glob(f"{table}-*")
    return found


def _write_rows(session: Session, keyspace: str, start: int, count: int) -> None:
    session.execute(f"CREATE TABLE IF NOT EXISTS {keyspace}.kv (k int PRIMARY KEY, v text)")
    insert = session.prepare(f"INSERT INTO {keyspace}.kv (k, v) VALUES (?, ?)")
    for k in range(start, start + count):
        session.execute(insert, (k, f"value-{k}"))


def test_snapshot_puts_table_files_under_snapshots_dir(
    cluster1: LocalCluster, session1: Session, keyspace1: str
) -> None:
    _write_rows(session1, keyspace1, 0, 100)
    cluster1.nodetool(1, "flush", keyspace1)
    cluster1.nodetool(1, "snapshot", "-t", "snap-one", keyspace1)

    snapshot = _table_dir(cluster1, 1, keyspace1, "kv") / "snapshots" / "snap-one"
    names = {p.name for p in snapshot.iterdir()}
    assert "manifest.json" in names
    assert "schema.cql" in names
    assert any(name.endswith("-Data.db") for name in names)
    listed = cluster1.nodetool(1, "listsnapshots")
    assert "snap-one" in listed
    cluster1.nodetool(1, "clearsnapshot", "-t", "snap-one", "--", keyspace1)
    assert not snapshot.exists()


def test_flush_writes_incremental_backup_files(
    cluster1: LocalCluster, session1: Session, keyspace1: str
) -> None:
    _write_rows(session1, keyspace1, 0, 50)
    cluster1.nodetool(1, "flush", keyspace1)
    backups = _table_dir(cluster1, 1, keyspace1, "kv") / "backups"
    first = {p.name for p in backups.iterdir()}
    assert any(name.endswith("-Data.db") for name in first)

    _write_rows(session1, keyspace1, 50, 50)
    cluster1.nodetool(1, "flush", keyspace1)
    second = {p.name for p in backups.iterdir()}
    assert first < second, "a second flush adds a new SSTable to backups/"


def test_nodetool_wrapper_and_cli_status_work_like_the_real_command(
    cluster1: LocalCluster,
) -> None:
    spec = cluster1.spec(1)
    wrapper = REPO / "tools" / "localcluster" / "nodetool"
    out = subprocess.run(
        [str(wrapper), "-h", "127.0.0.1", "-p", str(spec.jmx_port), "status"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert f"UN  {spec.address}" in out

    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.localcluster",
            "status",
            "--root",
            str(cluster1.root),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=60,
    ).stdout
    assert f'"pid": {cluster1.pid(1)}' in status
    assert '"running": true' in status


@pytest.mark.three_nodes
def test_rf3_keyspace_is_readable_from_every_node(
    cluster3: LocalCluster, session3: Session, keyspace3: str
) -> None:
    _write_rows(session3, keyspace3, 0, 30)
    for address in cluster3.addresses:
        driver, pinned = cql_session(cluster3.addresses, only=address)
        try:
            query = SimpleStatement(
                f"SELECT count(*) FROM {keyspace3}.kv", consistency_level=ConsistencyLevel.ALL
            )
            assert pinned.execute(query).one()[0] == 30
            local = SimpleStatement(
                f"SELECT v FROM {keyspace3}.kv WHERE k = 7", consistency_level=ConsistencyLevel.ONE
            )
            assert pinned.execute(local).one()[0] == "value-7"
        finally:
            driver.shutdown()


@pytest.mark.three_nodes
def test_killed_node_comes_back_up_with_its_data(
    cluster3: LocalCluster, session3: Session, keyspace3: str
) -> None:
    _write_rows(session3, keyspace3, 0, 40)
    cluster3.nodetool(3, "flush", keyspace3)
    old_pid = cluster3.pid(3)

    cluster3.kill(3)
    assert cluster3.running()["node3"] is None
    cluster3.start(3)

    assert cluster3.pid(3) not in (None, old_pid)
    status = cluster3.nodetool(1, "status")
    assert status.count("UN  ") == 3
    driver, pinned = cql_session(cluster3.addresses, only=cluster3.spec(3).address)
    try:
        query = SimpleStatement(
            f"SELECT count(*) FROM {keyspace3}.kv", consistency_level=ConsistencyLevel.ALL
        )
        assert pinned.execute(query).one()[0] == 40
    finally:
        driver.shutdown()
