"""Fixtures for tests that run the built-in server as a real process against real Cassandra.

The shared servers run nodetool in one resident JVM, as a production server would for speed;
servers a test starts itself run a `nodetool` process per command unless it asks otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from cassy_scheduler.client import CassyClient
from tests.serverproc import ServerProcess, server_toml
from tools.localcluster import LocalCluster
from tools.peers.objectservers import (
    AZURITE_KEY,
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    ObjectServer,
    s3_create_bucket,
    start_moto,
)

#: The variables servers under test read their object-store keys from, as the docs tell
#: operators to (the `s3_credentials` fixture sets them).
CREDENTIALS = {
    "CASSY_TEST_S3_KEY": S3_ACCESS_KEY,
    "CASSY_TEST_S3_SECRET": S3_SECRET_KEY,
    "CASSY_TEST_AZ_KEY": AZURITE_KEY,
}


def _running_server(
    factory: pytest.TempPathFactory, name: str, clusters: list[LocalCluster]
) -> Iterator[ServerProcess]:
    work = factory.mktemp(name)
    config = server_toml(work, clusters, resident=True)
    server = ServerProcess(config, work / "server.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def server1(
    tmp_path_factory: pytest.TempPathFactory, cluster1: LocalCluster
) -> Iterator[ServerProcess]:
    """A server process for the 1-node cluster."""
    yield from _running_server(tmp_path_factory, "server1", [cluster1])


@pytest.fixture(scope="session")
def server3(
    tmp_path_factory: pytest.TempPathFactory, cluster3: LocalCluster
) -> Iterator[ServerProcess]:
    """A server process for the 3-node cluster."""
    yield from _running_server(tmp_path_factory, "server3", [cluster3])


@pytest.fixture
def client1(server1: ServerProcess) -> Iterator[CassyClient]:
    with CassyClient(server1.address, timeout_s=120) as client:
        yield client


@pytest.fixture
def client3(server3: ServerProcess) -> Iterator[CassyClient]:
    with CassyClient(server3.address, timeout_s=120) as client:
        yield client


@pytest.fixture(scope="module")
def s3_credentials() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectServer]:
    """moto's S3 server with a "backups" bucket, for one module."""
    server = start_moto(tmp_path_factory.mktemp("moto"), sys.executable)
    try:
        s3_create_bucket(server, "backups")
        yield server
    finally:
        server.stop()
