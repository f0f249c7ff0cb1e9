"""The built-in server takes real snapshot and incremental backups of a real 1-node cluster."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from cassandra.cluster import Session

from cassy_scheduler.client import BackupAck, CassyClient, Cluster
from cassy_scheduler.node.datadir import backup_files, snapshot_files, snapshot_tags
from cassy_scheduler.outcome import BackupOutcome, wait_for_backup
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.storage.layout import MANIFEST_DIRECTORY
from tests.serverproc import ServerProcess
from tools.localcluster import LocalCluster


def write_rows(session: Session, keyspace: str, start: int, count: int) -> None:
    session.execute(f"CREATE TABLE IF NOT EXISTS {keyspace}.kv (k int PRIMARY KEY, v text)")
    insert = session.prepare(f"INSERT INTO {keyspace}.kv (k, v) VALUES (?, ?)")
    for k in range(start, start + count):
        session.execute(insert, (k, f"value-{k}" * 20))


def finish(client: CassyClient, ack: BackupAck) -> BackupOutcome:
    outcome = wait_for_backup(client, ack, timeout_s=300, poll_interval_s=0.5)
    assert not outcome.timed_out, outcome
    return outcome


def finish_all(client: CassyClient, ack: BackupAck, timeout_s: float = 300) -> dict[str, str]:
    """Wait until every node's row is final (not only the first failure); status by node."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = [
            r
            for r in client.list_backups(snapshot_id=ack.snapshot_id)
            if r.created_at_ms == ack.created_at_ms
        ]
        if rows and all(r.status.is_final for r in rows):
            return {r.target_ip: r.status.name for r in rows}
        assert time.monotonic() < deadline, rows
        time.sleep(0.5)


def storage_root(server: ServerProcess) -> Path:
    return server.config.parent / "storage"


def node_prefix(server: ServerProcess, ack: BackupAck, node: str) -> Path:
    return storage_root(server) / "node-backup" / ack.cluster_id / ack.snapshot_id / node


def stored_files(prefix: Path) -> dict[str, bytes]:
    """Every data file under a node prefix (manifests aside), by its path below the prefix."""
    return {
        p.relative_to(prefix).as_posix(): p.read_bytes()
        for p in prefix.rglob("*")
        if p.is_file() and not p.relative_to(prefix).as_posix().startswith(MANIFEST_DIRECTORY)
    }


def manifests(prefix: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((prefix / MANIFEST_DIRECTORY).iterdir())]


def _table_and_name(relative: str) -> tuple[str, str]:
    """('ks/table-id', file name) of a data-dir path in snapshots/<tag>/ or backups/."""
    parts = relative.split("/")
    return "/".join(parts[:2]), parts[-1]


def register(client: CassyClient, cluster: LocalCluster) -> Cluster:
    return client.register_cluster(cluster.addresses[0])


def test_register_and_list_a_one_node_cluster(
    client1: CassyClient, cluster1: LocalCluster, keyspace1: str
) -> None:
    registered = register(client1, cluster1)
    assert registered.cluster_id.startswith(f"{cluster1.cluster_name}-")
    assert registered.cluster_name == cluster1.cluster_name
    assert list(registered.target_ips) == cluster1.addresses
    assert {"system", "system_schema", keyspace1} <= set(registered.keyspaces)
    assert "system_views" not in registered.keyspaces
    assert Path(registered.data_dir) == cluster1.spec(1).data_dir

    (listed,) = client1.list_clusters(registered.cluster_id)
    assert listed.cluster_id == registered.cluster_id
    assert listed.created_at is not None
    assert client1.list_clusters()[0].cluster_id == registered.cluster_id


def test_snapshot_stores_exactly_the_snapshot_files_with_a_manifest(
    client1: CassyClient,
    server1: ServerProcess,
    cluster1: LocalCluster,
    session1: Session,
    keyspace1: str,
) -> None:
    write_rows(session1, keyspace1, 0, 200)
    cluster = register(client1, cluster1)
    ack = client1.take_backup(cluster.cluster_id, BackupType.NODE_SNAPSHOT)
    assert ack.status is OperationStatus.STARTED
    assert ack.snapshot_id
    outcome = finish(client1, ack)
    assert outcome.succeeded, outcome

    spec = cluster1.spec(1)
    on_node = snapshot_files(spec.data_dir, ack.snapshot_id, cluster.keyspaces)
    assert any(f.relative.startswith(f"{keyspace1}/kv-") for f in on_node)
    prefix = node_prefix(server1, ack, spec.address)
    stored = stored_files(prefix)
    assert set(stored) == {f.relative for f in on_node}
    for file in on_node:
        assert stored[file.relative] == file.path.read_bytes(), file.relative

    (manifest,) = manifests(prefix)
    assert manifest["snapshot_id"] == ack.snapshot_id
    listed = {entry["path"]: entry for entry in manifest["files"]}  # type: ignore[attr-defined]
    assert set(listed) == set(stored)
    for path, entry in listed.items():
        assert entry["size"] == len(stored[path])
        assert entry["sha256"] == hashlib.sha256(stored[path]).hexdigest()


