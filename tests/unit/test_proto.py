"""The committed stubs match proto/cassy.proto, and the .proto matches Cassy's wire protocol."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf.descriptor import FieldDescriptor

from cassy_scheduler.protocol.generated import cassy_pb2

REPO_ROOT = Path(__file__).resolve().parents[2]

STRING = FieldDescriptor.TYPE_STRING
INT32 = FieldDescriptor.TYPE_INT32
UINT32 = FieldDescriptor.TYPE_UINT32
UINT64 = FieldDescriptor.TYPE_UINT64
BOOL = FieldDescriptor.TYPE_BOOL
ENUM = FieldDescriptor.TYPE_ENUM
MESSAGE = FieldDescriptor.TYPE_MESSAGE
ONE, MANY = False, True

# (message, field, number, type, repeated, referenced type) -- from docs/cassy-protocol.md.
FACTS: list[tuple[str, str, int, int, bool, str | None]] = [
    ("ClusterRegistrationRequest", "cassandra_host", 1, STRING, ONE, None),
    ("ClusterRegistrationResponse", "cluster_id", 1, STRING, ONE, None),
    ("ClusterRegistrationResponse", "cluster_name", 2, STRING, ONE, None),
    ("ClusterRegistrationResponse", "target_ips", 3, STRING, MANY, None),
    ("ClusterRegistrationResponse", "keyspaces", 4, STRING, MANY, None),
    ("ClusterRegistrationResponse", "data_dir", 5, STRING, ONE, None),
    ("ClusterListingRequest", "cluster_id", 1, STRING, ONE, None),
    ("ClusterListingRequest", "limit", 2, INT32, ONE, None),
    ("ClusterListingResponse", "entries", 1, MESSAGE, MANY, "rpc.ClusterListingResponse.Entry"),
    ("ClusterListingResponse.Entry", "cluster_id", 1, STRING, ONE, None),
    ("ClusterListingResponse.Entry", "cluster_name", 2, STRING, ONE, None),
    ("ClusterListingResponse.Entry", "target_ips", 3, STRING, MANY, None),
    ("ClusterListingResponse.Entry", "keyspaces", 4, STRING, MANY, None),
    ("ClusterListingResponse.Entry", "data_dir", 5, STRING, ONE, None),
    ("ClusterListingResponse.Entry", "created_at", 6, UINT64, ONE, None),
    ("ClusterListingResponse.Entry", "updated_at", 7, UINT64, ONE, None),
    ("BackupListingRequest", "cluster_id", 1, STRING, ONE, None),
    ("BackupListingRequest", "target_ip", 2, STRING, ONE, None),
    ("BackupListingRequest", "limit", 3, INT32, ONE, None),
    ("BackupListingRequest", "snapshot_id", 4, STRING, ONE, None),
    ("BackupListingResponse", "entries", 1, MESSAGE, MANY, "rpc.BackupListingResponse.Entry"),
    ("BackupListingResponse.Entry", "cluster_id", 1, STRING, ONE, None),
    ("BackupListingResponse.Entry", "target_ip", 2, STRING, ONE, None),
    ("BackupListingResponse.Entry", "snapshot_id", 3, STRING, ONE, None),
    ("BackupListingResponse.Entry", "created_at", 4, UINT64, ONE, None),
    ("BackupListingResponse.Entry", "updated_at", 5, UINT64, ONE, None),
    ("BackupListingResponse.Entry", "backup_type", 6, UINT32, ONE, None),
    ("BackupListingResponse.Entry", "status", 7, ENUM, ONE, "rpc.OperationStatus"),
    ("BackupRequest", "cluster_id", 1, STRING, ONE, None),
    ("BackupRequest", "target_ips", 2, STRING, MANY, None),
    ("BackupRequest", "snapshot_id", 3, STRING, ONE, None),
    ("BackupRequest", "backup_type", 4, UINT32, ONE, None),
    ("BackupResponse", "status", 1, ENUM, ONE, "rpc.OperationStatus"),
    ("BackupResponse", "cluster_id", 2, STRING, ONE, None),
    ("BackupResponse", "target_ips", 3, STRING, MANY, None),
    ("BackupResponse", "snapshot_id", 4, STRING, ONE, None),
    ("BackupResponse", "created_at", 5, UINT64, ONE, None),
    ("BackupResponse", "backup_type", 6, UINT32, ONE, None),
    ("RestoreRequest", "cluster_id", 1, STRING, ONE, None),
    ("RestoreRequest", "target_ips", 2, STRING, MANY, None),
    ("RestoreRequest", "snapshot_id", 3, STRING, ONE, None),
    ("RestoreRequest", "restore_type", 4, UINT32, ONE, None),
    ("RestoreRequest", "snapshot_only", 5, BOOL, ONE, None),
    ("RestoreResponse", "status", 1, ENUM, ONE, "rpc.OperationStatus"),
    ("RestoreResponse", "cluster_id", 2, STRING, ONE, None),
    ("RestoreResponse", "target_ips", 3, STRING, MANY, None),
    ("RestoreResponse", "snapshot_id", 4, STRING, ONE, None),
    ("RestoreResponse", "restore_type", 5, UINT32, ONE, None),
    ("RestoreResponse", "snapshot_only", 6, BOOL, ONE, None),
    ("RestoreStatusListingRequest", "cluster_id", 1, STRING, ONE, None),
    ("RestoreStatusListingRequest", "target_ip", 2, STRING, ONE, None),
    ("RestoreStatusListingRequest", "snapshot_id", 3, STRING, ONE, None),
    ("RestoreStatusListingRequest", "limit", 4, INT32, ONE, None),
    ("RestoreStatusListingResponse", "cluster_id", 1, STRING, ONE, None),
    (
        "RestoreStatusListingResponse",
        "entries",
        3,
        MESSAGE,
        MANY,
        "rpc.RestoreStatusListingResponse.Entry",
    ),
    ("RestoreStatusListingResponse.Entry", "target_ip", 1, STRING, ONE, None),
    ("RestoreStatusListingResponse.Entry", "snapshot_id", 2, STRING, ONE, None),
    ("RestoreStatusListingResponse.Entry", "created_at", 3, UINT64, ONE, None),
    ("RestoreStatusListingResponse.Entry", "updated_at", 4, UINT64, ONE, None),
    ("RestoreStatusListingResponse.Entry", "restore_type", 5, UINT32, ONE, None),
    ("RestoreStatusListingResponse.Entry", "status", 6, ENUM, ONE, "rpc.OperationStatus"),
    ("PauseRequest", "wait_outstanding", 1, BOOL, ONE, None),
    ("StatsResponse", "stats", 1, STRING, ONE, None),
]

SERVICES = {
    "Cassy": {
        "RegisterCluster": ("ClusterRegistrationRequest", "ClusterRegistrationResponse"),
        "ListClusters": ("ClusterListingRequest", "ClusterListingResponse"),
        "ListBackups": ("BackupListingRequest", "BackupListingResponse"),
        "TakeBackup": ("BackupRequest", "BackupResponse"),
        "RestoreBackup": ("RestoreRequest", "RestoreResponse"),
        "ListRestoreStatuses": ("RestoreStatusListingRequest", "RestoreStatusListingResponse"),
    },
    "Admin": {
        "Pause": ("PauseRequest", "google.protobuf.Empty"),
        "Unpause": ("google.protobuf.Empty", "google.protobuf.Empty"),
        "Stats": ("google.protobuf.Empty", "StatsResponse"),
    },
}


def _qualified(name: str) -> str:
    return name if name.startswith("google.") else f"rpc.{name}"


def _load_genproto() -> ModuleType:
    spec = importlib.util.spec_from_file_location("genproto", REPO_ROOT / "tools" / "genproto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    genproto = _load_genproto()
    genproto.generate(tmp_path)
    stale = [
        name
        for name in genproto.GENERATED_FILES
        if (tmp_path / name).read_bytes() != (genproto.OUTPUT_DIR / name).read_bytes()
    ]
    assert not stale, f"generated stubs are stale ({', '.join(stale)}): run `make proto`"


def test_file_is_proto3_package_rpc() -> None:
    assert cassy_pb2.DESCRIPTOR.package == "rpc"
    assert cassy_pb2.DESCRIPTOR.name == "cassy.proto"


@pytest.mark.parametrize("fact", FACTS, ids=lambda fact: f"{fact[0]}.{fact[1]}")
def test_field_matches_the_fact_sheet(fact: tuple[str, str, int, int, bool, str | None]) -> None:
    message, field, number, kind, repeated, ref = fact
    outer, _, nested = message.partition(".")
    descriptor = cassy_pb2.DESCRIPTOR.message_types_by_name[outer]
    if nested:
        descriptor = descriptor.nested_types_by_name[nested]
    found = descriptor.fields_by_name[field]
    assert (found.number, found.type, found.is_repeated) == (number, kind, repeated)
    if kind == MESSAGE:
        assert found.message_type is not None and found.message_type.full_name == ref
    if kind == ENUM:
        assert found.enum_type is not None and found.enum_type.full_name == ref


def test_every_field_is_in_the_fact_sheet() -> None:
    """Fields the fact sheet does not list would change the wire; this includes field 2."""
    known = {(message, field) for message, field, *_ in FACTS}
    pending = list(cassy_pb2.DESCRIPTOR.message_types_by_name.values())
    actual = set()
    while pending:
        descriptor = pending.pop()
        pending.extend(descriptor.nested_types)
        name = descriptor.full_name.removeprefix("rpc.")
        actual |= {(name, f.name) for f in descriptor.fields}
    assert actual == known


def test_restore_status_listing_response_has_no_field_2() -> None:
    numbers = cassy_pb2.RestoreStatusListingResponse.DESCRIPTOR.fields_by_number
    assert sorted(numbers) == [1, 3]


def test_operation_status_enum() -> None:
    values = {
        v.name: v.number for v in cassy_pb2.DESCRIPTOR.enum_types_by_name["OperationStatus"].values
    }
    assert values == {"UNKNOWN": 0, "INITIALIZED": 1, "STARTED": 2, "COMPLETED": 3, "FAILED": 4}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_methods(service: str) -> None:
    descriptor = cassy_pb2.DESCRIPTOR.services_by_name[service]
    actual = {
        m.name: (
            m.input_type.full_name,
            m.output_type.full_name,
            m.client_streaming,
            m.server_streaming,
        )
        for m in descriptor.methods
    }
    expected = {
        name: (_qualified(request), _qualified(response), False, False)
        for name, (request, response) in SERVICES[service].items()
    }
    assert actual == expected
