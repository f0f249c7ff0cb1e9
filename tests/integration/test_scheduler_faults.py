"""Faults around the daemon's runs: the server down at fire time, and SIGTERM during a run
(interrupted after the grace, or finished within it)."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from cassy_scheduler.client import CassyClient
from cassy_scheduler.protocol.types import OperationStatus
from cassy_scheduler.records import Outcome
from tests.integration.test_scheduler_helpers import (
    DaemonProcess,
    fire_soon,
    runs,
    settle,
    wait_for,
    write_config,
)
from tests.serverproc import ServerProcess
from tools.localcluster import LocalCluster


def job(host: str, schedule: str = "0 0 1 1 *") -> str:
    return f"""
        [jobs.snap]
        type = "snapshot"
        cassandra_host = "{host}"
        register_if_missing = true
        schedule = "{schedule}"
        """


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_server_down_at_fire_time_is_retried_then_recorded_failed(tmp_path: Path) -> None:
    address = f"127.0.0.1:{unused_port()}"
    config = write_config(tmp_path, address, job("127.0.0.1"))
    daemon = DaemonProcess(config).start()
    try:
        fire_soon(config)
        wait_for("the failed run", lambda: any(r.outcome.is_final for r in runs(config)), 120)
    finally:
        assert daemon.stop() == 0
    log = daemon.output()
    (run,) = runs(config)
    assert run.outcome is Outcome.FAILED
    assert run.error is not None and "after 3 attempt(s)" in run.error
    assert address in run.error and "UNAVAILABLE" in run.error
    assert log.count("transient error; retrying job=snap") == 2
    assert "failure=unreachable" in log


def test_sigterm_during_a_run_records_it_interrupted_after_the_grace(
    tmp_path: Path, server1: ServerProcess, client1: CassyClient, cluster1: LocalCluster
) -> None:
    client1.register_cluster(cluster1.addresses[0])  # with the keyspaces there are now
    config = write_config(
        tmp_path, server1.address, job(cluster1.addresses[0]), scheduler='shutdown_grace = "0"'
    )
    daemon = DaemonProcess(config).start()
    try:
        fire_soon(config)
        wait_for("the backup to start", lambda: "backup accepted" in daemon.output(), 120)
        daemon.signal(signal.SIGTERM)
        assert daemon.stop() == 0
    finally:
        daemon.stop()
    (run,) = runs(config)
    assert run.outcome is Outcome.INTERRUPTED, daemon.output()
    assert run.snapshot_id is not None and run.error is not None
    assert run.snapshot_id in run.error and "may still finish" in run.error
    assert "interrupting running runs" in daemon.output()
    settle(client1, run.snapshot_id)


def test_sigterm_lets_a_run_finish_within_the_grace(
    tmp_path: Path, server1: ServerProcess, client1: CassyClient, cluster1: LocalCluster
) -> None:
    client1.register_cluster(cluster1.addresses[0])  # with the keyspaces there are now
    config = write_config(
        tmp_path, server1.address, job(cluster1.addresses[0]), scheduler='shutdown_grace = "5m"'
    )
    daemon = DaemonProcess(config).start()
    try:
        fire_soon(config)
        wait_for("the backup to start", lambda: "backup accepted" in daemon.output(), 120)
        daemon.signal(signal.SIGTERM)
        assert daemon.stop(timeout_s=300) == 0
    finally:
        daemon.stop()
    (run,) = runs(config)
    assert run.outcome is Outcome.SUCCEEDED, daemon.output()
    assert [n.status for n in run.nodes] == [OperationStatus.COMPLETED]
    assert "scheduler stopping running=1" in daemon.output()


def test_a_daemon_killed_mid_run_finds_out_at_start_what_the_server_did(
    tmp_path: Path, server1: ServerProcess, client1: CassyClient, cluster1: LocalCluster
) -> None:
    """SIGKILL while it waits: the run is interrupted, with its snapshot id already recorded;
    the next daemon looks the backup up and records that the server completed it."""
    client1.register_cluster(cluster1.addresses[0])
    config = write_config(tmp_path, server1.address, job(cluster1.addresses[0]))
    daemon = DaemonProcess(config).start()
    try:
        fire_soon(config)
        wait_for("the backup to start", lambda: "backup accepted" in daemon.output(), 120)
        daemon.signal(signal.SIGKILL)
        daemon.stop()
        (killed,) = runs(config)
        assert killed.outcome is Outcome.RUNNING and killed.snapshot_id is not None
        settle(client1, killed.snapshot_id)
        daemon = DaemonProcess(config).start()
        wait_for(
            "the interrupted run to be settled",
            lambda: "interrupted run settled" in daemon.output(),
            120,
        )
    finally:
        assert daemon.stop() == 0
    (run,) = runs(config)
    assert run.outcome is Outcome.INTERRUPTED and run.snapshot_id == killed.snapshot_id
    assert run.server_outcome == "COMPLETED on every node", daemon.output()
    assert [n.status for n in run.nodes] == [OperationStatus.COMPLETED]
