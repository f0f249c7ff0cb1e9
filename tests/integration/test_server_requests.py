"""Every invalid request gets its documented gRPC status and a message, and writes nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from cassy_scheduler.client import CassyClient, CassyError, CassyUnavailable, Cluster
from cassy_scheduler.protocol.generated import cassy_pb2, cassy_pb2_grpc
from cassy_scheduler.protocol.types import BackupType
from tests.cassyfront import CassyFront
from tests.serverproc import ServerProcess
from tools.localcluster import LocalCluster

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def registered(server1: ServerProcess, cluster1: LocalCluster) -> Cluster:
    with CassyClient(server1.address, timeout_s=120) as client:
        return client.register_cluster(cluster1.addresses[0])


@pytest.fixture
def stub(server1: ServerProcess) -> cassy_pb2_grpc.CassyStub:
    channel = grpc.insecure_channel(server1.address)
    return cassy_pb2_grpc.CassyStub(channel)


def _snapshot_of_state(server: ServerProcess, client: CassyClient) -> tuple[object, ...]:
    storage = server.config.parent / "storage"
    files = sorted(str(p) for p in storage.rglob("*")) if storage.exists() else []
    clusters = [c.cluster_id for c in client.list_clusters()]
    rows = [
        (r.cluster_id, r.target_ip, r.snapshot_id, r.status)
        for cid in clusters
        for r in client.list_backups(cluster_id=cid)
    ]
    return tuple(files), tuple(clusters), tuple(rows)


def refused(
    server: ServerProcess,
    client: CassyClient,
    call: Callable[[], object],
    code: grpc.StatusCode,
    words: str,
) -> None:
    before = _snapshot_of_state(server, client)
    with pytest.raises(CassyError) as err:
        call()
    assert err.value.code == code, err.value
    assert words in err.value.details, err.value.details
    assert _snapshot_of_state(server, client) == before, "a refused request wrote something"


def test_register_without_a_host(server1: ServerProcess, client1: CassyClient) -> None:
    refused(server1, client1, lambda: client1.register_cluster(""), INVALID, "cassandra_host")


def test_register_a_host_with_no_cassandra(server1: ServerProcess, client1: CassyClient) -> None:
    refused(
        server1,
        client1,
        lambda: client1.register_cluster("127.0.0.99"),
        grpc.StatusCode.UNAVAILABLE,
        "127.0.0.99",
    )


@pytest.mark.parametrize(
    "host", ["../../tmp/x", "a/b", "a\x00b", "a b", "-x.example.com", "h" * 300]
)
def test_register_a_malformed_host(server1: ServerProcess, client1: CassyClient, host: str) -> None:
    logged = len(server1.output())
    refused(
        server1,
        client1,
        lambda: client1.register_cluster(host),
        INVALID,
        "is not a host name or an IP address",
    )
    assert "Traceback" not in server1.output()[logged:]


def test_backup_without_a_cluster_id(server1: ServerProcess, client1: CassyClient) -> None:
    refused(
        server1,
        client1,
        lambda: client1.take_backup("", BackupType.NODE_SNAPSHOT),
        INVALID,
        "cluster_id must be specified",
    )


def test_backup_of_an_unknown_cluster(server1: ServerProcess, client1: CassyClient) -> None:
    refused(
        server1,
        client1,
        lambda: client1.take_backup("nope-1", BackupType.NODE_SNAPSHOT),
        INVALID,
        "no cluster 'nope-1'",
    )


def test_backup_of_an_unknown_type(
    server1: ServerProcess,
    client1: CassyClient,
    stub: cassy_pb2_grpc.CassyStub,
    registered: Cluster,
) -> None:
    def call() -> object:
        try:
            return stub.TakeBackup(
                cassy_pb2.BackupRequest(cluster_id=registered.cluster_id, backup_type=7)
            )
        except grpc.RpcError as exc:
            raise CassyError("TakeBackup", server1.address, exc.code(), exc.details()) from exc

    refused(server1, client1, call, INVALID, "unknown backup_type 7")


def test_incremental_without_a_snapshot_id(
    server1: ServerProcess, client1: CassyClient, registered: Cluster
) -> None:
    refused(
        server1,
        client1,
        lambda: client1.take_backup(registered.cluster_id, BackupType.NODE_INCREMENTAL),
        INVALID,
        "snapshot_id must be specified when taking incremental backups",
    )


def test_snapshot_with_a_snapshot_id(
    server1: ServerProcess, client1: CassyClient, registered: Cluster
) -> None:
    refused(
        server1,
        client1,
        lambda: client1.take_backup(registered.cluster_id, BackupType.NODE_SNAPSHOT, "abc"),
        INVALID,
        "snapshot_id must not be specified",
    )


@pytest.mark.parametrize("bad_id", ["../x", "a/b", "x y", ".."])
def test_snapshot_id_that_is_not_a_plain_id(
    server1: ServerProcess, client1: CassyClient, registered: Cluster, bad_id: str
) -> None:
    refused(
        server1,
        client1,
        lambda: client1.take_backup(registered.cluster_id, BackupType.NODE_INCREMENTAL, bad_id),
        INVALID,
        "not a plain id",
    )


def test_target_ips_outside_the_cluster(
    server1: ServerProcess, client1: CassyClient, registered: Cluster
) -> None:
    refused(
        server1,
        client1,
        lambda: client1.take_backup(
            registered.cluster_id, BackupType.NODE_SNAPSHOT, target_ips=["127.0.0.77"]
        ),
        INVALID,
        "127.0.0.77 are not nodes of",
    )


def test_cluster_wide_snapshot_without_applications_is_refused(
    server1: ServerProcess, client1: CassyClient, registered: Cluster
) -> None:
    refused(
        server1,
        client1,
        lambda: client1.take_backup(registered.cluster_id, BackupType.CLUSTER_SNAPSHOT),
        grpc.StatusCode.FAILED_PRECONDITION,
        "add an [applications] table",
    )


def test_incremental_of_a_snapshot_that_does_not_exist(
    server1: ServerProcess, client1: CassyClient, registered: Cluster
) -> None:
    refused(
        server1,
        client1,
        lambda: client1.take_backup(
            registered.cluster_id,
            BackupType.NODE_INCREMENTAL,
            "0b0e6a36-0000-4000-8000-000000000000",
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "has no snapshot",
    )


def test_list_backups_without_any_filter(server1: ServerProcess, client1: CassyClient) -> None:
    refused(server1, client1, client1.list_backups, INVALID, "cluster_id")


def test_list_clusters_with_a_negative_limit(server1: ServerProcess, client1: CassyClient) -> None:
    refused(server1, client1, lambda: client1.list_clusters(limit=-1), INVALID, "limit")


def test_reflection_lets_a_generic_client_find_and_call_cassy(server1: ServerProcess) -> None:
    """What grpcurl does without a .proto: ask the server for its schema, then call it."""
    channel = grpc.insecure_channel(server1.address)
    database = ProtoReflectionDescriptorDatabase(channel)
    assert "rpc.Cassy" in database.get_services()
    pool = DescriptorPool(database)
    method = pool.FindServiceByName("rpc.Cassy").methods_by_name["ListClusters"]
    request_class = GetMessageClass(method.input_type)
    response_class = GetMessageClass(method.output_type)
    call = channel.unary_unary(
        "/rpc.Cassy/ListClusters",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    reply = call(request_class(limit=1), timeout=30)
    assert len(reply.entries) <= 1
    assert [f.name for f in method.output_type.fields] == ["entries"]
    channel.close()


def test_health_service_says_serving(server1: ServerProcess) -> None:
    channel = grpc.insecure_channel(server1.address)
    stub = health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service="rpc.Cassy"), timeout=30)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    channel.close()


def test_the_server_says_it_is_the_builtin_one(client1: CassyClient) -> None:
    assert client1.is_builtin_server()


def test_a_server_without_health_is_not_taken_for_the_builtin_one(server1: ServerProcess) -> None:
    front = CassyFront(server1.address)  # rpc.Cassy only, as Scalar's Cassy serves
    try:
        with CassyClient(front.address, timeout_s=10) as client:
            assert not client.is_builtin_server()
            assert client.list_clusters() is not None  # and it is a working Cassy
    finally:
        front.close()


def test_a_server_that_cannot_be_reached_is_taken_for_neither() -> None:
    """Not a guess that would send the caller down Scalar's Cassy's paths."""
    client = CassyClient("127.0.0.1:9", timeout_s=2)  # nothing listens on discard
    with client, pytest.raises(CassyUnavailable):
        client.is_builtin_server()


def test_a_bad_config_names_file_line_and_field(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text('[server]\nport = 20051\nlisten = "x"\n\n[storage]\nuri = "s3://b/k"\n')
    done = subprocess.run(
        [sys.executable, "-m", "cassy_scheduler", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert f"{config}:3: server.listen: unknown key" in done.stderr
