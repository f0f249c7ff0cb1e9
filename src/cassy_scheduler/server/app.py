"""The gRPC process behind `cassy-scheduler serve`: rpc.Cassy, reflection and health, wired.

On start, rows a previous process left unfinished are recorded FAILED (it cannot finish them);
on SIGTERM or SIGINT it stops taking requests, gives running work a grace period, and records
what is left as FAILED, so no row stays STARTED.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cassy_scheduler.addresses import is_loopback
from cassy_scheduler.node.discovery import ClusterFacts, discover_cluster
from cassy_scheduler.node.executor import LocalExecutor, NodeExecutor
from cassy_scheduler.node.residentnodetool import ResidentExecutor
from cassy_scheduler.node.sshnode import SshExecutor, SshNodes
from cassy_scheduler.privatefiles import private_file
from cassy_scheduler.protocol.generated import (
    access_pb2_grpc,
    backups_pb2_grpc,
    cassy_pb2,
    cassy_pb2_grpc,
)
from cassy_scheduler.protocol.types import BUILTIN_SERVER_HEALTH_NAME
from cassy_scheduler.server.accessservicer import SERVICE_NAME as ACCESS_SERVICE
from cassy_scheduler.server.accessservicer import AccessServicer
from cassy_scheduler.server.auditlog import KeptAuditLog
from cassy_scheduler.server.backup import BackupOperations
from cassy_scheduler.server.backupsservicer import SERVICE_NAME as BACKUPS_SERVICE
from cassy_scheduler.server.backupsservicer import BackupsServicer
from cassy_scheduler.server.clustersnapshot import ClusterWideSetup
from cassy_scheduler.server.deletion import BackupDeletions
from cassy_scheduler.server.errors import RESTARTED
from cassy_scheduler.server.gate import AccessGate
from cassy_scheduler.server.hostallow import HostAllowList
from cassy_scheduler.server.metadata import SqliteMetadataStore
from cassy_scheduler.server.nodejobs import NodeAccess, shut_down
from cassy_scheduler.server.restore import RestoreOperations, node_directories
from cassy_scheduler.server.servicer import CassyServicer
from cassy_scheduler.server.settings import ServerSettings
from cassy_scheduler.storage import Storage, open_storage
from cassy_scheduler.storage.errors import StorageProbeError
from cassy_scheduler.storage.probe import probe

log = logging.getLogger(__name__)

SERVICE_NAME = cassy_pb2.DESCRIPTOR.services_by_name["Cassy"].full_name
#: The largest request accepted (gRPC answers RESOURCE_EXHAUSTED past it): rpc.Cassy's
#: requests are a few ids and at most one address per node, a few kilobytes for 1,000 nodes.
MAX_REQUEST_BYTES = 64 * 1024


@dataclass
class RunningServer:
    """A started server and what it needs to stop cleanly."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    operations: BackupOperations
    metadata: SqliteMetadataStore
    executor: NodeExecutor
    grace_s: float
    restores: RestoreOperations | None = None

    def stop(self) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(self.grace_s).wait()
        kinds = [self.operations.jobs]
        if self.restores is not None:
            kinds.append(self.restores.jobs)
        shut_down(kinds, self.executor, self.grace_s, on_stop=self.operations.interrupt_pauses)
        self.metadata.close()
        log.info("server stopped")


def _listen(server: grpc.Server, settings: ServerSettings) -> int:
    """Bind the listening port, with TLS when the settings carry certificates."""
    if settings.tls is None:
        return server.add_insecure_port(settings.address)
    tls = settings.tls
    credentials = grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=tls.client_ca_file.read_bytes() if tls.client_ca_file else None,
        require_client_auth=tls.client_ca_file is not None,
    )
    return server.add_secure_port(settings.address, credentials)


def start_server(settings: ServerSettings) -> RunningServer:
    """Open metadata and storage, recover from a previous crash, and start listening."""
    storage = open_storage(settings.storage)
    ssh = SshNodes(storage, settings.storage) if settings.uses_ssh else None
    local = _executor(settings)
    executor: NodeExecutor = local if ssh is None else SshExecutor(ssh, local)
    try:
        return _start_with(settings, storage, executor, ssh)
    except BaseException:
        executor.stop_running()  # a resident nodetool JVM must not outlive a failed start
        raise


