"""One-shot backups for system cron, through the contrib shims with the seed scripts' names,
against the built-in server and a real 1-node Cassandra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cassy_scheduler.client import CassyClient, Cluster
from cassy_scheduler.protocol.types import OperationStatus
from cassy_scheduler.records import Outcome
from tests.integration.test_scheduler_helpers import SHIMS, cli, runs, settle, write_config
from tests.serverproc import NODETOOL, ServerProcess, server_toml
from tests.tcpproxy import TcpProxy
from tools.localcluster import LocalCluster

SNAPSHOT_JOB = """
[jobs.nightly]
type = "snapshot"
cluster_name = "one"
schedule = "30 0 * * *"
"""


def shim(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a shim as cron would, the program named through CASSY_SCHEDULER."""
    return subprocess.run(
        [str(SHIMS / name), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CASSY_SCHEDULER": f"{sys.executable} -m cassy_scheduler"},
        check=False,
    )


def registered(client: CassyClient, cluster: LocalCluster) -> Cluster:
    return client.register_cluster(cluster.addresses[0])


def test_the_seed_scripts_crontab_lines_work_through_the_shims(
    tmp_path: Path, server1: ServerProcess, client1: CassyClient, cluster1: LocalCluster
) -> None:
    cluster = registered(client1, cluster1)
    config = write_config(tmp_path, server1.address, SNAPSHOT_JOB)
    snapshot = shim("take_snapshot.sh", str(config), cluster.cluster_id)
    assert snapshot.returncode == 0, snapshot.stdout + snapshot.stderr
    assert "succeeded" in snapshot.stdout
    incremental = shim("take_incremental_backup.sh", str(config), cluster.cluster_id)
    assert incremental.returncode == 0, incremental.stdout + incremental.stderr
    first, second = runs(config)
    assert (first.job_type, first.outcome) == ("snapshot", Outcome.SUCCEEDED)
    assert (second.job_type, second.outcome) == ("incremental", Outcome.SUCCEEDED)
    assert second.base_snapshot_id == first.snapshot_id
    assert first.cluster_id == second.cluster_id == cluster.cluster_id
    assert [n.status for n in second.nodes] == [OperationStatus.COMPLETED]
    # The snapshot job names the cluster by its name: cron's run is that job's run.
    assert first.job_name == "nightly"
    assert second.job_name == f"incremental@{cluster.cluster_id}"  # no incremental job
    listed = cli("jobs", "--config", str(config), "--json")
    (nightly,) = json.loads(listed.stdout)
    assert nightly["last_run"]["run_id"] == first.run_id


def test_a_shim_with_a_bad_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    config = write_config(tmp_path, "127.0.0.1:1", SNAPSHOT_JOB.replace('"snapshot"', '"snap"'))
    done = shim("take_snapshot.sh", str(config), "one-x")
    assert done.returncode == 2
    assert "jobs.nightly.type" in done.stderr


def test_a_backup_that_outlasts_wait_timeout_exits_3_and_is_recorded(
    tmp_path: Path, cluster1: LocalCluster
) -> None:
    # A node snapshot that takes 4 s more than nodetool needs, whatever the machine's speed.
    slow = tmp_path / "slow-nodetool"
    slow.write_text(
        '#!/bin/sh\nfor word in "$@"; do [ "$word" = snapshot ] && sleep 4; done\n'
        f'exec {NODETOOL} "$@"\n'
    )
    slow.chmod(0o755)
    (tmp_path / "server").mkdir()
    server_config = server_toml(tmp_path / "server", [cluster1], nodetool=slow)
    server = ServerProcess(server_config, tmp_path / "server" / "server.log").start()
    try:
        with CassyClient(server.address, timeout_s=120) as client:
            cluster = registered(client, cluster1)
            config = write_config(
                tmp_path,
                server.address,
                SNAPSHOT_JOB + 'wait_timeout = "1s"\npoll_interval = "1s"\n',
            )
            done = cli("backup", "snapshot", cluster.cluster_id, "--config", str(config), "--json")
            assert done.returncode == 3, done.stdout + done.stderr
            result = json.loads(done.stdout)
            assert (result["outcome"], result["failure"]) == ("timed_out", "timed-out")
            assert "wait_timeout" in result["error"]
            assert result["nodes"][0]["reason"] == "still unfinished"
            (run,) = runs(config)
            assert run.outcome is Outcome.TIMED_OUT and run.snapshot_id == result["snapshot_id"]
            # The server finishes it anyway; leave the node settled for the next test.
            settle(client, result["snapshot_id"])
    finally:
        server.stop()


def test_a_backup_whose_answer_is_lost_is_waited_for_not_started_twice(
    tmp_path: Path, cluster1: LocalCluster
) -> None:
    """TakeBackup outlives the call deadline (the server's liveness check waits on a slow CQL
    connection), so the answer is lost although the server accepted the request: the run
    finds and follows it."""
    spec = cluster1.spec(1)
    proxy = TcpProxy((spec.address, spec.cql_port), host=spec.address)
    (tmp_path / "server").mkdir()
    server_config = server_toml(tmp_path / "server", [cluster1], extra=f"cql_port = {proxy.port}\n")
    server = ServerProcess(server_config, tmp_path / "server" / "server.log").start()
    try:
        with CassyClient(server.address, timeout_s=120) as client:
            cluster = registered(client, cluster1)
            proxy.delay_s = 4  # every CQL connection from now on: the liveness check's too
            config = write_config(tmp_path, server.address, SNAPSHOT_JOB)
            config.write_text(
                config.read_text().replace('call_deadline = "60s"', 'call_deadline = "1s"')
            )
            done = cli("backup", "snapshot", cluster.cluster_id, "--config", str(config), "--json")
            assert done.returncode == 0, done.stdout + done.stderr
            assert "backup accepted although its answer was lost" in done.stderr
            result = json.loads(done.stdout)
            rows = client.list_backups(cluster_id=cluster.cluster_id)
        assert {(r.snapshot_id, r.status) for r in rows} == {
            (result["snapshot_id"], OperationStatus.COMPLETED)
        }
    finally:
        server.stop()
        proxy.close()


def test_a_refused_backup_names_the_snapshot_the_server_recorded(
    tmp_path: Path, cluster1: LocalCluster
) -> None:
    """The server records FAILED rows when a node does not answer its liveness check, and its
    refusal carries no snapshot id: the run still names that snapshot and each node's cause."""
    spec = cluster1.spec(1)
    proxy = TcpProxy((spec.address, spec.cql_port), host=spec.address)
    config_path = server_toml(tmp_path, [cluster1], extra=f"cql_port = {proxy.port}\n")
    server = ServerProcess(config_path, tmp_path / "server.log").start()
    try:
        with CassyClient(server.address, timeout_s=120) as client:
            cluster = registered(client, cluster1)
        proxy.refusing = True  # registered; from now on the node's CQL port hangs up
        config = write_config(tmp_path, server.address, SNAPSHOT_JOB + "retries = 0\n")
        done = cli("backup", "snapshot", cluster.cluster_id, "--config", str(config), "--json")
        assert done.returncode == 5, done.stdout + done.stderr
        result = json.loads(done.stdout)
        with CassyClient(server.address, timeout_s=120) as client:
            (row,) = client.list_backups(cluster_id=cluster.cluster_id)
        assert result["snapshot_id"] == row.snapshot_id
        (node,) = result["nodes"]
        assert node["status"] == "FAILED"
        assert "cannot reach Cassandra over CQL" in node["reason"]
        assert f"recorded it as snapshot {row.snapshot_id}" in result["error"]
        (run,) = runs(config)
        assert run.snapshot_id == row.snapshot_id
    finally:
        assert server.stop() == 0
        proxy.close()
