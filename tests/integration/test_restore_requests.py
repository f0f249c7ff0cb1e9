"""Every invalid restore request gets Cassy's status and a message, and writes nothing."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from cassy_scheduler.client import CassyClient, CassyError, Cluster
from cassy_scheduler.protocol.generated import cassy_pb2, cassy_pb2_grpc
from cassy_scheduler.protocol.types import BackupType, RestoreType
from tests.integration.test_server_backup import finish
from tests.serverproc import ServerProcess
from tools.localcluster import LocalCluster

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture(scope="module")
def snapshot(server1: ServerProcess, cluster1: LocalCluster) -> tuple[Cluster, str]:
    with CassyClient(server1.address, timeout_s=120) as client:
        cluster = client.register_cluster(cluster1.addresses[0])
        ack = client.take_backup(cluster.cluster_id, BackupType.NODE_SNAPSHOT)
        assert finish(client, ack).succeeded
        return cluster, ack.snapshot_id


def refused(
    client: CassyClient,
    cluster: Cluster,
    call: Callable[[], object],
    code: grpc.StatusCode,
    words: str,
) -> None:
    def rows() -> list[object]:
        return [
            (r.target_ip, r.snapshot_id, r.created_at_ms)
            for ip in cluster.target_ips
            for r in client.list_restore_statuses(cluster.cluster_id, "", target_ip=ip)
        ]

    before = rows()
    with pytest.raises(CassyError) as err:
        call()
    assert err.value.code == code, err.value
    assert words in err.value.details, err.value.details
    assert rows() == before, "a refused request wrote restore rows"


def test_restore_requests_are_validated(
    client1: CassyClient, snapshot: tuple[Cluster, str]
) -> None:
    cluster, sid = snapshot
    cid = cluster.cluster_id
    node = RestoreType.NODE
    cases: list[tuple[Callable[[], object], grpc.StatusCode, str]] = [
        (lambda: client1.restore_backup("", sid, node), INVALID, "cluster_id"),
        (lambda: client1.restore_backup(cid, "", node), INVALID, "snapshot_id"),
        (lambda: client1.restore_backup(cid, "../etc", node), INVALID, "snapshot_id"),
        (lambda: client1.restore_backup("nope-1", sid, node), INVALID, "no cluster 'nope-1'"),
        (
            lambda: client1.restore_backup(cid, sid, node, ["127.0.0.250"]),
            INVALID,
            "127.0.0.250 are not nodes",
        ),
        (lambda: client1.restore_backup(cid, "no-such-snapshot", node), PRECONDITION, "no backup"),
        (
            lambda: client1.restore_backup(cid, sid, RestoreType.CLUSTER),
            INVALID,
            "not a cluster-wide backup",
        ),
    ]
    for call, code, words in cases:
        refused(client1, cluster, call, code, words)


def test_an_unknown_restore_type_is_invalid(
    server1: ServerProcess, client1: CassyClient, snapshot: tuple[Cluster, str]
) -> None:
    cluster, sid = snapshot
    stub = cassy_pb2_grpc.CassyStub(grpc.insecure_channel(server1.address))
    request = cassy_pb2.RestoreRequest(cluster_id=cluster.cluster_id, snapshot_id=sid)
    for restore_type in (0, 3):
        request.restore_type = restore_type
        with pytest.raises(grpc.RpcError) as err:
            stub.RestoreBackup(request, timeout=60)
        assert err.value.code() == INVALID
        assert "restore_type" in (err.value.details() or "")


def test_listing_restores_needs_a_filter(client1: CassyClient) -> None:
    with pytest.raises(CassyError) as err:
        client1.list_restore_statuses("", "")
    assert err.value.code == INVALID
