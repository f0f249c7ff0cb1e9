"""A node killed while the daemon's backup runs: the run fails and names that node."""

from __future__ import annotations

from pathlib import Path

import pytest
from cassandra.cluster import Session

from cassy_scheduler.client import CassyClient
from cassy_scheduler.protocol.types import OperationStatus
from cassy_scheduler.records import Outcome
from tests.integration.test_scheduler_helpers import (
    DaemonProcess,
    fire_soon,
    runs,
    wait_for,
    write_config,
)
from tests.integration.test_server_backup import write_rows
from tests.serverproc import ServerProcess
from tools.localcluster import LocalCluster


@pytest.mark.three_nodes
def test_a_node_killed_during_the_backup_fails_the_run_naming_it(
    tmp_path: Path,
    server3: ServerProcess,
    cluster3: LocalCluster,
    session3: Session,
    keyspace3: str,
) -> None:
    write_rows(session3, keyspace3, 0, 100)
    with CassyClient(server3.address) as client:  # a registration with today's keyspaces
        client.register_cluster(cluster3.addresses[0])
    config = write_config(
        tmp_path,
        server3.address,
        f"""
        [jobs.snap]
        type = "snapshot"
        cassandra_host = "{cluster3.addresses[0]}"
        register_if_missing = true
        schedule = "0 0 1 1 *"
        """,
    )
    victim = cluster3.spec(3).address
    daemon = DaemonProcess(config).start()
    try:
        fire_soon(config)
        wait_for("the backup to start", lambda: "backup accepted" in daemon.output(), 180)
        cluster3.kill(3)
        wait_for("the run to end", lambda: any(r.outcome.is_final for r in runs(config)), 600)
    finally:
        daemon.stop()
        if cluster3.running()[cluster3.spec(3).name] is None:
            cluster3.start(3)
    (run,) = runs(config)
    assert run.outcome is Outcome.FAILED, daemon.output()
    assert run.error is not None and victim in run.error
    # The built-in server says why; the run keeps it for the notice and `history`.
    assert f"{victim}: " in run.error and "see the server's log" not in run.error, run.error
    (victim_row,) = [n for n in run.nodes if n.target_ip == victim]
    assert victim_row.reason and victim_row.reason in run.error
    statuses = {n.target_ip: n.status for n in run.nodes}
    assert statuses == {
        address: OperationStatus.FAILED if address == victim else OperationStatus.COMPLETED
        for address in cluster3.addresses
    }
    assert "failure=nodes-failed" in daemon.output()
