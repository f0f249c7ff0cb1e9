"""Fixtures shared by every test: real local Cassandra clusters and CQL sessions on them.

The 1-node cluster listens on 127.0.0.1 and the 3-node cluster on 127.0.0.11-13, so both can
run at once; CASSY_TEST_IP_OFFSET=N moves them to 127.0.0.(1+N) and (11+N)-(13+N), so that two
test runs on one machine do not collide. Each is started the first time a test asks for it
and stopped, by PID, at the end of the session; a failing test's report carries the tail of
every node's log.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import WhiteListRoundRobinPolicy

from tools.localcluster import LocalCluster
from tools.localcluster.cluster import log_tail

_keyspace_numbers = itertools.count(1)
_IP_OFFSET = int(os.environ.get("CASSY_TEST_IP_OFFSET", "0"))


def _cluster_root(factory: pytest.TempPathFactory, name: str) -> Path:
    base = os.environ.get("CASSY_TEST_CLUSTER_ROOT")
    if base:
        return Path(base) / name
    return factory.mktemp(name, numbered=True)


@pytest.fixture(scope="session")
def cluster1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        _cluster_root(tmp_path_factory, "one-node"),
        1,
        cluster_name="one",
        first_octet=1 + _IP_OFFSET,
    )
    cluster.start_all(timeout=240)
    try:
        yield cluster
    finally:
        cluster.stop_all()


@pytest.fixture(scope="session")
def cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        _cluster_root(tmp_path_factory, "three-nodes"),
        3,
        cluster_name="three",
        first_octet=11 + _IP_OFFSET,
    )
    cluster.start_all(timeout=420)
    try:
        yield cluster
    finally:
        cluster.stop_all()


def cql_session(addresses: list[str], only: str | None = None) -> tuple[Cluster, Session]:
    """A driver session on the given nodes; `only` pins every request to one coordinator."""
    profile = ExecutionProfile(
        load_balancing_policy=WhiteListRoundRobinPolicy([only] if only else addresses),
        request_timeout=30,
    )
    driver = Cluster(
        contact_points=[only] if only else addresses,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=5,
        connect_timeout=20,
    )
    return driver, driver.connect()


@pytest.fixture(scope="session")
def session1(cluster1: LocalCluster) -> Iterator[Session]:
    driver, session = cql_session(cluster1.addresses)
    yield session
    driver.shutdown()


@pytest.fixture(scope="session")
def session3(cluster3: LocalCluster) -> Iterator[Session]:
    driver, session = cql_session(cluster3.addresses)
    yield session
    driver.shutdown()


def _fresh_keyspace(session: Session, replication_factor: int) -> Iterator[str]:
    name = f"ks{os.getpid()}_{next(_keyspace_numbers)}"
    session.execute(
        f"CREATE KEYSPACE {name} WITH replication = "
        f"{{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}"
    )
    yield name
    session.execute(f"DROP KEYSPACE IF EXISTS {name}")


@pytest.fixture
def keyspace1(session1: Session) -> Iterator[str]:
    """A new keyspace on the 1-node cluster, dropped after the test."""
    yield from _fresh_keyspace(session1, 1)


@pytest.fixture
def keyspace3(session3: Session) -> Iterator[str]:
    """A new keyspace with replication factor 3 on the 3-node cluster."""
    yield from _fresh_keyspace(session3, 3)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report: pytest.TestReport = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for value in funcargs.values():
            if isinstance(value, LocalCluster):
                for spec in value.specs:
                    report.sections.append((f"Cassandra log {spec.name}", log_tail(spec, 60)))
    return report
