"""Restores of a real 1-node cluster from its own backups: the rows come back value for value,
the node keeps its identity, and a damaged or refused restore leaves the node as it was."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from cassandra.query import SimpleStatement

from cassy_scheduler.client import CassyClient, CassyError
from cassy_scheduler.protocol.types import BackupType, RestoreType
from cassy_scheduler.storage import open_storage
from cassy_scheduler.verify import ProblemKind, verify_snapshot
from tests.integration.test_restore_helpers import (
    checksum_on,
    fingerprint,
    identity,
    node_dirs,
    restore_keys,
    staging_leftovers,
    table_checksum,
    wait_for_session,
    wait_restore,
    wipe,
    write_rows,
)
from tests.integration.test_scheduler_helpers import cli
from tests.integration.test_server_backup import finish, storage_root
from tests.serverproc import ServerProcess
from tools.localcluster import LocalCluster


@dataclass(frozen=True)
class Backup:
    """A snapshot and one incremental of a keyspace, with the rows' checksums at each."""

    cluster_id: str
    snapshot_id: str
    keyspace: str
    at_snapshot: tuple[int, str]
    at_incremental: tuple[int, str]
    latest: tuple[int, str]


@pytest.fixture(scope="module")
def backup(server1: ServerProcess, cluster1: LocalCluster, session1: Session) -> Iterator[Backup]:
    keyspace = f"restore{os.getpid()}"
    session1.execute(
        f"CREATE KEYSPACE {keyspace} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    with CassyClient(server1.address, timeout_s=120) as client:
        made = make_backup(client, cluster1, session1, keyspace)
    yield made
    wait_for_session(session1)
    session1.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


def make_backup(
    client: CassyClient, cluster: LocalCluster, session: Session, keyspace: str
) -> Backup:
    """Rows, a snapshot, more rows, an incremental, and rows no backup holds."""
    write_rows(session, keyspace, 0, 300)
    registered = client.register_cluster(cluster.addresses[0])
    snapshot = client.take_backup(registered.cluster_id, BackupType.NODE_SNAPSHOT)
    assert finish(client, snapshot).succeeded
    at_snapshot = table_checksum(session, keyspace)
    write_rows(session, keyspace, 300, 300)
    session.execute(
        SimpleStatement(
            f"UPDATE {keyspace}.kv SET v = 'changed' WHERE k = 7",
            consistency_level=ConsistencyLevel.ALL,
        )
    )
    at_incremental = table_checksum(session, keyspace)
    incremental = client.take_backup(
        registered.cluster_id, BackupType.NODE_INCREMENTAL, snapshot.snapshot_id
    )
    assert finish(client, incremental).succeeded
    write_rows(session, keyspace, 600, 50)  # after the last backup: must not come back
    latest = table_checksum(session, keyspace)
    assert at_snapshot[0] == 300 and at_incremental[0] == 600 and latest[0] == 650
    return Backup(
        registered.cluster_id,
        snapshot.snapshot_id,
        keyspace,
        at_snapshot,
        at_incremental,
        latest,
    )


def restore_and_start(
    client: CassyClient,
    cluster: LocalCluster,
    session: Session,
    backup: Backup,
    *,
    snapshot_only: bool,
    while_running: Callable[[], None] = lambda: None,
) -> dict[str, str]:
    """`while_running` is called once the restore started, before it is waited for."""
    before = restore_keys(client, backup.cluster_id, backup.snapshot_id)
    ack = client.restore_backup(
        backup.cluster_id, backup.snapshot_id, RestoreType.NODE, snapshot_only=snapshot_only
    )
    assert ack.status.name == "STARTED"
    assert list(ack.target_ips) == cluster.addresses
    assert ack.snapshot_only is snapshot_only
    while_running()
    statuses = wait_restore(client, backup.cluster_id, backup.snapshot_id, before)
    if set(statuses.values()) == {"COMPLETED"}:
        cluster.start(1)
        wait_for_session(session)
    return statuses


def test_restore_is_refused_while_cassandra_runs(
    client1: CassyClient, cluster1: LocalCluster, backup: Backup
) -> None:
    spec = cluster1.spec(1)
    with pytest.raises(CassyError) as refused:
        client1.restore_backup(backup.cluster_id, backup.snapshot_id, RestoreType.NODE)
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert spec.address in refused.value.details
    assert "running" in refused.value.details
    # A running node changes its own files; what the restore would write is rows and staging.
    assert client1.list_restore_statuses(backup.cluster_id, backup.snapshot_id) == []
    assert staging_leftovers(spec) == []


def test_restore_brings_back_every_row_up_to_the_last_incremental(
    client1: CassyClient,
    cluster1: LocalCluster,
    session1: Session,
    backup: Backup,
) -> None:
    spec = cluster1.spec(1)
    identity_before = identity(cluster1, 1)
    assert checksum_on(spec.address, backup.keyspace) == backup.latest
    cluster1.stop(1)
    try:
        # Stopped but not emptied: refused, naming the node and the directory.
        before = fingerprint(spec)
        with pytest.raises(CassyError) as refused:
            client1.restore_backup(backup.cluster_id, backup.snapshot_id, RestoreType.NODE)
        assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert spec.address in refused.value.details
        assert f"data directory {spec.data_dir} is not empty" in refused.value.details
        assert client1.list_restore_statuses(backup.cluster_id, backup.snapshot_id) == []
        assert fingerprint(spec) == before

        wipe(spec)
        statuses = restore_and_start(client1, cluster1, session1, backup, snapshot_only=False)
    finally:
        if not cluster1.running()[spec.name]:
            cluster1.start(1)
    assert statuses == {spec.address: "COMPLETED"}
    assert staging_leftovers(spec) == []
    assert checksum_on(spec.address, backup.keyspace) == backup.at_incremental
    assert identity(cluster1, 1) == identity_before


def test_snapshot_only_restore_brings_back_exactly_the_snapshot(
    server1: ServerProcess,
    cluster1: LocalCluster,
    session1: Session,
    backup: Backup,
) -> None:
    """Through the CLI this time: `restore --snapshot-only` waits, `restores` lists it."""
    spec = cluster1.spec(1)
    identity_before = identity(cluster1, 1)
    ids = [backup.cluster_id, backup.snapshot_id, "--server", server1.address]
    cluster1.stop(1)
    try:
        wipe(spec)
        restored = _cli("restore", *ids, "--snapshot-only")
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert "COMPLETED" in restored.stdout
        cluster1.start(1)
        wait_for_session(session1)
    finally:
        if not cluster1.running()[spec.name]:
            cluster1.start(1)
    assert checksum_on(spec.address, backup.keyspace) == backup.at_snapshot
    assert identity(cluster1, 1) == identity_before
    listed = _cli("restores", *ids, "--json")
    assert listed.returncode == 0, listed.stderr
    newest = json.loads(listed.stdout)[0]
    assert (newest["target_ip"], newest["status"]) == (spec.address, "COMPLETED")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return cli(*args, env={"COLUMNS": "200"})


def _verify_cli(server: ServerProcess, snapshot_id: str) -> subprocess.CompletedProcess[str]:
    return _cli(
        "verify", snapshot_id, "--server", server.address, "--server-config", str(server.config)
    )


def test_a_corrupt_object_fails_the_restore_naming_it_and_verify_reports_it(
    client1: CassyClient,
    server1: ServerProcess,
    cluster1: LocalCluster,
    session1: Session,
    backup: Backup,
) -> None:
    spec = cluster1.spec(1)
    good = _verify_cli(server1, backup.snapshot_id)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "verified" in good.stdout

    prefix = storage_root(server1) / "node-backup" / backup.cluster_id / backup.snapshot_id
    prefix = prefix / spec.address
    victim = sorted(
        prefix.glob(f"{backup.keyspace}/kv-*/snapshots/{backup.snapshot_id}/*-Data.db")
    )[0]
    relative = victim.relative_to(prefix).as_posix()
    original = victim.read_bytes()
    rows_before = checksum_on(spec.address, backup.keyspace)
    aside = spec.home.parent / f"{spec.name}-aside"
    cluster1.stop(1)
    try:
        aside.mkdir(exist_ok=True)
        for directory in node_dirs(spec):  # the node's files kept aside, its directories gone
            shutil.move(directory, aside / directory.name)
        victim.write_bytes(bytes([original[0] ^ 0xFF]) + original[1:])

        before = restore_keys(client1, backup.cluster_id, backup.snapshot_id)
        client1.restore_backup(backup.cluster_id, backup.snapshot_id, RestoreType.NODE)
        statuses = wait_restore(client1, backup.cluster_id, backup.snapshot_id, before)
        assert statuses == {spec.address: "FAILED"}
        failures = [line for line in server1.output().splitlines() if "restore failed" in line]
        assert relative in failures[-1] and "corrupt" in failures[-1], failures[-1]
        # The reason reaches the client too (the built-in server's listing trailer).
        (row,) = [
            r
            for r in client1.list_restore_statuses(backup.cluster_id, backup.snapshot_id)
            if (r.target_ip, r.created_at_ms) not in before
        ]
        assert row.reason is not None and relative in row.reason and "corrupt" in row.reason
        assert not any(directory.exists() for directory in node_dirs(spec))
        assert staging_leftovers(spec) == []

        report = verify_snapshot(
            open_storage(storage_root(server1).as_uri()), backup.cluster_id, backup.snapshot_id
        )
        (node,) = report.nodes
        assert [(p.kind, p.path) for p in node.problems] == [(ProblemKind.WRONG_CHECKSUM, relative)]
        bad = _verify_cli(server1, backup.snapshot_id)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert relative in bad.stdout and "wrong checksum" in bad.stdout
    finally:
        victim.write_bytes(original)
        for directory in node_dirs(spec):
            if not directory.exists():
                shutil.move(aside / directory.name, directory)
        aside.rmdir()
        cluster1.start(1)
        wait_for_session(session1)
    assert checksum_on(spec.address, backup.keyspace) == rows_before, "node's own files back"


def test_a_backup_without_manifests_as_cassy_writes_it_verifies_by_sstable_digests(
    server1: ServerProcess, cluster1: LocalCluster, backup: Backup, tmp_path: Path
) -> None:
    """Real SSTables in Cassy's layout with no upload manifests (Scalar's Cassy writes none):
    verify proves them by their TOC.txt and Digest.crc32, and catches a corrupt Data.db."""
    node = storage_root(server1) / "node-backup" / backup.cluster_id / backup.snapshot_id
    node = node / cluster1.spec(1).address
    manifests = node / "upload-manifests"
    aside = tmp_path / "manifests"
    shutil.move(manifests, aside)
    victim = sorted(node.glob(f"{backup.keyspace}/kv-*/snapshots/{backup.snapshot_id}/*-Data.db"))[
        0
    ]
    original = victim.read_bytes()
    try:
        good = _verify_cli(server1, backup.snapshot_id)
        assert good.returncode == 0, good.stdout + good.stderr
        assert "SSTable digests, no manifest" in " ".join(good.stdout.split())
        victim.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
        bad = _verify_cli(server1, backup.snapshot_id)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert "wrong checksum" in bad.stdout and "Digest.crc32" in bad.stdout
        assert victim.name in bad.stdout
    finally:
        victim.write_bytes(original)
        shutil.move(aside, manifests)
