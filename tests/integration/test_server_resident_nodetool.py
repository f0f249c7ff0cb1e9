"""A server whose nodetool commands all run in one resident JVM: backups complete without a
single `nodetool` process, a wrong classpath stops the start, and the JVM ends with the server."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cassandra.cluster import Session

from cassy_scheduler.client import CassyClient
from cassy_scheduler.protocol.types import BackupType
from tests.integration.test_server_backup import finish, register, write_rows
from tests.serverproc import ServerProcess, pid_running, server_toml
from tools.localcluster import LocalCluster
from tools.localcluster.java import find_java

pytestmark = pytest.mark.cassandra
_STARTED = re.compile(r"nodetool JVM started pid=(\d+)")


def test_backups_complete_with_no_nodetool_process_and_the_jvm_ends_with_the_server(
    tmp_path: Path, cluster1: LocalCluster, session1: Session, keyspace1: str
) -> None:
    missing = tmp_path / "no-nodetool-here"  # any per-command launch would fail the backup
    config = server_toml(tmp_path, [cluster1], nodetool=missing, resident=True)
    server = ServerProcess(config, tmp_path / "server.log").start()
    try:
        (pid,) = (int(m) for m in _STARTED.findall(server.output()))
        write_rows(session1, keyspace1, 0, 50)
        with CassyClient(server.address, timeout_s=120) as client:
            cluster = register(client, cluster1)
            snap = client.take_backup(cluster.cluster_id, BackupType.NODE_SNAPSHOT)
            assert finish(client, snap).succeeded
            write_rows(session1, keyspace1, 50, 50)
            inc = client.take_backup(
                cluster.cluster_id, BackupType.NODE_INCREMENTAL, snap.snapshot_id
            )
            assert finish(client, inc).succeeded
        assert pid_running(pid)
        assert str(missing) not in server.output()
        assert server.stop() == 0
    finally:
        server.kill()
    deadline = time.monotonic() + 10
    while pid_running(pid):
        assert time.monotonic() < deadline, f"nodetool JVM {pid} outlived the server"
        time.sleep(0.05)


def test_a_killed_server_takes_its_jvm_with_it(tmp_path: Path, cluster1: LocalCluster) -> None:
    server = ServerProcess(server_toml(tmp_path, [cluster1], resident=True), tmp_path / "log")
    server.start()
    (pid,) = (int(m) for m in _STARTED.findall(server.output()))
    server.kill()
    deadline = time.monotonic() + 10
    while pid_running(pid):  # its stdin closes with the server: it exits on its own
        assert time.monotonic() < deadline, f"nodetool JVM {pid} outlived a killed server"
        time.sleep(0.05)


def test_a_wrong_classpath_stops_the_start_with_the_fix(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text(
        f"""[storage]
uri = "{(tmp_path / "storage").as_uri()}"

[metadata]
path = "metadata.db"

[nodes.nodetool_jvm]
classpath = "{tmp_path}/no-jars/*"
java = "{find_java()}"
"""
    )
    done = subprocess.run(
        [sys.executable, "-m", "cassy_scheduler", "serve", "-c", str(config), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 1, done
    assert "error: the nodetool JVM exited" in done.stderr
    assert "[nodes.nodetool_jvm] classpath" in done.stderr
    assert not (tmp_path / "metadata.db").exists(), "nothing opened before the JVM answered"
