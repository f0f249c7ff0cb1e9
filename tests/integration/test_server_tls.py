"""The server serves TLS (and mutual TLS) and the client connects with its CA and certificate."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cassy_scheduler.client import CassyClient, CassyUnavailable
from cassy_scheduler.tls import TlsConfig
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _signed(name: str, cwd: Path, extension: str) -> None:
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-subj",
        f"/CN={name}",
        "-out",
        f"{name}.csr",
        cwd=cwd,
    )
    (cwd / f"{name}.ext").write_text(extension)
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.pem",
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    work = tmp_path_factory.mktemp("pki")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-subj",
        "/CN=test-ca",
        "-days",
        "2",
        "-out",
        "ca.pem",
        cwd=work,
    )
    _signed("server", work, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _signed("client", work, "extendedKeyUsage=clientAuth\n")
    return work


def _server(work: Path, pki: Path, mutual: bool) -> ServerProcess:
    client_ca = f'client_ca_file = "{pki / "ca.pem"}"\n' if mutual else ""
    config = work / "server.toml"
    config.write_text(
        f"""[server]
host = "127.0.0.1"
port = 0

[server.tls]
cert_file = "{pki / "server.pem"}"
key_file = "{pki / "server.key"}"
{client_ca}
[metadata]
path = "metadata.db"

[storage]
uri = "{(work / "storage").as_uri()}"
"""
    )
    return ServerProcess(config, work / "server.log").start()


@pytest.fixture
def tls_server(tmp_path: Path, pki: Path) -> Iterator[ServerProcess]:
    server = _server(tmp_path, pki, mutual=False)
    yield server
    server.stop()


@pytest.fixture
def mtls_server(tmp_path: Path, pki: Path) -> Iterator[ServerProcess]:
    server = _server(tmp_path, pki, mutual=True)
    yield server
    server.stop()


def test_client_trusting_the_ca_talks_to_a_tls_server(tls_server: ServerProcess, pki: Path) -> None:
    with CassyClient(tls_server.address, tls=TlsConfig(ca_file=pki / "ca.pem")) as client:
        assert client.list_clusters() == []
    with (
        CassyClient(tls_server.address, timeout_s=5) as plain,
        pytest.raises(CassyUnavailable),
    ):
        plain.list_clusters()


def test_mutual_tls_needs_the_client_certificate(mtls_server: ServerProcess, pki: Path) -> None:
    with_cert = TlsConfig(
        ca_file=pki / "ca.pem", cert_file=pki / "client.pem", key_file=pki / "client.key"
    )
    with CassyClient(mtls_server.address, tls=with_cert) as client:
        assert client.list_clusters() == []
    without = TlsConfig(ca_file=pki / "ca.pem")
    with (
        CassyClient(mtls_server.address, tls=without, timeout_s=5) as client,
        pytest.raises(CassyUnavailable),
    ):
        client.list_clusters()
