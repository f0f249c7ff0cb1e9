"""The daemon as a real process against the built-in server and a real 1-node Cassandra: a
snapshot job then an incremental job fire on seconds schedules set through `schedule` while
the daemon runs; the incremental extends that very snapshot; history holds both."""

from __future__ import annotations

import json
from pathlib import Path

from cassandra.cluster import Session

from cassy_scheduler.client import CassyClient
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.records import Outcome
from tests.integration.test_scheduler_helpers import (
    DaemonProcess,
    cli,
    instant,
    runs,
    wait_for,
    write_config,
)
from tests.integration.test_server_backup import write_rows
from tests.serverproc import ServerProcess
from tools.localcluster import LocalCluster

NEVER = "0 0 1 1 *"  # until a test reschedules the job


def jobs_on(host: str) -> str:
    return f"""
        [jobs.snap]
        type = "snapshot"
        cassandra_host = "{host}"
        register_if_missing = true
        schedule = "{NEVER}"

        [jobs.incr]
        type = "incremental"
        cassandra_host = "{host}"
        register_if_missing = true
        schedule = "{NEVER}"
        """


def finished(config: Path, job: str) -> bool:
    return any(r.job_name == job and r.outcome.is_final for r in runs(config))


def test_a_snapshot_job_then_an_incremental_job_fire_and_are_recorded(
    tmp_path: Path,
    server1: ServerProcess,
    cluster1: LocalCluster,
    session1: Session,
    keyspace1: str,
) -> None:
    host = cluster1.addresses[0]
    write_rows(session1, keyspace1, 0, 200)
    # A registration records the keyspaces of its moment: one from an earlier test could
    # name keyspaces dropped since. The job finds the newest registration holding its host.
    with CassyClient(server1.address) as client:
        client.register_cluster(host)
    config = write_config(tmp_path, server1.address, jobs_on(host))
    daemon = DaemonProcess(config).start()
    try:
        snap_at, snap_cron = instant(10)
        done = cli("schedule", "snap", snap_cron, "--config", str(config))
        assert done.returncode == 0, done.stderr
        wait_for("the snapshot run", lambda: finished(config, "snap"))
        # New data after the snapshot, flushed, so the incremental has files of its own.
        write_rows(session1, keyspace1, 1000, 200)
        cluster1.nodetool(1, "flush", keyspace1)
        incr_at, incr_cron = instant(10)
        done = cli("schedule", "incr", incr_cron, "--config", str(config))
        assert done.returncode == 0, done.stderr
        wait_for("the incremental run", lambda: finished(config, "incr"))
    finally:
        assert daemon.stop() == 0, daemon.output()
    log = daemon.output()
    snap, incr = runs(config)
    assert (snap.job_name, snap.outcome, snap.error) == ("snap", Outcome.SUCCEEDED, None), log
    assert (incr.job_name, incr.outcome, incr.error) == ("incr", Outcome.SUCCEEDED, None), log
    assert snap.scheduled_for == snap_at and incr.scheduled_for == incr_at
    assert snap.started_at is not None and snap.started_at >= snap_at
    # The incremental extends the snapshot the daemon just took, on the same cluster.
    assert snap.snapshot_id and incr.base_snapshot_id == snap.snapshot_id == incr.snapshot_id
    assert incr.cluster_id == snap.cluster_id and snap.cluster_name == cluster1.cluster_name
    for run in (snap, incr):
        assert [(n.target_ip, n.status) for n in run.nodes] == [(host, OperationStatus.COMPLETED)]
    with CassyClient(server1.address) as client:
        rows = client.list_backups(snapshot_id=snap.snapshot_id)
    assert {(r.backup_type, r.status) for r in rows} == {
        (BackupType.NODE_SNAPSHOT, OperationStatus.COMPLETED),
        (BackupType.NODE_INCREMENTAL, OperationStatus.COMPLETED),
    }
    stored = server1.config.parent / "storage" / "node-backup" / str(snap.cluster_id)
    incremental_files = [
        p for p in (stored / snap.snapshot_id / host).rglob("*") if "backups" in p.parts
    ]
    assert incremental_files, "the incremental uploaded no backups/ files"
    # Every decision is in the log: the reload that set each schedule, and both runs.
    assert log.count("config reloaded") >= 2
    assert "cluster resolved job=snap" in log
    assert "base snapshot found job=incr" in log

    history = cli("history", "--config", str(config), "--json")
    assert history.returncode == 0, history.stderr
    recorded = json.loads(history.stdout)
    assert [r["job"] for r in recorded] == ["incr", "snap"]
    assert recorded[0]["nodes"] == [{"node": host, "status": "COMPLETED", "reason": None}]

    check = cli("check", "--config", str(config), "--json")
    report = json.loads(check.stdout)
    assert check.returncode == 0, report
    assert any(
        f"incrementals extend snapshot {snap.snapshot_id}" in f["message"]
        for f in report["findings"]
    )
    jobs = json.loads(cli("jobs", "--config", str(config), "--json").stdout)
    assert {j["name"]: j["last_run"]["outcome"] for j in jobs} == {
        "snap": "succeeded",
        "incr": "succeeded",
    }
