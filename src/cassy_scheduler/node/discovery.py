"""What RegisterCluster learns about a cluster: name, nodes, keyspaces and data directory.

CQL answers the facts (system tables and the node-local `system_views.settings`); nodetool
answers whether the ring is healthy, because only the ring knows which nodes are Up and
Normal right now. A cluster is registered only when both agree and every node is UN.

How CQL is opened (port, credentials, TLS) is one `CqlAccess`, built from the server config;
the default is Cassandra's own (no authentication, plain text).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cassandra import AuthenticationFailed, DriverException
from cassandra.auth import AuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.policies import WhiteListRoundRobinPolicy

from cassy_scheduler.node.executor import (
    DiscoveryError,
    NodeEndpoint,
    NodeError,
    NodeExecutor,
    NodeUnavailable,
)
from cassy_scheduler.node.nodetool import Nodetool

_log = logging.getLogger(__name__)

DEFAULT_CQL_PORT = 9042
#: Keyspaces that exist only in memory; there are no files to back up or restore.
VIRTUAL_KEYSPACES = frozenset({"system_views", "system_virtual_schema"})
_PROTOCOL_VERSION = 5


@dataclass(frozen=True)
class ClusterFacts:
    """A cluster as registered: every node's address (sorted), the on-disk keyspaces, and
    the contacted node's first data directory."""

    cluster_name: str
    nodes: tuple[str, ...]
    keyspaces: tuple[str, ...]
    data_dir: str


@dataclass(frozen=True)
class CqlAccess:
    """How the server opens CQL to a node: one value, so every caller connects the same way.

    `auth_provider` answers PasswordAuthenticator; `ssl_context` (verifying the node's
    certificate) turns TLS on; `connect_timeout_s` None keeps min(request timeout, 10 s).
    `config` names where credentials are set, for the message when a node refuses them.
    """

    port: int = DEFAULT_CQL_PORT
    auth_provider: AuthProvider | None = None
    ssl_context: ssl.SSLContext | None = None
    connect_timeout_s: float | None = None
    config: str = "the server config"


class CqlAuthenticationError(DiscoveryError):
    """The node wants credentials the server lacks, or refused those it sent."""


def _auth_failure(exc: NoHostAvailable, host: str, cql: CqlAccess) -> DiscoveryError | None:
    """The refusal worded with its fix, when the driver's errors say authentication failed."""
    failures = [e for e in exc.errors.values() if isinstance(e, AuthenticationFailed)]
    if not failures:
        return None
    what = "failed" if cql.auth_provider is not None else "required"
    return CqlAuthenticationError(
        f"CQL authentication {what} at {host}:{cql.port} ({failures[0]}): set [cassandra] "
        f"username and password_env (or password_file) in {cql.config} to a role that may "
        "log in and read the system keyspaces, then restart the server"
    )


def _unreachable(host: str, cql: CqlAccess, exc: Exception) -> DiscoveryError:
    tls = (
        "; TLS is on ([cassandra] ca_file): check that the node serves client encryption and "
        "that its certificate is signed by that CA and names this address"
        if cql.ssl_context is not None
        else ""
    )
    return DiscoveryError(
        f"cannot reach Cassandra over CQL at {host}:{cql.port} ({exc}); check that the "
        "node runs, that its native transport listens on that address and port "
        "(rpc_address, native_transport_port) and that no firewall is in the way" + tls
    )


@contextmanager
def _cql(host: str, cql: CqlAccess, timeout_s: float) -> Iterator[Any]:
    """A driver session whose every request goes to `host`; the driver always shuts down.

    Pinning matters: `system.local` and `system_views` describe only the coordinator.
    """
    try:  # the policy resolves the name now: a name no resolver knows fails here
        policy = WhiteListRoundRobinPolicy([host])
    except (OSError, UnicodeError) as exc:
        raise _unreachable(host, cql, exc) from exc
    profile = ExecutionProfile(load_balancing_policy=policy, request_timeout=timeout_s)
    connect_timeout = cql.connect_timeout_s
    driver = Cluster(
        contact_points=[host],
        port=cql.port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=_PROTOCOL_VERSION,
        connect_timeout=min(timeout_s, 10.0) if connect_timeout is None else connect_timeout,
        control_connection_timeout=timeout_s,
        schema_metadata_enabled=False,
        token_metadata_enabled=False,
        auth_provider=cql.auth_provider,
        ssl_context=cql.ssl_context,
    )
    try:
        try:
            session = driver.connect()
        except NoHostAvailable as exc:
            raise (_auth_failure(exc, host, cql) or _unreachable(host, cql, exc)) from exc
        except (DriverException, OSError) as exc:
            raise _unreachable(host, cql, exc) from exc
        yield session
    except (NoHostAvailable, DriverException) as exc:
        raise DiscoveryError(
            f"a CQL query to {host}:{cql.port} failed ({exc}); check the node's health and retry"
        ) from exc
    finally:
        driver.shutdown()


def parse_directory_list(value: str) -> list[str]:
    """'[/a, /b]' (how system_views.settings shows a list) to ['/a', '/b']."""
    inner = value.strip().removeprefix("[").removesuffix("]")
    return [item.strip() for item in inner.split(",") if item.strip()]


