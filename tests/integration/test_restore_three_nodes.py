"""A whole 3-node cluster restored from its node backups: every node gets its own files back,
serves every row as it was at the last incremental, and keeps its host id and tokens."""

from __future__ import annotations

import os

import pytest
from cassandra.cluster import Session

from cassy_scheduler.client import CassyClient
from cassy_scheduler.protocol.types import RestoreType
from cassy_scheduler.storage import open_storage
from cassy_scheduler.verify import verify_snapshot
from tests.integration.test_restore_helpers import (
    checksum_on,
    identity,
    restore_keys,
    staging_leftovers,
    wait_for_session,
    wait_restore,
    wipe,
)
from tests.integration.test_restore_node import make_backup
from tests.integration.test_server_backup import storage_root
from tests.serverproc import ServerProcess
from tools.localcluster import LocalCluster


@pytest.mark.three_nodes
def test_restore_every_node_of_a_three_node_cluster(
    client3: CassyClient, server3: ServerProcess, cluster3: LocalCluster, session3: Session
) -> None:
    keyspace = f"restore{os.getpid()}"
    session3.execute(
        f"CREATE KEYSPACE {keyspace} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 3}"
    )
    backup = make_backup(client3, cluster3, session3, keyspace)
    report = verify_snapshot(
        open_storage(storage_root(server3).as_uri()), backup.cluster_id, backup.snapshot_id
    )
    assert report.ok and len(report.nodes) == 3, report

    numbers = [spec.number for spec in cluster3.specs]
    identities = {n: identity(cluster3, n) for n in numbers}
    for n in numbers:
        cluster3.stop(n)
    try:
        for spec in cluster3.specs:
            wipe(spec)
        before = restore_keys(client3, backup.cluster_id, backup.snapshot_id)
        ack = client3.restore_backup(backup.cluster_id, backup.snapshot_id, RestoreType.NODE)
        assert sorted(ack.target_ips) == sorted(cluster3.addresses)
        statuses = wait_restore(client3, backup.cluster_id, backup.snapshot_id, before)
    finally:
        cluster3.start_all(timeout=420)
        wait_for_session(session3)
    assert statuses == dict.fromkeys(cluster3.addresses, "COMPLETED")
    for spec in cluster3.specs:
        assert staging_leftovers(spec) == []
        assert checksum_on(spec.address, keyspace) == backup.at_incremental, spec.address
    assert {n: identity(cluster3, n) for n in numbers} == identities
    session3.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
