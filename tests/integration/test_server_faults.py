"""Faults during a backup leave every node's row with a true, final status."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cassandra.cluster import Session

from cassy_scheduler.client import CassyClient, CassyUnavailable
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from tests.integration.test_server_backup import finish_all, node_prefix, stored_files, write_rows
from tests.serverproc import NODETOOL, ServerProcess, pid_running, server_toml
from tools.localcluster import LocalCluster


def wait_until_seen_down(cluster: LocalCluster, node: int, timeout_s: float = 120) -> None:
    """Gossip needs a few seconds to convict a killed node; wait until node 1 says DN."""
    address = cluster.spec(node).address
    deadline = time.monotonic() + timeout_s
    while f"DN  {address}" not in cluster.nodetool(1, "status"):
        assert time.monotonic() < deadline, f"{address} never seen down"
        time.sleep(1)


@pytest.mark.three_nodes
def test_register_a_three_node_cluster(client3: CassyClient, cluster3: LocalCluster) -> None:
    registered = client3.register_cluster(cluster3.addresses[1])
    assert sorted(registered.target_ips) == sorted(cluster3.addresses)
    assert registered.cluster_name == cluster3.cluster_name


@pytest.mark.three_nodes
def test_a_node_killed_mid_snapshot_fails_alone(
    client3: CassyClient,
    server3: ServerProcess,
    cluster3: LocalCluster,
    session3: Session,
    keyspace3: str,
) -> None:
    write_rows(session3, keyspace3, 0, 100)
    registered = client3.register_cluster(cluster3.addresses[0])
    victim = cluster3.spec(3)
    try:
        ack = client3.take_backup(registered.cluster_id, BackupType.NODE_SNAPSHOT)
        cluster3.kill(3)
        statuses = finish_all(client3, ack)
    finally:
        cluster3.start(3)
    assert statuses == {
        address: "FAILED" if address == victim.address else "COMPLETED"
        for address in cluster3.addresses
    }
    for address in cluster3.addresses[:2]:
        assert stored_files(node_prefix(server3, ack, address))
    assert not (node_prefix(server3, ack, victim.address) / "upload-manifests").exists()
    rows = client3.list_backups(cluster_id=registered.cluster_id, target_ip=victim.address)
    assert rows[0].status is OperationStatus.FAILED
    # verify judges the backup by its node list: the node that never uploaded fails it.
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "cassy_scheduler",
            "verify",
            ack.snapshot_id,
            "--server",
            server3.address,
            "--server-config",
            str(server3.config),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert checked.returncode == 1, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["restorable_nodes"] == sorted(cluster3.addresses[:2])
    (failed,) = [n for n in report["nodes"] if not n["ok"]]
    assert failed["node_ip"] == victim.address
    assert "not completed" in [p["kind"] for p in failed["problems"]]


@pytest.mark.three_nodes
def test_a_backup_with_a_node_down_is_refused_and_recorded_failed(
    client3: CassyClient, cluster3: LocalCluster
) -> None:
    registered = client3.register_cluster(cluster3.addresses[0])
    cluster3.kill(2)
    try:
        wait_until_seen_down(cluster3, 2)
        with pytest.raises(CassyUnavailable, match=cluster3.spec(2).address):
            client3.take_backup(registered.cluster_id, BackupType.NODE_SNAPSHOT)
    finally:
        cluster3.start(2)
    rows = client3.list_backups(cluster_id=registered.cluster_id)
    assert rows and all(r.status is OperationStatus.FAILED for r in rows)


def test_a_server_killed_mid_backup_leaves_no_row_started(
    tmp_path: Path, cluster1: LocalCluster, session1: Session, keyspace1: str
) -> None:
    write_rows(session1, keyspace1, 0, 50)
    server = ServerProcess(server_toml(tmp_path, [cluster1]), tmp_path / "server.log").start()
    try:
        with CassyClient(server.address, timeout_s=120) as client:
            registered = client.register_cluster(cluster1.addresses[0])
            ack = client.take_backup(registered.cluster_id, BackupType.NODE_SNAPSHOT)
        server.kill()
        server.start()
        with CassyClient(server.address, timeout_s=120) as client:
            rows = client.list_backups(snapshot_id=ack.snapshot_id)
        assert [(r.status, r.reason) for r in rows] == [
            (OperationStatus.FAILED, "server restarted during the operation")
        ]
        assert "left unfinished by a previous process marked FAILED rows=1" in server.output()
    finally:
        assert server.stop() == 0


def test_sigterm_lets_running_work_finish_or_records_it_failed(
    tmp_path: Path, cluster1: LocalCluster, session1: Session, keyspace1: str
) -> None:
    write_rows(session1, keyspace1, 0, 50)
    server = ServerProcess(server_toml(tmp_path, [cluster1]), tmp_path / "server.log").start()
    try:
        with CassyClient(server.address, timeout_s=120) as client:
            registered = client.register_cluster(cluster1.addresses[0])
            ack = client.take_backup(registered.cluster_id, BackupType.NODE_SNAPSHOT)
        assert server.stop() == 0
        server.start()
        with CassyClient(server.address, timeout_s=120) as client:
            (row,) = client.list_backups(snapshot_id=ack.snapshot_id)
        assert row.status in (OperationStatus.COMPLETED, OperationStatus.FAILED)
    finally:
        server.stop()


def hanging_nodetool(work: Path, command: str) -> tuple[Path, Path]:
    """A nodetool whose `command` hangs in a child process (not exec'd), whose PID it writes."""
    pid_file = work / "hung.pid"
    script = work / "nodetool"
    script.write_text(
        "#!/bin/sh\n"
        f'for arg in "$@"; do if [ "$arg" = {command} ]; then\n'
        f"  sleep 600 & echo $! > {pid_file}; wait; fi; done\n"
        f'exec {NODETOOL} "$@"\n'
    )
    script.chmod(0o755)
    return script, pid_file


def test_work_hung_past_the_grace_is_stopped_and_the_server_still_exits(
    tmp_path: Path, cluster1: LocalCluster, session1: Session, keyspace1: str
) -> None:
    write_rows(session1, keyspace1, 0, 10)
    nodetool, pid_file = hanging_nodetool(tmp_path, "snapshot")
    config = server_toml(tmp_path, [cluster1], nodetool=nodetool)
    server = ServerProcess(config, tmp_path / "server.log").start()
    try:
        with CassyClient(server.address, timeout_s=120) as client:
            registered = client.register_cluster(cluster1.addresses[0])
            ack = client.take_backup(registered.cluster_id, BackupType.NODE_SNAPSHOT)
        deadline = time.monotonic() + 120
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline, "the snapshot never reached nodetool"
            time.sleep(0.2)
        hung = int(pid_file.read_text())
        assert server.stop() == 0  # on its own: the hung call would outlast the test's wait
        assert "grace period over: stopping running work nodetool_calls=1" in server.output()
        assert not pid_running(hung)
        server.start()
        with CassyClient(server.address, timeout_s=120) as client:
            (row,) = client.list_backups(snapshot_id=ack.snapshot_id)
        assert row.status is OperationStatus.FAILED
        assert row.reason is not None and "the server is stopping" in row.reason, row.reason
        assert not (node_prefix(server, ack, cluster1.addresses[0]) / "upload-manifests").exists()
    finally:
        server.stop()


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (root only); the test is skipped without one."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for a full disk here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_storage_disk_fails_the_node_with_the_cause_first(
    tmp_path: Path, cluster1: LocalCluster, session1: Session, keyspace1: str
) -> None:
    write_rows(session1, keyspace1, 0, 2000)  # well over the storage's 256 KiB
    with small_tmpfs(tmp_path / "storage", "256k") as storage:
        config = server_toml(tmp_path, [cluster1])
        assert storage == tmp_path / "storage"  # server_toml stores under work/storage
        server = ServerProcess(config, tmp_path / "server.log").start()
        try:
            with CassyClient(server.address, timeout_s=120) as client:
                registered = client.register_cluster(cluster1.addresses[0])
                ack = client.take_backup(registered.cluster_id, BackupType.NODE_SNAPSHOT)
                assert finish_all(client, ack) == {cluster1.addresses[0]: "FAILED"}
                (row,) = client.list_backups(snapshot_id=ack.snapshot_id)
            # The reason reaches the client cut to a few hundred characters: the cause first.
            assert row.reason is not None and row.reason.startswith("No space left on device")
            assert not list(storage.rglob("*.partial"))
        finally:
            assert server.stop() == 0


def test_a_restarted_server_frees_what_interrupted_uploads_left(
    tmp_path: Path, cluster1: LocalCluster
) -> None:
    config = server_toml(tmp_path, [cluster1])
    left = tmp_path / "storage" / "node-backup" / "c" / "s" / "127.0.0.1" / "ks" / "t"
    left.mkdir(parents=True)
    partial = left / ".nb-9-big-Data.db.k2j4.partial"
    partial.write_bytes(b"x" * 300_000)
    os.utime(partial, (time.time() - 3600, time.time() - 3600))  # a previous process's
    server = ServerProcess(config, tmp_path / "server.log").start()
    try:
        deadline = time.monotonic() + 60
        while partial.exists():
            assert time.monotonic() < deadline, "the leftover was never removed"
            time.sleep(0.2)
        wait = time.monotonic() + 30
        while "removed what interrupted uploads had left" not in server.output():
            assert time.monotonic() < wait, server.output()
            time.sleep(0.2)
        assert "files=1 bytes=300000" in server.output()
    finally:
        assert server.stop() == 0
