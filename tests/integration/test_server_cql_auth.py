"""A node with PasswordAuthenticator: refused without credentials, with the fix named; with
[cassandra] credentials from the environment, registered and backed up by the real server.
With openssl at hand the node also takes CQL over TLS (optional, so plain text still works),
and the server verifies its certificate against [cassandra] ca_file."""

from __future__ import annotations

import os
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster

from cassy_scheduler.client import CassyClient, CassyError
from cassy_scheduler.node.discovery import (
    CqlAccess,
    CqlAuthenticationError,
    DiscoveryError,
    discover_cluster,
    live_keyspaces,
    node_data_dir,
)
from cassy_scheduler.protocol.types import BackupType
from tests.integration.test_node_discovery import endpoints_of
from tests.integration.test_node_nodetool import local_executor
from tests.integration.test_server_backup import finish_all, node_prefix
from tests.integration.test_server_tls import _openssl, _signed
from tests.serverproc import ServerProcess, server_toml
from tools.localcluster import LocalCluster

pytestmark = pytest.mark.cassandra

_FIRST_OCTET = 50 + int(os.environ.get("CASSY_TEST_IP_OFFSET", "0"))
PASSWORD_VARIABLE = "CASSY_TEST_CQL_PASSWORD"
CREDENTIALS = f'\n[cassandra]\nusername = "cassandra"\npassword_env = "{PASSWORD_VARIABLE}"\n'


HAS_OPENSSL = shutil.which("openssl") is not None
needs_openssl = pytest.mark.skipif(not HAS_OPENSSL, reason="needs openssl")


