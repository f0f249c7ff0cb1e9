"""The built-in server's config file (server.toml): where to listen, keep metadata and store
backups, and how to reach each Cassandra node.

    [server]
    host = "127.0.0.1"
    port = 20051

    [metadata]
    path = "/var/lib/cassy-scheduler/metadata.db"

    [storage]
    uri = "file:///var/backups/cassandra"   # or s3://BUCKET/PREFIX, az://CONTAINER/PREFIX,
                                            # gs://BUCKET/PREFIX (docs/storage.md: every key)

    [nodes]
    executor = "local"
    nodetool = ["nodetool"]
    jmx_port = 7199

    [nodes.nodetool_jvm]          # optional: one long-lived JVM runs every nodetool command
    classpath = "/usr/share/cassandra/lib/*:/usr/share/cassandra/apache-cassandra.jar"
    java = "java"                 # a JDK's java, 11 or newer (it compiles a small helper)

    [nodes.ssh]                   # optional: nodes on other hosts (executor = "ssh", or a
    user = "cassy"                # host's own [nodes.hosts."IP".ssh]); docs/ssh.md
    key_file = "/etc/cassy-scheduler/id_ed25519"
    known_hosts = "/etc/cassy-scheduler/known_hosts"
    sudo_user = "cassandra"       # optional: the node program runs as Cassandra's user

    [nodes.hosts."10.0.0.1"]      # optional, per node
    jmx_host = "127.0.0.1"
    jmx_port = 7199
    data_dir = "/var/lib/cassandra/data"
    commitlog_dir = "/var/lib/cassandra/commitlog"   # restores: default beside data_dir
    hints_dir = "/var/lib/cassandra/hints"
    saved_caches_dir = "/var/lib/cassandra/saved_caches"
    restore_staging_dir = "/var/lib/cassandra"       # same filesystem as data_dir

    [cassandra]                   # optional; CQL credentials and TLS (default: neither)
    username = "cassy_backup"
    password_env = "CASSY_CQL_PASSWORD"              # or password_file; never inline
    ca_file = "/etc/cassy-scheduler/cassandra-ca.pem"   # turns TLS on
    cert_file = "/etc/cassy-scheduler/cql-client.pem"   # optional client certificate
    key_file = "/etc/cassy-scheduler/cql-client.key"
    connect_timeout = "10s"

    [applications]                # optional; cluster-wide snapshots (backup_type 1) need it
    srv_name = "_cassy-admin._tcp.app.example.com"   # or: instances = ["10.0.0.5:20052"]
    dns_server = "127.0.0.1:5353"                    # optional; else /etc/resolv.conf's
    pause_timeout = "60s"
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from cassy_scheduler.configfile.errors import ConfigError, ConfigProblem
from cassy_scheduler.configfile.locate import line_of
from cassy_scheduler.node.discovery import CqlAccess
from cassy_scheduler.node.executor import NodeEndpoint
from cassy_scheduler.node.nodetooljvm import NodetoolJvm
from cassy_scheduler.node.sshtarget import SshTarget
from cassy_scheduler.server.accesssettings import AccessSettings, access_settings
from cassy_scheduler.server.applications import AppInstance, ApplicationsConfig
from cassy_scheduler.server.cqlsettings import cql_access
from cassy_scheduler.server.dns import DnsServer
from cassy_scheduler.server.settingsfile import (
    DEFAULT_PORT,
    ApplicationsTable,
    NodesTable,
    NodetoolJvmTable,
    TlsTable,
    read_file,
)
from cassy_scheduler.server.sshsettings import ssh_target
from cassy_scheduler.server.storagesettings import storage_options
from cassy_scheduler.storage.options import StorageOptions

__all__ = ["DEFAULT_PORT", "HostPaths", "ServerSettings", "ServerTls", "load_server_settings"]


@dataclass(frozen=True)
class ServerTls:
    """PEM files for serving TLS; with client_ca, clients must present a certificate."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


@dataclass(frozen=True)
class HostPaths:
    """A node's directories besides the data dir, as configured; None means the default
    (beside the data dir, as Cassandra lays them out). Restores need them."""

    commitlog_dir: Path | None = None
    hints_dir: Path | None = None
    saved_caches_dir: Path | None = None
    restore_staging_dir: Path | None = None


