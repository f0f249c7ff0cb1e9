"""CassyClient and wait_for_backup against a small in-process gRPC server on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import grpc  # type: ignore[import-untyped]
import pytest
from google.protobuf.message import Message

from cassy_scheduler.client import (
    BackupAck,
    CassyBadResponse,
    CassyClient,
    CassyConfigError,
    CassyDeadlineExceeded,
    CassyError,
    CassyFailedPrecondition,
    CassyInvalidArgument,
    CassyNotFound,
    CassyUnavailable,
    CassyUnimplemented,
    Cluster,
)
from cassy_scheduler.outcome import wait_for_backup
from cassy_scheduler.protocol.generated import cassy_pb2, cassy_pb2_grpc
from cassy_scheduler.protocol.reasons import (
    BUDGET_BYTES,
    REASON_CHARS,
    REASONS_KEY,
    decode_reasons,
    encode_reasons,
)
from cassy_scheduler.protocol.types import BackupType, OperationStatus, RestoreType
from cassy_scheduler.tls import TlsConfig
from tests.unit.fakes import FakeClock

CREATED_MS = 1_700_000_000_123
UPDATED_MS = 1_700_000_060_456
CREATED = datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
Entry = cassy_pb2.BackupListingResponse.Entry
Status: TypeAlias = cassy_pb2.OperationStatus.ValueType
_R = TypeVar("_R", bound=Message)


@dataclass
class FakeCassy(cassy_pb2_grpc.CassyServicer):
    """Answers each call from `responses`, records requests, and can abort or hang on demand."""

    responses: dict[str, Message] = field(default_factory=dict)
    backup_rows: list[list[Entry]] = field(default_factory=list)
    abort: tuple[Any, str] | None = None
    hang: threading.Event | None = None
    requests: list[Message] = field(default_factory=list)
    trailer: tuple[tuple[str, bytes], ...] = ()

    def _answer(self, name: str, request: Message, context: Any, kind: type[_R]) -> _R:
        self.requests.append(request)
        if self.hang is not None:
            self.hang.wait()
        if self.abort is not None:
            context.abort(*self.abort)
        response = self.responses[name]
        assert isinstance(response, kind)
        if self.trailer:
            context.set_trailing_metadata(self.trailer)
        return response

    def RegisterCluster(  # noqa: N802
        self, request: Message, context: Any
    ) -> cassy_pb2.ClusterRegistrationResponse:
        return self._answer(
            "RegisterCluster", request, context, cassy_pb2.ClusterRegistrationResponse
        )

    def ListClusters(self, request: Message, context: Any) -> cassy_pb2.ClusterListingResponse:  # noqa: N802
        return self._answer("ListClusters", request, context, cassy_pb2.ClusterListingResponse)

    def TakeBackup(self, request: Message, context: Any) -> cassy_pb2.BackupResponse:  # noqa: N802
        return self._answer("TakeBackup", request, context, cassy_pb2.BackupResponse)

    def RestoreBackup(self, request: Message, context: Any) -> cassy_pb2.RestoreResponse:  # noqa: N802
        return self._answer("RestoreBackup", request, context, cassy_pb2.RestoreResponse)

    def ListRestoreStatuses(  # noqa: N802
        self, request: Message, context: Any
    ) -> cassy_pb2.RestoreStatusListingResponse:
        return self._answer(
            "ListRestoreStatuses", request, context, cassy_pb2.RestoreStatusListingResponse
        )

    def ListBackups(self, request: Message, context: Any) -> cassy_pb2.BackupListingResponse:  # noqa: N802
        """Walks through backup_rows one call at a time, then keeps answering the last."""
        if self.backup_rows:
            self.requests.append(request)
            rows = self.backup_rows.pop(0) if len(self.backup_rows) > 1 else self.backup_rows[0]
            return cassy_pb2.BackupListingResponse(entries=rows)
        return self._answer("ListBackups", request, context, cassy_pb2.BackupListingResponse)


@pytest.fixture
def fake() -> FakeCassy:
    return FakeCassy()


@pytest.fixture
def client(fake: FakeCassy) -> Iterator[CassyClient]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    cassy_pb2_grpc.add_CassyServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with CassyClient(f"127.0.0.1:{port}", timeout_s=10.0) as cassy_client:
        yield cassy_client
    if fake.hang is not None:
        fake.hang.set()
    server.stop(grace=None)


# --- typed conversion ---------------------------------------------------------------------


def test_register_cluster(client: CassyClient, fake: FakeCassy) -> None:
    fake.responses["RegisterCluster"] = cassy_pb2.ClusterRegistrationResponse(
        cluster_id="c1-uuid",
        cluster_name="c1",
        target_ips=["127.0.0.1", "127.0.0.2"],
        keyspaces=["ks"],
        data_dir="/var/lib/cassandra/data",
    )
    cluster = client.register_cluster("127.0.0.1")
    assert cluster == Cluster(
        "c1-uuid", "c1", ("127.0.0.1", "127.0.0.2"), ("ks",), "/var/lib/cassandra/data"
    )
    assert fake.requests == [cassy_pb2.ClusterRegistrationRequest(cassandra_host="127.0.0.1")]


def test_list_clusters(client: CassyClient, fake: FakeCassy) -> None:
    fake.responses["ListClusters"] = cassy_pb2.ClusterListingResponse(
        entries=[
            cassy_pb2.ClusterListingResponse.Entry(
                cluster_id="c1-uuid",
                cluster_name="c1",
                target_ips=["127.0.0.1"],
                keyspaces=["ks"],
                data_dir="/data",
                created_at=CREATED_MS,
                updated_at=CREATED_MS,
            )
        ]
    )
    clusters = client.list_clusters(limit=5)
    assert clusters == [
        Cluster("c1-uuid", "c1", ("127.0.0.1",), ("ks",), "/data", CREATED, CREATED)
    ]
    assert fake.requests == [cassy_pb2.ClusterListingRequest(cluster_id="", limit=5)]


def test_take_backup(client: CassyClient, fake: FakeCassy) -> None:
    fake.responses["TakeBackup"] = cassy_pb2.BackupResponse(
        status=cassy_pb2.STARTED,
        cluster_id="c1",
        target_ips=["127.0.0.1"],
        snapshot_id="s1",
        created_at=CREATED_MS,
        backup_type=3,
    )
    ack = client.take_backup("c1", BackupType.NODE_INCREMENTAL, "s1", ["127.0.0.1"])
    assert ack == BackupAck(
        OperationStatus.STARTED,
        "c1",
        ("127.0.0.1",),
        "s1",
        CREATED,
        CREATED_MS,
        BackupType.NODE_INCREMENTAL,
    )
    assert fake.requests == [
        cassy_pb2.BackupRequest(
            cluster_id="c1", target_ips=["127.0.0.1"], snapshot_id="s1", backup_type=3
        )
    ]


def test_list_backups(client: CassyClient, fake: FakeCassy) -> None:
    fake.responses["ListBackups"] = cassy_pb2.BackupListingResponse(
        entries=[_row("127.0.0.1", cassy_pb2.COMPLETED, backup_type=2)]
    )
    [entry] = client.list_backups(snapshot_id="s1", limit=1)
    assert (entry.target_ip, entry.status, entry.backup_type) == (
        "127.0.0.1",
        OperationStatus.COMPLETED,
        BackupType.NODE_SNAPSHOT,
    )
    assert (entry.created_at, entry.created_at_ms) == (CREATED, CREATED_MS)
    assert entry.updated_at == datetime(2023, 11, 14, 22, 14, 20, 456000, tzinfo=UTC)
    assert fake.requests == [cassy_pb2.BackupListingRequest(snapshot_id="s1", limit=1)]


def test_restore_backup(client: CassyClient, fake: FakeCassy) -> None:
    fake.responses["RestoreBackup"] = cassy_pb2.RestoreResponse(
        status=cassy_pb2.STARTED,
        cluster_id="c1",
        target_ips=["127.0.0.1"],
        snapshot_id="s1",
        restore_type=2,
        snapshot_only=True,
    )
    ack = client.restore_backup("c1", "s1", RestoreType.NODE, ["127.0.0.1"], snapshot_only=True)
    assert (ack.status, ack.restore_type, ack.snapshot_only, ack.target_ips) == (
        OperationStatus.STARTED,
        RestoreType.NODE,
        True,
        ("127.0.0.1",),
    )
    assert fake.requests[0] == cassy_pb2.RestoreRequest(
        cluster_id="c1",
        target_ips=["127.0.0.1"],
        snapshot_id="s1",
        restore_type=2,
        snapshot_only=True,
    )


def test_list_restore_statuses(client: CassyClient, fake: FakeCassy) -> None:
    fake.responses["ListRestoreStatuses"] = cassy_pb2.RestoreStatusListingResponse(
        cluster_id="c1",
        entries=[
            cassy_pb2.RestoreStatusListingResponse.Entry(
                target_ip="127.0.0.1",
                snapshot_id="s1",
                created_at=CREATED_MS,
                updated_at=UPDATED_MS,
                restore_type=1,
                status=cassy_pb2.FAILED,
            )
        ],
    )
    [entry] = client.list_restore_statuses("c1", "s1", target_ip="127.0.0.1")
    assert (entry.cluster_id, entry.restore_type, entry.status, entry.created_at_ms) == (
        "c1",
        RestoreType.CLUSTER,
        OperationStatus.FAILED,
        CREATED_MS,
    )


def test_unknown_enum_value_is_a_bad_response(client: CassyClient, fake: FakeCassy) -> None:
    fake.responses["ListBackups"] = cassy_pb2.BackupListingResponse(
        entries=[_row("127.0.0.1", cassy_pb2.COMPLETED, backup_type=9)]
    )
    with pytest.raises(CassyBadResponse, match="9 is not a known BackupType"):
        client.list_backups(cluster_id="c1")


def test_failure_reasons_in_the_trailer_reach_their_rows(
    client: CassyClient, fake: FakeCassy
) -> None:
    fake.responses["ListBackups"] = cassy_pb2.BackupListingResponse(
        entries=[_row("127.0.0.1", cassy_pb2.FAILED), _row("127.0.0.2", cassy_pb2.COMPLETED)]
    )
    encoded = encode_reasons([(("127.0.0.1", "s1", CREATED_MS), "nodetool snapshot failed")])
    assert encoded is not None
    fake.trailer = ((REASONS_KEY, encoded),)
    failed, completed = client.list_backups(cluster_id="c1")
    assert (failed.reason, completed.reason) == ("nodetool snapshot failed", None)


@pytest.mark.parametrize("payload", [b"not json", b'[["127.0.0.1"]]', b'{"a": 1}'])
def test_a_malformed_reasons_trailer_is_ignored(
    client: CassyClient, fake: FakeCassy, payload: bytes
) -> None:
    fake.responses["ListBackups"] = cassy_pb2.BackupListingResponse(
        entries=[_row("127.0.0.1", cassy_pb2.FAILED)]
    )
    fake.trailer = ((REASONS_KEY, payload),)
    (row,) = client.list_backups(cluster_id="c1")
    assert row.reason is None


def test_reasons_are_shortened_and_kept_within_the_metadata_budget() -> None:
    many = [((f"127.0.0.{n}", "s1", n), "x" * 1000) for n in range(1, 100)]
    encoded = encode_reasons(many)
    assert encoded is not None and len(encoded) <= BUDGET_BYTES
    decoded = decode_reasons([(REASONS_KEY, encoded)])
    assert 1 < len(decoded) < 99
    assert decoded[("127.0.0.1", "s1", 1)] == "x" * REASON_CHARS
    assert encode_reasons([]) is None


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, CassyInvalidArgument),
        (grpc.StatusCode.NOT_FOUND, CassyNotFound),
        (grpc.StatusCode.FAILED_PRECONDITION, CassyFailedPrecondition),
        (grpc.StatusCode.UNAVAILABLE, CassyUnavailable),
        (grpc.StatusCode.INTERNAL, CassyError),
    ],
)
def test_server_errors_map_to_the_family(
    client: CassyClient, fake: FakeCassy, code: Any, error: type[CassyError]
) -> None:
    message = "snapshot_id must be specified when taking incremental backups"
    fake.abort = (code, message)
    with pytest.raises(error) as caught:
        client.take_backup("c1", BackupType.NODE_INCREMENTAL)
    assert type(caught.value) is error
    assert (caught.value.code, caught.value.details) == (code, message)
    assert caught.value.is_transient == (code is grpc.StatusCode.UNAVAILABLE)
    assert f"TakeBackup to {client.address}" in str(caught.value)
    assert message in str(caught.value)


def test_unimplemented_call() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))  # serves nothing at all
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with CassyClient(f"127.0.0.1:{port}") as bare, pytest.raises(CassyUnimplemented):
            bare.list_backups(cluster_id="c1")
    finally:
        server.stop(grace=None)


def test_deadline_exceeded(client: CassyClient, fake: FakeCassy) -> None:
    fake.hang = threading.Event()
    with pytest.raises(CassyDeadlineExceeded) as caught:
        client.list_clusters(timeout_s=0.2)
    assert caught.value.is_transient


def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        CassyClient(f"127.0.0.1:{port}", timeout_s=5.0) as cassy_client,
        pytest.raises(CassyUnavailable) as caught,
    ):
        cassy_client.list_clusters()
    assert caught.value.is_transient
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_unreadable_tls_file(tmp_path: Path) -> None:
    with pytest.raises(CassyConfigError, match=r"missing\.pem"):
        CassyClient("127.0.0.1:20051", tls=TlsConfig(ca_file=tmp_path / "missing.pem"))


# --- waiting for the outcome --------------------------------------------------------------


def _row(ip: str, status: Status, backup_type: int = 3, created_at: int = CREATED_MS) -> Entry:
    return Entry(
        cluster_id="c1",
        target_ip=ip,
        snapshot_id="s1",
        created_at=created_at,
        updated_at=UPDATED_MS,
        backup_type=backup_type,
        status=status,
    )


def _ack(*ips: str) -> BackupAck:
    return BackupAck(
        OperationStatus.STARTED, "c1", ips, "s1", CREATED, CREATED_MS, BackupType.NODE_INCREMENTAL
    )


def _wait(client: CassyClient, ack: BackupAck, clock: FakeClock) -> Callable[[], Any]:
    return lambda: wait_for_backup(client, ack, 60.0, 5.0, clock=clock)


def test_polls_back_off_from_a_quarter_second_to_the_interval(
    client: CassyClient, fake: FakeCassy
) -> None:
    fake.backup_rows = [[_row("127.0.0.1", cassy_pb2.STARTED)]] * 8 + [
        [_row("127.0.0.1", cassy_pb2.COMPLETED)]
    ]
    clock = FakeClock()
    assert _wait(client, _ack("127.0.0.1"), clock)().succeeded
    assert clock.waits == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_wait_until_every_node_completed(client: CassyClient, fake: FakeCassy) -> None:
    other_request = _row("127.0.0.2", cassy_pb2.FAILED, created_at=CREATED_MS - 1)
    fake.backup_rows = [
        [_row("127.0.0.1", cassy_pb2.STARTED), other_request],
        [_row("127.0.0.1", cassy_pb2.COMPLETED), _row("127.0.0.2", cassy_pb2.STARTED)],
        [_row("127.0.0.1", cassy_pb2.COMPLETED), _row("127.0.0.2", cassy_pb2.COMPLETED)],
    ]
    clock = FakeClock()
    outcome = _wait(client, _ack("127.0.0.1", "127.0.0.2"), clock)()
    assert outcome.succeeded
    assert not outcome.timed_out
    assert [n.status for n in outcome.nodes] == [OperationStatus.COMPLETED] * 2
    assert clock.waits == [0.25, 0.5]  # fast at first, doubling up to the interval
    assert fake.requests[0] == cassy_pb2.BackupListingRequest(snapshot_id="s1")


def test_wait_stops_at_the_first_failure(client: CassyClient, fake: FakeCassy) -> None:
    fake.backup_rows = [[_row("127.0.0.1", cassy_pb2.FAILED), _row("127.0.0.2", cassy_pb2.STARTED)]]
    outcome = _wait(client, _ack("127.0.0.1", "127.0.0.2"), FakeClock())()
    assert not outcome.succeeded
    assert (outcome.failed_nodes, outcome.pending_nodes) == (("127.0.0.1",), ("127.0.0.2",))
    assert not outcome.timed_out


def test_wait_times_out_with_the_last_statuses(client: CassyClient, fake: FakeCassy) -> None:
    fake.backup_rows = [[_row("127.0.0.1", cassy_pb2.STARTED)]]
    clock = FakeClock()
    outcome = _wait(client, _ack("127.0.0.1", "127.0.0.2"), clock)()
    assert outcome.timed_out
    assert [(n.target_ip, n.status) for n in outcome.nodes] == [
        ("127.0.0.1", OperationStatus.STARTED),
        ("127.0.0.2", OperationStatus.UNKNOWN),
    ]
    assert sum(clock.waits) == 60.0


def test_wait_without_target_ips_uses_the_rows(client: CassyClient, fake: FakeCassy) -> None:
    fake.backup_rows = [
        [_row("127.0.0.2", cassy_pb2.COMPLETED), _row("127.0.0.1", cassy_pb2.COMPLETED)]
    ]
    outcome = _wait(client, _ack(), FakeClock())()
    assert outcome.succeeded
    assert [n.target_ip for n in outcome.nodes] == ["127.0.0.1", "127.0.0.2"]


def test_wait_retries_transient_errors_until_timeout(client: CassyClient, fake: FakeCassy) -> None:
    fake.abort = (grpc.StatusCode.UNAVAILABLE, "restarting")
    outcome = _wait(client, _ack("127.0.0.1"), FakeClock())()
    assert outcome.timed_out
    assert outcome.last_error is not None and "restarting" in outcome.last_error


def test_wait_raises_other_errors(client: CassyClient, fake: FakeCassy) -> None:
    fake.abort = (grpc.StatusCode.INVALID_ARGUMENT, "no filter")
    with pytest.raises(CassyInvalidArgument):
        _wait(client, _ack("127.0.0.1"), FakeClock())()
