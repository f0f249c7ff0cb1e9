"""Finding the cluster a job names and the snapshot an incremental extends."""

from __future__ import annotations

import pytest

from cassy_scheduler.config.model import ClusterRef
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.scheduling.resolve import (
    UnknownClusterError,
    find_base_snapshot,
    resolve_cluster,
)
from tests.unit.fakes import FakeCassy


def test_by_id_finds_that_cluster() -> None:
    cassy = FakeCassy()
    wanted = cassy.add_cluster("prod")
    cassy.add_cluster("prod")
    assert resolve_cluster(cassy, ClusterRef(cluster_id=wanted.cluster_id)).cluster == wanted


def test_an_unknown_id_says_how_to_list_and_register() -> None:
    with pytest.raises(UnknownClusterError) as caught:
        resolve_cluster(FakeCassy(), ClusterRef(cluster_id="prod-x"))
    assert '"prod-x"' in str(caught.value)
    assert "cassy-scheduler clusters" in caught.value.hint


def test_by_name_takes_the_most_recently_registered() -> None:
    cassy = FakeCassy()
    cassy.add_cluster("prod", created_ms=3_000)
    newest = cassy.add_cluster("prod", created_ms=9_000)
    cassy.add_cluster("other", created_ms=10_000)
    cassy.clusters.reverse()  # the server's order must not matter when times are given
    assert resolve_cluster(cassy, ClusterRef(cluster_name="prod")).cluster == newest


def test_an_unknown_name_lists_the_registered_names() -> None:
    cassy = FakeCassy()
    cassy.add_cluster("prod")
    with pytest.raises(UnknownClusterError) as caught:
        resolve_cluster(cassy, ClusterRef(cluster_name="staging"))
    assert "registered: prod" in str(caught.value)


def test_by_host_finds_a_cluster_holding_that_node() -> None:
    cassy = FakeCassy()
    holding = cassy.add_cluster("prod", ("127.0.0.2", "127.0.0.3"))
    resolved = resolve_cluster(cassy, ClusterRef(cassandra_host="127.0.0.3"))
    assert resolved.cluster == holding and not resolved.registered
    assert cassy.count("RegisterCluster") == 0


def test_by_host_registers_when_allowed() -> None:
    cassy = FakeCassy()
    resolved = resolve_cluster(
        cassy, ClusterRef(cassandra_host="127.0.0.9", register_if_missing=True)
    )
    assert resolved.registered and resolved.cluster.target_ips == ("127.0.0.9",)
    assert cassy.count("RegisterCluster") == 1


def test_by_host_without_registering_says_how_to_fix_it() -> None:
    with pytest.raises(UnknownClusterError) as caught:
        resolve_cluster(FakeCassy(), ClusterRef(cassandra_host="127.0.0.9"))
    assert "register_if_missing" in caught.value.hint
    assert "cassy-scheduler register 127.0.0.9" in caught.value.hint


def test_a_hostname_matches_its_address() -> None:
    cassy = FakeCassy()
    cluster = cassy.add_cluster("local", ("127.0.0.1",))
    assert resolve_cluster(cassy, ClusterRef(cassandra_host="localhost")).cluster == cluster


def test_the_base_is_the_newest_snapshot_completed_on_every_node() -> None:
    cassy = FakeCassy()
    cluster = cassy.add_cluster("prod", ("127.0.0.2", "127.0.0.3"))
    good = cassy.add_backup(cluster, BackupType.NODE_SNAPSHOT)
    cassy.add_backup(cluster, BackupType.NODE_INCREMENTAL, snapshot_id=good)
    cassy.add_backup(cluster, BackupType.NODE_SNAPSHOT, {"127.0.0.2": OperationStatus.FAILED})
    cassy.add_backup(cluster, BackupType.NODE_SNAPSHOT, {"127.0.0.3": OperationStatus.STARTED})
    cassy.add_backup(cluster, BackupType.CLUSTER_SNAPSHOT)
    base = find_base_snapshot(cassy, cluster)
    assert base is not None
    assert base.snapshot_id == good
    assert base.backup_type is BackupType.NODE_SNAPSHOT
    assert base.nodes == ("127.0.0.2", "127.0.0.3")


def test_a_snapshot_missing_a_node_of_the_cluster_is_no_base() -> None:
    cassy = FakeCassy()
    small = cassy.add_cluster("prod", ("127.0.0.2",))
    cassy.add_backup(small, BackupType.NODE_SNAPSHOT)
    grown = type(small)(
        small.cluster_id, "prod", ("127.0.0.2", "127.0.0.3"), small.keyspaces, small.data_dir
    )
    assert find_base_snapshot(cassy, grown) is None


def test_cluster_wide_snapshots_count_when_the_server_accepts_them() -> None:
    cassy = FakeCassy()
    cluster = cassy.add_cluster("prod")
    wide = cassy.add_backup(cluster, BackupType.CLUSTER_SNAPSHOT)
    assert find_base_snapshot(cassy, cluster) is None
    base = find_base_snapshot(
        cassy, cluster, {BackupType.NODE_SNAPSHOT, BackupType.CLUSTER_SNAPSHOT}
    )
    assert base is not None and base.snapshot_id == wide


def test_no_snapshot_at_all_is_none() -> None:
    cassy = FakeCassy()
    assert find_base_snapshot(cassy, cassy.add_cluster()) is None