@dataclass(frozen=True)
class ServerSettings:
    """Everything `cassy-scheduler serve` needs, checked and with relative paths resolved."""

    host: str
    port: int
    max_workers: int
    shutdown_grace_seconds: float
    metadata_path: Path
    storage: StorageOptions
    nodetool: tuple[str, ...]
    jmx_port: int
    cql: CqlAccess
    nodetool_timeout_seconds: float
    parallel_nodes: int
    hosts: MappingProxyType[str, NodeEndpoint]
    tls: ServerTls | None = None
    host_paths: MappingProxyType[str, HostPaths] = field(
        default_factory=lambda: MappingProxyType({})
    )
    applications: ApplicationsConfig | None = None  # None: no cluster-wide snapshots
    nodetool_jvm: NodetoolJvm | None = None  # None: a `nodetool` process per command
    ssh: SshTarget | None = None  # set: nodes without their own table are reached over SSH
    deprecations: tuple[ConfigProblem, ...] = ()  # keys still read, with what to write now
    access: AccessSettings = field(default_factory=AccessSettings)  # default: no identities

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def storage_uri(self) -> str:
        return self.storage.uri

    @property
    def cql_port(self) -> int:
        return self.cql.port

    def endpoint(self, address: str) -> NodeEndpoint:
        """How to reach the node at `address`: its own table, else the defaults."""
        configured = self.hosts.get(address)
        if configured is not None:
            return configured
        ssh = None if self.ssh is None else replace(self.ssh, host=self.ssh.host or address)
        return NodeEndpoint(address=address, jmx_host=address, jmx_port=self.jmx_port, ssh=ssh)

    @property
    def uses_ssh(self) -> bool:
        return self.ssh is not None or any(e.ssh is not None for e in self.hosts.values())

    def paths(self, address: str) -> HostPaths:
        """The node's configured directories besides the data dir (defaults when none)."""
        return self.host_paths.get(address, HostPaths())


def load_server_settings(path: Path) -> ServerSettings:
    """Read server.toml; every problem names the file, the line and the key."""
    parsed = read_file(path)
    file, lines, tables = str(path), parsed.lines, parsed.tables
    hosts, host_paths, problems = _hosts(tables.nodes, path.parent, file, lines)
    ssh, ssh_problems = ssh_target(tables.nodes, None, path.parent, file, lines)
    problems += ssh_problems
    storage, storage_problems = storage_options(tables.storage, path, lines)
    problems += storage_problems
    applications, application_problems = _applications(tables.applications, lines, file)
    problems += application_problems
    cql, cql_problems = cql_access(tables.nodes, tables.cassandra, path, lines)
    problems += cql_problems
    problems += _rates_without_a_store(storage, hosts, ssh, file, lines)
    access, access_problems = access_settings(tables.access, tables.server, path, lines)
    problems += access_problems
    if problems:
        raise ConfigError(problems)
    base = path.parent
    return ServerSettings(
        host=tables.server.host,
        port=tables.server.port,
        max_workers=tables.server.max_workers,
        shutdown_grace_seconds=tables.server.shutdown_grace.total_seconds(),
        metadata_path=(base / tables.metadata.path).resolve(),
        storage=storage,
        nodetool=tuple(tables.nodes.nodetool),
        nodetool_jvm=_nodetool_jvm(tables.nodes.nodetool_jvm, base),
        jmx_port=tables.nodes.jmx_port,
        cql=cql,
        nodetool_timeout_seconds=tables.nodes.nodetool_timeout.total_seconds(),
        parallel_nodes=tables.nodes.parallel_nodes,
        hosts=MappingProxyType(hosts),
        host_paths=MappingProxyType(host_paths),
        tls=_tls(tables.server.tls, base, lines, file),
        applications=applications,
        ssh=ssh,
        deprecations=tuple(parsed.notes),
        access=access,
    )


def _nodetool_jvm(table: NodetoolJvmTable | None, base: Path) -> NodetoolJvm | None:
    """The table's terms; relative classpath entries are relative to the config file, as the
    metadata path is (the JVM's own working directory is the server's)."""
    if table is None:
        return None
    entries = [
        entry if not entry or Path(entry).is_absolute() else str(base / entry)
        for entry in table.classpath.split(os.pathsep)
    ]
    return NodetoolJvm(
        classpath=os.pathsep.join(entries), java=table.java, options=tuple(table.options)
    )