def _start_with(
    settings: ServerSettings, storage: Storage, executor: NodeExecutor, ssh: SshNodes | None
) -> RunningServer:
    metadata = _open_metadata(settings)
    try:
        probe(storage)  # before listening: a refusal now, not at the first backup
    except StorageProbeError:
        metadata.close()
        raise
    writes_since = _write_clock(storage)  # before any write of this process
    operations, restores = _operations(settings, metadata, storage, executor, ssh)
    discover = partial(
        discover_cluster,
        executor=executor,
        endpoints=settings.endpoint,
        cql=settings.cql,
    )
    hosts = settings.access.cluster_hosts
    servicer = CassyServicer(
        metadata,
        operations,
        discover if hosts is None else partial(_discover_allowed, discover, hosts),
        restores=restores,
    )
    extensions = (
        BackupsServicer(BackupDeletions(metadata, storage)),
        AccessServicer(settings.access.credentials, metadata),
    )
    server, health_servicer = _grpc_server(settings, servicer, extensions, metadata)
    port = _listen(server, settings)
    if port == 0:
        metadata.close()
        raise OSError(f"cannot listen on {settings.address}: is another process using it?")
    server.start()
    for service in ("", SERVICE_NAME, BUILTIN_SERVER_HEALTH_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    _log_start(settings, port)
    # Only now that this process owns the port: a second server that cannot bind it must
    # not touch the temporary files of the first's uploads.
    if writes_since is not None:
        _remove_leftovers_in_background(storage, writes_since)
    return RunningServer(
        server,
        port,
        health_servicer,
        operations,
        metadata,
        executor,
        settings.shutdown_grace_seconds,
        restores,
    )


def _executor(settings: ServerSettings) -> LocalExecutor | ResidentExecutor:
    """nodetool a process per command, or (with [nodes.nodetool_jvm]) in one JVM started now,
    so a wrong classpath stops the start instead of the first backup."""
    if settings.nodetool_jvm is None:
        return LocalExecutor(settings.nodetool)
    resident = ResidentExecutor(settings.nodetool_jvm)
    resident.start()
    return resident


def _open_metadata(settings: ServerSettings) -> SqliteMetadataStore:
    """The metadata file (0600), with rows a previous process left running marked FAILED."""
    private_file(settings.metadata_path)
    metadata = SqliteMetadataStore(settings.metadata_path)
    recovered = metadata.fail_unfinished(RESTARTED)
    if recovered:
        log.warning("rows left unfinished by a previous process marked FAILED rows=%d", recovered)
    return metadata


def _operations(
    settings: ServerSettings,
    metadata: SqliteMetadataStore,
    storage: Storage,
    executor: NodeExecutor,
    ssh: SshNodes | None,
) -> tuple[BackupOperations, RestoreOperations]:
    nodes = NodeAccess(
        executor=executor,
        endpoint=settings.endpoint,
        cql=settings.cql,
        nodetool_timeout_s=settings.nodetool_timeout_seconds,
        ssh=ssh,
    )
    operations = BackupOperations(
        metadata,
        storage,
        nodes,
        metadata_file_name=settings.metadata_path.name,
        parallel_nodes=settings.parallel_nodes,
        cluster_wide=ClusterWideSetup.from_config(settings.applications),
    )
    restores = RestoreOperations(
        metadata,
        storage,
        nodes,
        node_directories(settings),
        parallel_nodes=settings.parallel_nodes,
    )
    return operations, restores


def _discover_allowed(
    discover: Callable[[str], ClusterFacts], hosts: HostAllowList, host: str
) -> ClusterFacts:
    """Discovery that contacts only a listed host, and registers only listed nodes."""
    hosts.check_host(host)
    facts = discover(host)
    hosts.check_nodes(facts.nodes)
    return facts


def _grpc_server(
    settings: ServerSettings,
    servicer: CassyServicer,
    extensions: tuple[BackupsServicer, AccessServicer],
    audit: SqliteMetadataStore,
) -> tuple[grpc.Server, health.HealthServicer]:
    """rpc.Cassy beside gRPC health and server reflection, as Scalar's Cassy serves them,
    and our own cassy_scheduler.v1 services; every call passes the access gate first."""
    server = grpc.server(
        ThreadPoolExecutor(settings.max_workers, thread_name_prefix="rpc"),
        interceptors=[
            AccessGate(settings.access.credentials, KeptAuditLog(audit, settings.access.audit_keep))
        ],
        options=[("grpc.max_receive_message_length", MAX_REQUEST_BYTES)],
    )
    cassy_pb2_grpc.add_CassyServicer_to_server(servicer, server)
    backups_pb2_grpc.add_BackupsServicer_to_server(extensions[0], server)
    access_pb2_grpc.add_AccessServicer_to_server(extensions[1], server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    services = (SERVICE_NAME, BACKUPS_SERVICE, ACCESS_SERVICE, health.SERVICE_NAME)
    reflection.enable_server_reflection((*services, reflection.SERVICE_NAME), server)
    return server, health_servicer


def _log_start(settings: ServerSettings, port: int) -> None:
    """Where it listens and stores, and the warnings an operator should act on."""
    log.info(
        "server listening address=%s:%d tls=%s storage=%s metadata=%s",
        settings.host,
        port,
        "on" if settings.tls else "off",
        settings.storage_uri,
        settings.metadata_path,
    )
    tls = settings.tls
    credentials = settings.access.credentials
    if credentials.enabled:
        log.info(
            "access control on identities=%d (by token %d, by certificate %d)",
            len({*credentials.tokens.values(), *credentials.certificates.values()}),
            len(credentials.tokens),
            len(credentials.certificates),
        )
    elif is_loopback(settings.host):
        pass  # only this host reaches it
    else:
        log.warning(
            "the API listens on %s without access control: anyone who reaches the port can "
            "register clusters, take backups, restore nodes and delete backups; listen on "
            "127.0.0.1, or give callers identities in [access.identities]%s",
            settings.host,
            " and configure [server.tls]" if tls is None else "",
        )
    for note in settings.deprecations:
        log.warning(
            "server config %s:%s: %s %s; %s",
            note.file,
            note.line,
            note.field,
            note.message,
            note.hint,
        )


def _write_clock(storage: Storage) -> float | None:
    try:
        return storage.write_clock()
    except OSError as exc:
        log.warning(
            "storage not writable at start, leftovers of earlier uploads kept storage=%s error=%s",
            storage.uri,
            exc.strerror or exc,
        )
        return None


def _remove_leftovers_in_background(storage: Storage, started: float) -> None:
    """Free what uploads cut short by a previous process left (their rows are FAILED now);
    in the background, since a large store takes a while to walk, and only what is older
    than this process, so new uploads are never touched."""

    def remove() -> None:
        try:
            left = storage.remove_leftovers(started)
        except Exception:
            log.exception("leftovers of interrupted uploads not removed storage=%s", storage.uri)
            return
        if left.count:
            log.warning(
                "removed what interrupted uploads had left files=%d bytes=%d storage=%s",
                left.count,
                left.bytes,
                storage.uri,
            )

    threading.Thread(target=remove, name="storage-leftovers", daemon=True).start()


def serve(settings: ServerSettings) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly."""
    running = start_server(settings)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping signal=%s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    running.stop()
    _exit_past_stuck_threads()


def _exit_past_stuck_threads(wait_s: float = 5.0) -> None:
    """Give backup and restore threads `wait_s` to end, then exit whatever they are doing.

    Their rows are recorded by now. Without this, the interpreter's exit would join every
    worker of every thread pool, daemon or not, and wait for one stuck in a call nothing can
    interrupt (a hung file system) until the service manager's SIGKILL.
    """
    deadline = time.monotonic() + wait_s
    for thread in _work_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = sorted(thread.name for thread in _work_threads())
    if stuck:
        log.warning("exiting with work still running threads=%s", ",".join(stuck))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _work_threads() -> list[threading.Thread]:
    return [
        thread
        for thread in threading.enumerate()
        if thread.is_alive() and thread.name.startswith(WORK_THREAD_PREFIXES)
    ]


#: Names of the threads that back up and restore (coordinators and their pools).
WORK_THREAD_PREFIXES = ("backup-", "restore", "upload", "pause", "unpause")
