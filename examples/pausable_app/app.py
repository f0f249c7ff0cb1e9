"""Starting and stopping the example application: a Cassandra session, the writer, rpc.Admin."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

from cassy_scheduler.protocol.generated import cassy_pb2_grpc
from examples.pausable_app.admin import AdminService
from examples.pausable_app.writer import PairWriter, WriterSettings, create_table_cql

log = logging.getLogger(__name__)


class AppStartError(Exception):
    """The application could not start; the message says what to change."""


@dataclass(frozen=True)
class AppConfig:
    """Where the application listens and writes, and the faults tests may ask for."""

    listen: str
    cassandra: tuple[str, ...]
    writer: WriterSettings
    replication_factor: int = 3
    consistency: str = "QUORUM"
    pause_delay_s: float = 0.0
    refuse_pause: bool = False


@dataclass
class RunningApp:
    """A started application; `stop` finishes outstanding writes first."""

    server: grpc.Server
    writer: PairWriter
    cluster: Cluster

    def stop(self) -> None:
        self.server.stop(5).wait()
        self.writer.stop()
        self.cluster.shutdown()
        log.info("stopped stats=%s", self.writer.stats())


def start_app(config: AppConfig) -> RunningApp:
    """Connect, create the table if needed, start writing and serve rpc.Admin."""
    level = ConsistencyLevel.name_to_value.get(config.consistency.upper())
    if level is None:
        raise AppStartError(f"unknown consistency {config.consistency!r}: use ONE, QUORUM, ALL")
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        consistency_level=level,
        request_timeout=20,
    )
    cluster = Cluster(
        contact_points=list(config.cassandra),
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=5,
    )
    session = cluster.connect()
    keyspace = config.writer.keyspace
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
        f"{{'class': 'SimpleStrategy', 'replication_factor': {config.replication_factor}}}"
    )
    session.execute(create_table_cql(keyspace, config.writer.table))
    writer = PairWriter(session, config.writer)
    server = grpc.server(ThreadPoolExecutor(8, thread_name_prefix="admin"))
    cassy_pb2_grpc.add_AdminServicer_to_server(
        AdminService(writer, pause_delay_s=config.pause_delay_s, refuse_pause=config.refuse_pause),
        server,
    )
    if server.add_insecure_port(config.listen) == 0:
        cluster.shutdown()
        raise AppStartError(f"cannot listen on {config.listen}: is another process using it?")
    writer.start()
    server.start()
    log.info("admin listening address=%s keyspace=%s", config.listen, keyspace)
    return RunningApp(server, writer, cluster)