def _hosts(
    nodes: NodesTable, base: Path, file: str, lines: dict[tuple[str, ...], int]
) -> tuple[dict[str, NodeEndpoint], dict[str, HostPaths], list[ConfigProblem]]:
    """Each [nodes.hosts."<ip>"] table: how to reach the node and where its directories are."""
    hosts: dict[str, NodeEndpoint] = {}
    host_paths: dict[str, HostPaths] = {}
    problems = []
    for address, table in nodes.hosts.items():
        try:
            ipaddress.ip_address(address)
        except ValueError:
            problems.append(
                ConfigProblem(
                    file,
                    line_of(lines, ("nodes", "hosts", address)),
                    f"nodes.hosts.{address}",
                    "not an IP address",
                    'name each node by the address Cassandra reports: [nodes.hosts."10.0.0.1"]',
                )
            )
            continue
        ssh, ssh_problems = ssh_target(nodes, address, base, file, lines)
        problems += ssh_problems
        hosts[address] = NodeEndpoint(
            address=address,
            jmx_host=table.jmx_host or address,
            jmx_port=table.jmx_port or nodes.jmx_port,
            data_dir=Path(table.data_dir) if table.data_dir else None,
            ssh=ssh,
        )
        directories = (
            table.commitlog_dir,
            table.hints_dir,
            table.saved_caches_dir,
            table.restore_staging_dir,
        )
        host_paths[address] = HostPaths(*(Path(value) if value else None for value in directories))
    return hosts, host_paths, problems


def _rates_without_a_store(
    storage: StorageOptions,
    hosts: dict[str, NodeEndpoint],
    ssh: SshTarget | None,
    file: str,
    lines: dict[tuple[str, ...], int],
) -> list[ConfigProblem]:
    """A node's max_bandwidth paces object-store transfers; with file:// it would do nothing."""
    if storage.scheme != "file":
        return []
    places: list[tuple[str, ...]] = (
        [("nodes", "ssh")] if ssh is not None and ssh.max_bandwidth is not None else []
    )
    places += [
        ("nodes", "hosts", address, "ssh")
        for address, endpoint in hosts.items()
        if endpoint.ssh is not None
        and endpoint.ssh.max_bandwidth is not None
        and (ssh is None or endpoint.ssh.max_bandwidth != ssh.max_bandwidth)
    ]
    return [
        ConfigProblem(
            file,
            line_of(lines, (*where, "max_bandwidth")),
            ".".join((*where, "max_bandwidth")),
            "paces object storage only, and [storage] is a directory",
            "remove it",
        )
        for where in places
    ]


def _tls(
    table: TlsTable | None, base: Path, lines: dict[tuple[str, ...], int], file: str
) -> ServerTls | None:
    """TLS files resolved against the config's directory; each must exist."""
    if table is None:
        return None
    paths = {
        "cert_file": table.cert_file,
        "key_file": table.key_file,
        "client_ca_file": table.client_ca_file,
    }
    resolved = {key: (base / value).resolve() for key, value in paths.items() if value}
    missing = [
        ConfigProblem(
            file,
            line_of(lines, ("server", "tls", key)),
            f"server.tls.{key}",
            f"{pem} is not a readable file",
            "give the path of a PEM file (relative to this config file)",
        )
        for key, pem in resolved.items()
        if not pem.is_file()
    ]
    if missing:
        raise ConfigError(missing)
    return ServerTls(resolved["cert_file"], resolved["key_file"], resolved.get("client_ca_file"))


def _applications(
    table: ApplicationsTable | None, lines: dict[tuple[str, ...], int], file: str
) -> tuple[ApplicationsConfig | None, list[ConfigProblem]]:
    """The [applications] table checked: one source of instances, each address well formed."""
    if table is None:
        return None, []

    def problem(key: str, message: str, hint: str) -> ConfigProblem:
        where = ("applications", key) if key else ("applications",)
        return ConfigProblem(file, line_of(lines, where), ".".join(where), message, hint)

    problems = []
    if bool(table.srv_name) == bool(table.instances):
        problems.append(
            problem(
                "",
                "set exactly one of srv_name and instances",
                'srv_name = "_admin._tcp.app.example.com" (a DNS SRV record), or '
                'instances = ["10.0.0.5:20052"]',
            )
        )
    if table.dns_server is not None and not table.srv_name:
        problems.append(problem("dns_server", "dns_server is only used with srv_name", "remove it"))
    dns_server = None
    if table.dns_server is not None:
        try:
            dns_server = DnsServer.parse(table.dns_server)
        except ValueError as exc:
            problems.append(problem("dns_server", str(exc), 'write "127.0.0.1:5353"'))
    instances = []
    for text in table.instances:
        try:
            instances.append(AppInstance.parse(text))
        except ValueError as exc:
            problems.append(problem("instances", str(exc), 'write "10.0.0.5:20052"'))
    config = ApplicationsConfig(
        srv_name=table.srv_name or None,
        dns_server=dns_server,
        instances=tuple(instances),
        pause_timeout_s=table.pause_timeout.total_seconds(),
        unpause_timeout_s=table.unpause_timeout.total_seconds(),
        dns_timeout_s=table.dns_timeout.total_seconds(),
    )
    return config, problems