def _first_data_dir(session: Any, host: str) -> str:
    row = session.execute(
        "SELECT value FROM system_views.settings WHERE name = 'data_file_directories'"
    ).one()
    directories = parse_directory_list(row.value) if row is not None and row.value else []
    if not directories:
        raise DiscoveryError(
            f"{host} reports no data_file_directories in system_views.settings; check its "
            "cassandra.yaml, or configure the node's data directory explicitly"
        )
    return directories[0]


def _local_address(row: Any) -> str:
    for value in (row.broadcast_address, row.listen_address, row.rpc_address):
        if value:
            return str(value)
    raise DiscoveryError("system.local names no address for the contacted node")


def _peer_addresses(session: Any) -> list[str]:
    try:
        rows = session.execute("SELECT peer FROM system.peers_v2")
    except DriverException:  # servers before 4.0 have only system.peers
        rows = session.execute("SELECT peer FROM system.peers")
    return [str(row.peer) for row in rows]


def _ring_problems(ring: dict[str, str], cql_nodes: set[str]) -> dict[str, str]:
    problems = {address: code for address, code in ring.items() if code != "UN"}
    for address in cql_nodes - ring.keys():
        problems[address] = "missing from nodetool status"
    for address in ring.keys() - cql_nodes:
        problems.setdefault(address, f"{ring[address]}, missing from system.peers")
    return problems


def discover_cluster(
    cassandra_host: str,
    executor: NodeExecutor,
    endpoints: Callable[[str], NodeEndpoint],
    cql: CqlAccess = CqlAccess(),
    timeout_s: float = 30,
) -> ClusterFacts:
    """Read a cluster's facts through `cassandra_host`, refusing a ring that is not all UN.

    `endpoints` maps a node address to how nodetool reaches it; it is asked for the contacted
    node's own address (from system.local), which is how the ring names it.
    """
    if not cassandra_host:
        raise DiscoveryError("no Cassandra host given: name one node of the cluster")
    with _cql(cassandra_host, cql, timeout_s) as session:
        local = session.execute(
            "SELECT cluster_name, broadcast_address, listen_address, rpc_address "
            "FROM system.local WHERE key = 'local'"
        ).one()
        if local is None:
            raise DiscoveryError(f"{cassandra_host} returned no row from system.local")
        address = _local_address(local)
        nodes = {address, *_peer_addresses(session)}
        keyspaces = {
            str(row.keyspace_name)
            for row in session.execute("SELECT keyspace_name FROM system_schema.keyspaces")
        } - VIRTUAL_KEYSPACES
        data_dir = _first_data_dir(session, cassandra_host)
    try:
        ring = Nodetool(executor, endpoints(address), timeout_s=max(timeout_s, 60.0)).status()
    except NodeError as exc:
        raise DiscoveryError(
            f"cannot read the ring of {address} with nodetool status: {exc}; check that JMX "
            "of that node is reachable with the configured host and port"
        ) from exc
    problems = _ring_problems({node.address: node.code for node in ring}, nodes)
    if problems:
        raise NodeUnavailable(problems)
    facts = ClusterFacts(
        cluster_name=str(local.cluster_name),
        nodes=tuple(sorted(nodes)),
        keyspaces=tuple(sorted(keyspaces)),
        data_dir=data_dir,
    )
    _log.info(
        "cluster discovered host=%s cluster=%s nodes=%d keyspaces=%d data_dir=%s",
        cassandra_host,
        facts.cluster_name,
        len(facts.nodes),
        len(facts.keyspaces),
        facts.data_dir,
    )
    return facts


def node_data_dir(address: str, cql: CqlAccess = CqlAccess(), timeout_s: float = 30) -> Path:
    """The first data directory of the node at `address`, as that node itself reports it.

    Nodes may keep data in different places (always so when several share a host), so each
    node is asked separately when its endpoint does not configure a data dir.
    """
    with _cql(address, cql, timeout_s) as session:
        return Path(_first_data_dir(session, address))


def live_keyspaces(address: str, cql: CqlAccess = CqlAccess(), timeout_s: float = 30) -> set[str]:
    """The on-disk keyspaces the node's schema has now (a registration can predate a DROP)."""
    with _cql(address, cql, timeout_s) as session:
        rows = session.execute("SELECT keyspace_name FROM system_schema.keyspaces")
        return {str(row.keyspace_name) for row in rows} - VIRTUAL_KEYSPACES


def unanswering_nodes(
    addresses: Sequence[str], cql: CqlAccess = CqlAccess(), timeout_s: float = 10
) -> dict[str, str]:
    """The nodes not live for a backup now, each with why; asked all at once over CQL: a
    node that answers and has finished joining (`bootstrapped`) is live. Every later step of
    a backup talks to each node itself, and asking costs a query, not a nodetool JVM. A
    node that refuses this server's credentials answers all the same (it is up)."""

    def ask(address: str) -> str | None:
        try:
            with _cql(address, cql, timeout_s) as session:
                row = session.execute("SELECT bootstrapped FROM system.local").one()
        except CqlAuthenticationError:
            return None
        except DiscoveryError as exc:
            return str(exc)
        state = None if row is None else row.bootstrapped
        if state not in (None, "COMPLETED"):
            return f"still joining the cluster (bootstrapped: {state})"
        return None

    if not addresses:
        return {}
    with ThreadPoolExecutor(min(len(addresses), 16), thread_name_prefix="cql-probe") as pool:
        answers = list(pool.map(ask, addresses))
    return {a: why for a, why in zip(addresses, answers, strict=True) if why is not None}
