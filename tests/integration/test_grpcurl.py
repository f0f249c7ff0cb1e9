"""grpcurl against the built-in server, as Cassy's users run it: every reply's JSON has the
proto's own field names (cluster_id, not clusterId) and Cassy's value types (uint64 times as
strings, statuses by name), so scripts that parse grpcurl's output keep working; our own
Backups service beside it follows the same conventions.

grpcurl is the real program, built from the Go module proxy into the cache by the set-up.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from cassy_scheduler.protocol.generated import backups_pb2, cassy_pb2
from tests.serverproc import ServerProcess
from tools.localcluster import LocalCluster
from tools.peers.gotools import GRPCURL, installed

pytestmark = pytest.mark.cassandra

MESSAGES = cassy_pb2.DESCRIPTOR.message_types_by_name
BACKUP_MESSAGES = backups_pb2.DESCRIPTOR.message_types_by_name
BACKUPS = "cassy_scheduler.v1.Backups"


@pytest.fixture(scope="session")
def grpcurl() -> Path:
    return installed(GRPCURL)


class Grpcurl:
    def __init__(self, program: Path, address: str) -> None:
        self.program = program
        self.address = address

    def run(self, method: str, body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(self.program),
                "-plaintext",
                "-format-error",
                "-d",
                "@",  # the body from stdin: a command-line argument holds 128 KiB at most
                self.address,
                method if "/" in method else f"rpc.Cassy/{method}",
            ],
            input=json.dumps(body),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        done = self.run(method, body)
        assert done.returncode == 0, done.stdout + done.stderr
        reply: dict[str, Any] = json.loads(done.stdout)
        return reply

    def refused(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        done = self.run(method, body)
        assert done.returncode != 0, done.stdout
        error: dict[str, Any] = json.loads(done.stderr)  # -format-error: JSON on stderr
        return error


@pytest.fixture
def cli(grpcurl: Path, server1: ServerProcess) -> Grpcurl:
    return Grpcurl(grpcurl, server1.address)


def assert_shape(descriptor: Descriptor, value: dict[str, Any]) -> None:
    """Proto field names only, uint64 as strings of digits, enums by name, nested alike."""
    fields = descriptor.fields_by_name
    assert set(value) <= set(fields), f"{descriptor.name}: {sorted(set(value) - set(fields))}"
    for name, item in value.items():
        field = fields[name]
        items = item if field.is_repeated else [item]
        for element in items:
            if field.type == FieldDescriptor.TYPE_UINT64:
                assert isinstance(element, str) and element.isdigit(), (name, element)
            elif field.type in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_INT32):
                assert isinstance(element, int), (name, element)
            elif field.type == FieldDescriptor.TYPE_ENUM:
                assert element in field.enum_type.values_by_name, (name, element)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                assert_shape(field.message_type, element)
            else:
                assert isinstance(element, str | bool), (name, element)


def test_every_reply_has_cassys_field_names_and_types(cli: Grpcurl, cluster1: LocalCluster) -> None:
    registered = cli.call("RegisterCluster", {"cassandra_host": cluster1.addresses[0]})
    assert_shape(MESSAGES["ClusterRegistrationResponse"], registered)
    assert {"cluster_id", "cluster_name", "target_ips", "keyspaces", "data_dir"} <= set(registered)
    cluster_id = registered["cluster_id"]

    listed = cli.call("ListClusters", {"cluster_id": cluster_id})
    assert_shape(MESSAGES["ClusterListingResponse"], listed)
    assert {"created_at", "updated_at"} <= set(listed["entries"][0])

    taken = cli.call("TakeBackup", {"cluster_id": cluster_id, "backup_type": 2})
    assert_shape(MESSAGES["BackupResponse"], taken)
    assert taken["status"] == "STARTED" and taken["backup_type"] == 2
    assert {"cluster_id", "target_ips", "snapshot_id", "created_at"} <= set(taken)

    deadline = time.monotonic() + 300
    while True:
        rows = cli.call("ListBackups", {"snapshot_id": taken["snapshot_id"]})["entries"]
        if all(r["status"] in ("COMPLETED", "FAILED") for r in rows) or time.monotonic() > deadline:
            break
        time.sleep(1)
    for row in rows:
        assert_shape(MESSAGES["BackupListingResponse"].nested_types_by_name["Entry"], row)
        assert row["created_at"] == taken["created_at"] and row["status"] == "COMPLETED"
        assert {"target_ip", "snapshot_id", "updated_at", "backup_type"} <= set(row)

    restores = cli.call(
        "ListRestoreStatuses", {"cluster_id": cluster_id, "snapshot_id": taken["snapshot_id"]}
    )
    assert_shape(MESSAGES["RestoreStatusListingResponse"], restores)
    assert restores == {"cluster_id": cluster_id}  # no restores yet: only the id, as Cassy

    # Our own service beside Cassy's, found by reflection, in the same JSON conventions.
    described = cli.call(f"{BACKUPS}/DescribeBackups", {"cluster_id": cluster_id})
    assert_shape(BACKUP_MESSAGES["DescribeBackupsResponse"], described)
    ours = [e for e in described["entries"] if e["snapshot_id"] == taken["snapshot_id"]]
    assert len(ours) == len(rows) and all(e["status"] == "COMPLETED" for e in ours)
    assert all(e["size_known"] and int(e["bytes"]) > 0 for e in ours)
    preview = cli.call(
        f"{BACKUPS}/DeleteBackup",
        {"cluster_id": cluster_id, "snapshot_id": taken["snapshot_id"], "dry_run": True},
    )
    assert_shape(BACKUP_MESSAGES["DeleteBackupResponse"], preview)
    assert preview["dry_run"] is True and int(preview["objects"]) > 0
    listed_services = subprocess.run(
        [str(cli.program), "-plaintext", cli.address, "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert {"rpc.Cassy", BACKUPS} <= set(listed_services)


def test_refusals_read_as_grpcurl_prints_them(cli: Grpcurl, cluster1: LocalCluster) -> None:
    cluster_id = cli.call("RegisterCluster", {"cassandra_host": cluster1.addresses[0]})[
        "cluster_id"
    ]
    unknown_type = cli.refused("TakeBackup", {"cluster_id": cluster_id, "backup_type": 9})
    assert unknown_type["code"] == 3 and "unknown backup_type 9" in unknown_type["message"]
    running = cli.refused(
        "RestoreBackup", {"cluster_id": cluster_id, "snapshot_id": "nope", "restore_type": 2}
    )
    assert running["code"] == 9, running  # FAILED_PRECONDITION: no such backup


def test_oversized_values_are_echoed_short(cli: Grpcurl, server1: ServerProcess) -> None:
    big = "c" * 50_000
    refusal = cli.refused("TakeBackup", {"cluster_id": big, "backup_type": 2})
    assert refusal["code"] == 3, refusal
    assert len(refusal["message"]) < 400 and "(50000 bytes)" in refusal["message"]
    # Cassy's reply names the cluster asked about; the request cap bounds it.
    restores = cli.call("ListRestoreStatuses", {"cluster_id": big, "snapshot_id": "x"})
    assert restores == {"cluster_id": big}
    too_big = cli.refused("TakeBackup", {"cluster_id": "c" * 3_000_000, "backup_type": 2})
    assert too_big["code"] == 8, too_big  # RESOURCE_EXHAUSTED: past the request cap
    log = server1.output()
    assert "c" * 1000 not in log