def _pki(work: Path, address: str) -> Path:
    """A CA, the node's certificate for `address` with its key in one PEM, and another CA."""
    for ca in ("other-ca", "ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key",
            "-subj", f"/CN={ca}", "-days", "2", "-out", f"{ca}.pem", cwd=work,
        )  # fmt: skip
    _signed("node", work, f"subjectAltName=IP:{address}\nextendedKeyUsage=serverAuth\n")
    bundle = work / "node-bundle.pem"
    bundle.write_text((work / "node.key").read_text() + (work / "node.pem").read_text())
    return bundle


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One node that lets in only the default superuser, cassandra/cassandra."""
    root = tmp_path_factory.mktemp("auth-node")
    address = f"127.0.0.{_FIRST_OCTET}"
    pki = root / "pki"
    pki.mkdir()
    cluster = LocalCluster(
        root / "cluster",
        1,
        cluster_name="authed",
        first_octet=_FIRST_OCTET,
        authenticator="PasswordAuthenticator",
        client_tls_pem=_pki(pki, address) if HAS_OPENSSL else None,
    )
    try:
        cluster.start_all(timeout=240)
        yield cluster
    finally:
        cluster.stop_all()


def superuser(ssl_context: ssl.SSLContext | None = None) -> CqlAccess:
    return CqlAccess(
        auth_provider=PlainTextAuthProvider("cassandra", "cassandra"), ssl_context=ssl_context
    )


def pki_of(cluster: LocalCluster) -> Path:
    assert cluster.client_tls_pem is not None
    return cluster.client_tls_pem.parent


def test_no_credentials_is_an_authentication_error(auth_cluster: LocalCluster) -> None:
    address = auth_cluster.addresses[0]
    with pytest.raises(CqlAuthenticationError, match="authentication required") as caught:
        discover_cluster(address, local_executor(), endpoints_of(auth_cluster), timeout_s=30)
    assert address in str(caught.value)
    assert "[cassandra] username and password_env" in str(caught.value)


def test_a_wrong_password_is_an_authentication_error(auth_cluster: LocalCluster) -> None:
    wrong = CqlAccess(auth_provider=PlainTextAuthProvider("cassandra", "not-the-password"))
    with pytest.raises(CqlAuthenticationError, match="authentication failed"):
        node_data_dir(auth_cluster.addresses[0], wrong, 30)


def test_discovery_logs_in(auth_cluster: LocalCluster) -> None:
    spec = auth_cluster.spec(1)
    facts = discover_cluster(
        spec.address, local_executor(), endpoints_of(auth_cluster), superuser(), timeout_s=30
    )
    assert facts.nodes == (spec.address,)
    assert facts.data_dir == str(spec.data_dir)
    assert "system_auth" in live_keyspaces(spec.address, superuser(), 30)


@needs_openssl
def test_discovery_over_tls_verifies_the_node(auth_cluster: LocalCluster) -> None:
    address = auth_cluster.addresses[0]
    trusted = ssl.create_default_context(cafile=str(pki_of(auth_cluster) / "ca.pem"))
    assert "system_auth" in live_keyspaces(address, superuser(trusted), 30)
    stranger = ssl.create_default_context(cafile=str(pki_of(auth_cluster) / "other-ca.pem"))
    with pytest.raises(DiscoveryError, match=r"TLS is on \(\[cassandra\] ca_file\)") as caught:
        live_keyspaces(address, superuser(stranger), 30)
    assert not isinstance(caught.value, CqlAuthenticationError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)


def test_server_without_credentials_names_the_fix(
    auth_cluster: LocalCluster, tmp_path: Path
) -> None:
    config = server_toml(tmp_path, [auth_cluster])
    server = ServerProcess(config, tmp_path / "server.log").start()
    try:
        with CassyClient(server.address, timeout_s=120) as client:
            with pytest.raises(CassyError) as caught:
                client.register_cluster(auth_cluster.addresses[0])
            assert client.list_clusters() == []
    finally:
        server.stop()
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert auth_cluster.addresses[0] in caught.value.details
    assert "authentication required" in caught.value.details
    assert f"set [cassandra] username and password_env (or password_file) in {config}" in (
        caught.value.details
    )


def test_server_refuses_to_start_without_the_password(
    auth_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_VARIABLE, raising=False)
    config = server_toml(tmp_path, [auth_cluster], extra=CREDENTIALS)
    server = ServerProcess(config, tmp_path / "server.log")
    with pytest.raises(RuntimeError, match=r"server exited \(2\)"):
        server.start()
    assert f"{config}:" in server.output()
    assert f"cassandra.password_env: environment variable {PASSWORD_VARIABLE}" in server.output()


def test_server_with_credentials_registers_and_backs_up(
    auth_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = auth_cluster.addresses[0]
    driver = Cluster(
        [address],
        auth_provider=PlainTextAuthProvider("cassandra", "cassandra"),
        protocol_version=5,
    )
    session = driver.connect()
    session.execute(
        "CREATE KEYSPACE IF NOT EXISTS guarded WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    session.execute("CREATE TABLE IF NOT EXISTS guarded.kv (k int PRIMARY KEY, v text)")
    for k in range(50):
        session.execute("INSERT INTO guarded.kv (k, v) VALUES (%s, %s)", (k, f"v{k}"))
    driver.shutdown()

    monkeypatch.setenv(PASSWORD_VARIABLE, "cassandra")
    tls = f'ca_file = "{pki_of(auth_cluster) / "ca.pem"}"\n' if HAS_OPENSSL else ""
    config = server_toml(tmp_path, [auth_cluster], extra=CREDENTIALS + tls)
    server = ServerProcess(config, tmp_path / "server.log").start()
    try:
        with CassyClient(server.address, timeout_s=120) as client:
            cluster = client.register_cluster(address)
            assert cluster.cluster_name == "authed"
            assert "guarded" in cluster.keyspaces
            ack = client.take_backup(cluster.cluster_id, BackupType.NODE_SNAPSHOT)
            assert finish_all(client, ack) == {address: "COMPLETED"}
    finally:
        server.stop()
    stored = [p for p in (node_prefix(server, ack, address) / "guarded").rglob("*.db")]
    assert stored, "no SSTable of the guarded keyspace was uploaded"
    assert "schema not readable" not in server.output()  # live_keyspaces logged in too