def test_incremental_sends_only_new_sstables_and_nothing_when_nothing_is_new(
    client1: CassyClient,
    server1: ServerProcess,
    cluster1: LocalCluster,
    session1: Session,
    keyspace1: str,
) -> None:
    write_rows(session1, keyspace1, 0, 100)
    cluster = register(client1, cluster1)
    snap = client1.take_backup(cluster.cluster_id, BackupType.NODE_SNAPSHOT)
    assert finish(client1, snap).succeeded
    spec = cluster1.spec(1)
    prefix = node_prefix(server1, snap, spec.address)
    after_snapshot = stored_files(prefix)
    in_snapshot = {_table_and_name(p) for p in after_snapshot}

    write_rows(session1, keyspace1, 100, 100)
    inc = client1.take_backup(cluster.cluster_id, BackupType.NODE_INCREMENTAL, snap.snapshot_id)
    assert inc.snapshot_id == snap.snapshot_id
    assert finish(client1, inc).succeeded

    new = {k: v for k, v in stored_files(prefix).items() if k not in after_snapshot}
    extended = [ks for ks in cluster.keyspaces if ks != "system"]
    on_node = {f.relative: f for f in backup_files(spec.data_dir, extended)}
    assert new, "the incremental stored the new SSTables"
    assert set(new) == set(on_node)
    assert all("/backups/" in key for key in new)
    assert not {_table_and_name(k) for k in new} & in_snapshot, "nothing the snapshot holds"
    for key, data in new.items():
        assert data == on_node[key].path.read_bytes()

    before = {p: p.stat().st_mtime_ns for p in prefix.rglob("*") if p.is_file()}
    again = client1.take_backup(cluster.cluster_id, BackupType.NODE_INCREMENTAL, snap.snapshot_id)
    assert finish(client1, again).succeeded
    after = {p: p.stat().st_mtime_ns for p in prefix.rglob("*") if p.is_file()}
    added = set(after) - set(before)
    assert all(MANIFEST_DIRECTORY in str(p) for p in added), added
    assert {p: after[p] for p in before} == before, "no stored file was written again"
    assert len(manifests(prefix)) == 3
    last_upload = [line for line in server1.output().splitlines() if "upload complete" in line][-1]
    assert " bytes_sent=0 " in last_upload


def test_a_keyspace_dropped_after_registration_is_skipped_not_fatal(
    client1: CassyClient, cluster1: LocalCluster, session1: Session, keyspace1: str
) -> None:
    write_rows(session1, keyspace1, 0, 10)
    session1.execute(
        "CREATE KEYSPACE doomed WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    write_rows(session1, "doomed", 0, 10)
    cluster = register(client1, cluster1)
    assert "doomed" in cluster.keyspaces
    session1.execute("DROP KEYSPACE doomed")

    ack = client1.take_backup(cluster.cluster_id, BackupType.NODE_SNAPSHOT)
    assert finish(client1, ack).succeeded
    taken = snapshot_files(cluster1.spec(1).data_dir, ack.snapshot_id, cluster.keyspaces)
    assert any(f.relative.startswith(f"{keyspace1}/") for f in taken)
    assert not any(f.relative.startswith("doomed/") for f in taken)


def test_a_node_snapshot_clears_only_the_snapshots_this_server_took(
    client1: CassyClient, cluster1: LocalCluster, session1: Session, keyspace1: str
) -> None:
    """An operator's own snapshot (taken before an upgrade, say) survives our backups; our
    earlier snapshot is cleared once a newer one is taken."""
    write_rows(session1, keyspace1, 0, 20)
    spec = cluster1.spec(1)
    cluster1.nodetool(1, "snapshot", "-t", "pre-upgrade", "--", keyspace1)
    try:
        registered = register(client1, cluster1)
        first = client1.take_backup(registered.cluster_id, BackupType.NODE_SNAPSHOT)
        assert finish(client1, first).succeeded
        second = client1.take_backup(registered.cluster_id, BackupType.NODE_SNAPSHOT)
        assert finish(client1, second).succeeded
        tags = snapshot_tags(spec.data_dir, [keyspace1])
        assert "pre-upgrade" in tags and second.snapshot_id in tags
        assert first.snapshot_id not in tags
    finally:
        cluster1.nodetool(1, "clearsnapshot", "-t", "pre-upgrade")
