"""Access control on a real server process: each call with each role, tokens from grpcurl,
client certificates from a throwaway CA, the audit log, the allow-list of Cassandra hosts,
and the scheduler calling with a token that lacks a role."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cassy_scheduler.client import CassyClient, CassyUnauthenticated, CassyUnavailable
from cassy_scheduler.protocol.generated import (
    access_pb2,
    access_pb2_grpc,
    backups_pb2,
    backups_pb2_grpc,
    cassy_pb2,
    cassy_pb2_grpc,
)
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.tls import TlsConfig
from tests.integration.test_scheduler_helpers import cli, write_config
from tests.pki import TestCa
from tests.serverproc import ServerProcess, server_toml
from tools.localcluster import LocalCluster
from tools.peers.gotools import GRPCURL, installed

pytestmark = pytest.mark.cassandra

ROLES = ("reader", "operator", "admin")
RANK = {"reader": 1, "operator": 2, "admin": 3}
#: One request per call, each harmless: what it names does not exist, so an admitted call
#: ends in its own refusal (NOT_FOUND, INVALID_ARGUMENT...), never in work.
Stubs = dict[str, Any]
CALLS: dict[str, tuple[str, Callable[[Stubs], Any], Any]] = {
    "ListClusters": (
        "reader",
        lambda s: s["cassy"].ListClusters,
        cassy_pb2.ClusterListingRequest(),
    ),
    "ListBackups": (
        "reader",
        lambda s: s["cassy"].ListBackups,
        cassy_pb2.BackupListingRequest(cluster_id="none"),
    ),
    "ListRestoreStatuses": (
        "reader",
        lambda s: s["cassy"].ListRestoreStatuses,
        cassy_pb2.RestoreStatusListingRequest(cluster_id="none", snapshot_id="none"),
    ),
    "DescribeBackups": (
        "reader",
        lambda s: s["backups"].DescribeBackups,
        backups_pb2.DescribeBackupsRequest(cluster_id="none"),
    ),
    "WhoAmI": ("reader", lambda s: s["access"].WhoAmI, access_pb2.WhoAmIRequest()),
    "Check": ("reader", lambda s: s["health"].Check, health_pb2.HealthCheckRequest()),
    "RegisterCluster": (
        "operator",
        lambda s: s["cassy"].RegisterCluster,
        cassy_pb2.ClusterRegistrationRequest(cassandra_host=""),
    ),
    "TakeBackup": (
        "operator",
        lambda s: s["cassy"].TakeBackup,
        cassy_pb2.BackupRequest(cluster_id="none", backup_type=2),
    ),
    "RestoreBackup": (
        "admin",
        lambda s: s["cassy"].RestoreBackup,
        cassy_pb2.RestoreRequest(cluster_id="none", snapshot_id="none"),
    ),
    "DeleteBackup": (
        "admin",
        lambda s: s["backups"].DeleteBackup,
        backups_pb2.DeleteBackupRequest(cluster_id="none", snapshot_id="none"),
    ),
    "ListAudit": ("admin", lambda s: s["access"].ListAudit, access_pb2.ListAuditRequest()),
}


def _tokens(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for role in ROLES:
        files[role] = directory / f"{role}.token"
        files[role].write_text(f"token-of-the-{role}-{os.getpid()}\n")
        files[role].chmod(0o600)
    return files


def _identities(tokens: dict[str, Path]) -> str:
    return "".join(
        f'\n[access.identities.{role}-1]\nrole = "{role}"\ntoken_file = "{path}"\n'
        for role, path in tokens.items()
    )


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _tokens(tmp_path_factory.mktemp("tokens"))


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, cluster1: LocalCluster, tokens: dict[str, Path]
) -> Iterator[ServerProcess]:
    """A server for the 1-node cluster whose callers must name themselves."""
    work = tmp_path_factory.mktemp("guarded")
    listed = f'\n[access]\ncluster_hosts = ["{cluster1.addresses[0]}/32"]\naudit_keep = "400d"\n'
    config = server_toml(work, [cluster1], extra=listed + _identities(tokens))
    server = ServerProcess(config, work / "server.log").start()
    yield server
    server.stop()


def _token(tokens: dict[str, Path], role: str) -> str:
    return tokens[role].read_text().strip()


def _call(address: str, name: str, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    with grpc.insecure_channel(address) as channel:
        stubs = {
            "cassy": cassy_pb2_grpc.CassyStub(channel),
            "backups": backups_pb2_grpc.BackupsStub(channel),
            "access": access_pb2_grpc.AccessStub(channel),
            "health": health_pb2_grpc.HealthStub(channel),
        }
        _, method, request = CALLS[name]
        try:
            method(stubs)(request, timeout=60, metadata=metadata)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            if code is grpc.StatusCode.PERMISSION_DENIED:
                assert f"{name} needs the {CALLS[name][0]} role" in (exc.details() or "")
            return code
        return grpc.StatusCode.OK


@pytest.mark.parametrize("name", list(CALLS))
def test_each_call_admits_the_roles_it_needs_and_refuses_the_others(
    guarded: ServerProcess, tokens: dict[str, Path], name: str
) -> None:
    needed = CALLS[name][0]
    for role in ROLES:
        code = _call(guarded.address, name, (("authorization", f"Bearer {_token(tokens, role)}"),))
        if RANK[role] >= RANK[needed]:
            assert code not in (
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.UNAUTHENTICATED,
            ), (role, code)
        else:
            assert code is grpc.StatusCode.PERMISSION_DENIED, (role, code)
    assert _call(guarded.address, name, ()) is grpc.StatusCode.UNAUTHENTICATED
    wrong = (("authorization", "Bearer not-a-known-token"),)
    assert _call(guarded.address, name, wrong) is grpc.StatusCode.UNAUTHENTICATED


def test_every_call_that_changes_something_is_in_the_audit_log(
    guarded: ServerProcess, tokens: dict[str, Path]
) -> None:
    reader = (("authorization", f"Bearer {_token(tokens, 'reader')}"),)
    admin = (("authorization", f"Bearer {_token(tokens, 'admin')}"),)
    operator = (("authorization", f"Bearer {_token(tokens, 'operator')}"),)
    registered = _call(guarded.address, "RegisterCluster", operator)  # no host: refused
    assert registered is grpc.StatusCode.INVALID_ARGUMENT
    assert _call(guarded.address, "TakeBackup", reader) is grpc.StatusCode.PERMISSION_DENIED
    deleted = _call(guarded.address, "DeleteBackup", admin)
    assert _call(guarded.address, "RestoreBackup", ()) is grpc.StatusCode.UNAUTHENTICATED
    with CassyClient(guarded.address, token=_token(tokens, "admin")) as client:
        entries = client.list_audit(limit=4)
        assert client.who_am_i().identity == "admin-1"
    assert [(e.method.rsplit("/", 1)[-1], e.identity, e.code) for e in entries] == [
        ("RestoreBackup", "", "UNAUTHENTICATED"),
        ("DeleteBackup", "admin-1", deleted.name),
        ("TakeBackup", "reader-1", "PERMISSION_DENIED"),
        ("RegisterCluster", "operator-1", "INVALID_ARGUMENT"),
    ]
    assert all(e.peer.startswith("ipv4:127.") for e in entries)
    assert json.loads(entries[1].request) == {"cluster_id": "none", "snapshot_id": "none"}
    assert "needs the operator role" in entries[2].message
    log = guarded.output()
    assert "WARNING" in log and "DeleteBackup by identity=admin-1" in log

    listed = cli(
        "audit",
        "--server",
        guarded.address,
        "--json",
        env={"CASSY_SCHEDULER_TOKEN": _token(tokens, "admin")},
    )
    assert listed.returncode == 0, listed.stderr
    newest = json.loads(listed.stdout)[0]
    assert newest["method"] == "/rpc.Cassy/RestoreBackup"
    older = cli(
        "audit",
        "--server",
        guarded.address,
        "--json",
        "--limit",
        "1",
        "--before-id",
        str(newest["id"]),
        env={"CASSY_SCHEDULER_TOKEN": _token(tokens, "admin")},
    )
    assert [e["method"] for e in json.loads(older.stdout)] == [
        "/cassy_scheduler.v1.Backups/DeleteBackup"
    ]
    refused = cli(
        "audit",
        "--server",
        guarded.address,
        env={"CASSY_SCHEDULER_TOKEN": _token(tokens, "reader")},
    )
    assert refused.returncode == 1 and "ListAudit needs the admin role" in refused.stderr

    # A loop of anonymous calls: at most ten rows a minute per address and call.
    flood = cassy_pb2.BackupRequest(cluster_id=f"flood-{os.getpid()}", backup_type=2)
    with grpc.insecure_channel(guarded.address) as channel:
        for _ in range(15):
            with pytest.raises(grpc.RpcError):
                cassy_pb2_grpc.CassyStub(channel).TakeBackup(flood, timeout=60)
    with CassyClient(guarded.address, token=_token(tokens, "admin")) as client:
        flooded = [e for e in client.list_audit(limit=100) if "flood-" in e.request]
    assert 1 <= len(flooded) <= 10


def test_register_cluster_contacts_only_listed_hosts(
    guarded: ServerProcess, tokens: dict[str, Path], cluster1: LocalCluster
) -> None:
    outside = "127.0.0.254" if cluster1.addresses[0] != "127.0.0.254" else "127.0.0.253"
    with CassyClient(guarded.address, token=_token(tokens, "operator"), timeout_s=120) as client:
        assert client.register_cluster(cluster1.addresses[0]).target_ips
        with pytest.raises(Exception, match="cluster_hosts") as caught:
            client.register_cluster(outside)
    assert getattr(caught.value, "code", None) is grpc.StatusCode.PERMISSION_DENIED


def test_grpcurl_calls_with_the_header_and_is_refused_without_it(
    guarded: ServerProcess, tokens: dict[str, Path]
) -> None:
    program = str(installed(GRPCURL))
    header = f"authorization: Bearer {_token(tokens, 'reader')}"

    def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [program, "-plaintext", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    listed = grpcurl("-H", header, "-d", "{}", guarded.address, "rpc.Cassy/ListClusters")
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), dict)  # {} until a cluster is registered
    services = grpcurl("-H", header, guarded.address, "list")
    assert "rpc.Cassy" in services.stdout, services.stderr
    bare = grpcurl("-d", "{}", guarded.address, "rpc.Cassy/ListClusters")
    assert bare.returncode != 0 and "Unauthenticated" in bare.stdout + bare.stderr
    taking = grpcurl(
        "-H", header, "-d", '{"cluster_id": "x"}', guarded.address, "rpc.Cassy/TakeBackup"
    )
    assert "PermissionDenied" in taking.stdout + taking.stderr
    assert "TakeBackup needs the operator role" in taking.stdout + taking.stderr


def test_the_scheduler_with_a_reader_token_is_refused_naming_the_role(
    tmp_path: Path, guarded: ServerProcess, tokens: dict[str, Path], cluster1: LocalCluster
) -> None:
    with CassyClient(guarded.address, token=_token(tokens, "operator"), timeout_s=120) as client:
        cluster_id = client.register_cluster(cluster1.addresses[0]).cluster_id
    jobs = (
        f'[jobs.nightly]\ntype = "snapshot"\ncluster_id = "{cluster_id}"\nschedule = "0 1 * * *"\n'
    )
    config = write_config(tmp_path, guarded.address, jobs)
    text = config.read_text()
    config.write_text(
        text.replace(
            'call_deadline = "60s"\n', f'call_deadline = "60s"\ntoken_file = "{tokens["reader"]}"\n'
        )
    )
    taken = cli("backup", "snapshot", "--job", "nightly", "-c", str(config))
    assert taken.returncode != 0
    assert "TakeBackup needs the operator role" in taken.stdout + taken.stderr
    checked = cli("check", "-c", str(config))
    assert checked.returncode != 0
    assert "needs the operator role" in checked.stdout + checked.stderr

    config.write_text(
        text.replace(
            'call_deadline = "60s"\n',
            f'call_deadline = "60s"\ntoken_file = "{tokens["operator"]}"\n',
        )
    )
    checked = cli("check", "-c", str(config))
    assert "calls as identity 'operator-1' (role operator)" in checked.stdout, checked.stderr


# --- client certificates --------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory, ca: TestCa) -> Iterator[ServerProcess]:
    """A server that asks every client for a certificate and knows two of them by name."""
    work = tmp_path_factory.mktemp("mtls")
    cert, key = ca.issue("server", server=True)
    tls = f'\n[server.tls]\ncert_file = "{cert}"\nkey_file = "{key}"\nclient_ca_file = "{ca.pem}"\n'
    identities = (
        '\n[access.identities.alice]\nrole = "admin"\ncert_name = "alice.ops.example"\n'
        '\n[access.identities.bob]\nrole = "reader"\ncert_name = "bob"\n'
    )
    config = server_toml(work, [], extra=tls + identities)
    server = ServerProcess(config, work / "server.log").start()
    yield server
    server.stop()


def _client(server: ServerProcess, ca: TestCa, name: str, **issue: Any) -> CassyClient:
    cert, key = ca.issue(name, **issue)
    tls = TlsConfig(ca_file=ca.pem, cert_file=cert, key_file=key)
    return CassyClient(server.address, tls=tls, timeout_s=30)


def test_a_client_certificate_is_known_by_a_subject_alternative_name_or_its_name(
    mtls: ServerProcess, ca: TestCa
) -> None:
    with _client(mtls, ca, "alice", dns=("alice.ops.example",)) as alice:
        caller = alice.who_am_i()
        assert (caller.identity, caller.role, caller.access_control) == ("alice", "admin", True)
        assert alice.list_audit() is not None
    with _client(mtls, ca, "bob") as bob:
        assert bob.who_am_i().role == "reader"
        with pytest.raises(Exception, match="TakeBackup needs the operator role"):
            bob.take_backup("none", BackupType.NODE_SNAPSHOT)


def test_an_unknown_expired_or_foreign_certificate_is_refused(
    mtls: ServerProcess, ca: TestCa, tmp_path: Path
) -> None:
    with _client(mtls, ca, "carol") as carol, pytest.raises(CassyUnauthenticated, match="carol"):
        carol.list_clusters()
    with _client(mtls, ca, "dave", expired=True) as dave, pytest.raises(CassyUnavailable):
        dave.list_clusters()  # the handshake fails: gRPC reports the server unreachable
    other = TestCa(tmp_path / "other", name="other")
    cert, key = other.issue("alice", dns=("alice.ops.example",))
    tls = TlsConfig(ca_file=ca.pem, cert_file=cert, key_file=key)
    foreign = CassyClient(mtls.address, tls=tls, timeout_s=30)
    with foreign, pytest.raises(CassyUnavailable):
        foreign.list_clusters()
