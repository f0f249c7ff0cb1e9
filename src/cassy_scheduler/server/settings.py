"""The built-in server's config file (server.toml): where to listen, keep metadata and store
backups, and how to reach each Cassandra node.

    [server]
    host = "127.0.0.1"
    port = 20051

    [metadata]
    path = "/var/lib/cassy-scheduler/metadata.db"

    [storage]
    uri = "file:///var/backups/cassandra"

    [nodes]
    executor = "local"
    nodetool = ["nodetool"]
    jmx_port = 7199

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
    connect_timeout_seconds = 10

    [applications]                # optional; cluster-wide snapshots (backup_type 1) need it
    srv_name = "_cassy-admin._tcp.app.example.com"   # or: instances = ["10.0.0.5:20052"]
    dns_server = "127.0.0.1:5353"                    # optional; else /etc/resolv.conf's
    pause_timeout_seconds = 60
"""

from __future__ import annotations

import difflib
import ipaddress
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, get_args

from cassandra.auth import PlainTextAuthProvider
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from cassy_scheduler.configfile.errors import ConfigError, ConfigProblem, toml_syntax_problem
from cassy_scheduler.configfile.locate import key_lines, line_of
from cassy_scheduler.configfile.secrets import Secret
from cassy_scheduler.node.discovery import CqlAccess
from cassy_scheduler.node.executor import NodeEndpoint
from cassy_scheduler.server.applications import AppInstance, ApplicationsConfig
from cassy_scheduler.server.dns import DnsServer
from cassy_scheduler.storage import UnsupportedStorageError, open_storage

DEFAULT_PORT = 20051


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _TlsTable(_Table):
    cert_file: str
    key_file: str
    client_ca_file: str | None = None  # set to require client certificates signed by it


class _ServerTable(_Table):
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)  # 0: any free port
    max_workers: int = Field(default=16, ge=1, le=256)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    tls: _TlsTable | None = None


class _MetadataTable(_Table):
    path: str = "cassy-metadata.db"


class _StorageTable(_Table):
    uri: str


class _HostTable(_Table):
    jmx_host: str | None = None
    jmx_port: int | None = Field(default=None, ge=1, le=65535)
    data_dir: str | None = None
    commitlog_dir: str | None = None
    hints_dir: str | None = None
    saved_caches_dir: str | None = None
    restore_staging_dir: str | None = None


class _NodesTable(_Table):
    executor: Literal["local"] = "local"
    nodetool: list[str] = Field(default_factory=lambda: ["nodetool"], min_length=1)
    jmx_port: int = Field(default=7199, ge=1, le=65535)
    cql_port: int = Field(default=9042, ge=1, le=65535)
    nodetool_timeout_seconds: float = Field(default=1800.0, gt=0)
    parallel_nodes: int = Field(default=8, ge=1, le=64)
    hosts: dict[str, _HostTable] = Field(default_factory=dict)


class _CassandraTable(_Table):
    username: str | None = Field(default=None, min_length=1)
    password: str | None = None  # only to refuse it with a pointer to password_env
    password_env: str | None = Field(default=None, min_length=1)
    password_file: str | None = Field(default=None, min_length=1)
    ca_file: str | None = None  # set to speak TLS, verifying the node's certificate
    cert_file: str | None = None  # client certificate, for client_encryption_options
    key_file: str | None = None  # require_client_auth
    verify_hostname: bool = True
    connect_timeout_seconds: float | None = Field(default=None, gt=0)


class _ApplicationsTable(_Table):
    srv_name: str | None = None
    dns_server: str | None = None
    instances: list[str] = Field(default_factory=list)
    pause_timeout_seconds: float = Field(default=60.0, gt=0)
    unpause_timeout_seconds: float = Field(default=10.0, gt=0)
    dns_timeout_seconds: float = Field(default=5.0, gt=0)


class _File(_Table):
    server: _ServerTable = _ServerTable()
    metadata: _MetadataTable = _MetadataTable()
    storage: _StorageTable
    nodes: _NodesTable = _NodesTable()
    cassandra: _CassandraTable | None = None
    applications: _ApplicationsTable | None = None


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
    storage_uri: str
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

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def cql_port(self) -> int:
        return self.cql.port

    def endpoint(self, address: str) -> NodeEndpoint:
        """How to reach the node at `address`: its own table, else the defaults."""
        configured = self.hosts.get(address)
        if configured is not None:
            return configured
        return NodeEndpoint(address=address, jmx_host=address, jmx_port=self.jmx_port)

    def paths(self, address: str) -> HostPaths:
        """The node's configured directories besides the data dir (defaults when none)."""
        return self.host_paths.get(address, HostPaths())


_HINTS = {
    "missing": "add it; see the example at the top of cassy_scheduler/server/settings.py",
    "int_type": "write a whole number without quotes",
    "string_type": 'write a quoted string: key = "value"',
    "list_type": 'write a list: nodetool = ["nodetool"]',
}


def _table_at(path: tuple[str, ...]) -> type[BaseModel] | None:
    """The model of the table at `path` (e.g. ("nodes", "hosts", "10.0.0.1")), if any."""
    model: type[BaseModel] = _File
    for part in path:
        if model is _NodesTable and part == "hosts":
            model = _HostsPlaceholder
            continue
        if model is _HostsPlaceholder:
            model = _HostTable
            continue
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        # An optional table (`_CassandraTable | None`) is its model too.
        candidates = [annotation, *get_args(annotation)]
        tables = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not tables:
            return None
        model = tables[0]
    return model


class _HostsPlaceholder(_Table):
    """Stands for the [nodes.hosts] table, whose keys are node addresses."""


def _problem_from(
    error: ErrorDetails, file: str, lines: dict[tuple[str, ...], int]
) -> ConfigProblem:
    loc = tuple(str(part) for part in error["loc"])
    message = error["msg"]
    hint = _HINTS.get(error["type"], "")
    if error["type"] == "extra_forbidden":
        table = _table_at(loc[:-1])
        allowed = list(table.model_fields) if table is not None else []
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        message = f'unknown key "{loc[-1]}"'
        hint = f'did you mean "{close[0]}"?' if close else "allowed here: " + ", ".join(allowed)
    return ConfigProblem(file, line_of(lines, loc), ".".join(loc), message, hint)


def _tls(
    table: _TlsTable | None, base: Path, lines: dict[tuple[str, ...], int], file: str
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
    table: _ApplicationsTable | None, lines: dict[tuple[str, ...], int], file: str
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
        pause_timeout_s=table.pause_timeout_seconds,
        unpause_timeout_s=table.unpause_timeout_seconds,
        dns_timeout_s=table.dns_timeout_seconds,
    )
    return config, problems


_PASSWORD_HINT = (
    'password_env = "CASSY_CQL_PASSWORD" (a variable in the server\'s environment, e.g. its '
    'systemd unit) or password_file = "/etc/cassy-scheduler/cql-password"'
)


def _cql_password(
    table: _CassandraTable, base: Path, problem: _ProblemAt
) -> tuple[str | None, list[ConfigProblem]]:
    """The password from password_env or password_file, read now so a bad one stops the start."""
    if table.password is not None:
        return None, [
            problem(
                "password",
                "the password is not written in the config file (it gets copied and committed)",
                "remove it and set " + _PASSWORD_HINT,
            )
        ]
    given = [key for key in ("password_env", "password_file") if getattr(table, key)]
    if len(given) > 1:
        return None, [
            problem("password_file", "password_env and password_file are both given", "keep one")
        ]
    if table.username is None:
        if given:
            return None, [
                problem(given[0], "a password needs a username", 'add username = "cassy_backup"')
            ]
        return None, []
    if not given:
        return None, [problem("username", "a username needs a password", "add " + _PASSWORD_HINT)]
    key = given[0]
    if table.password_env:
        secret = Secret(f"cassandra.{key}", problem.file, env=table.password_env)
        hint = f"export {table.password_env} in the server's environment (e.g. its systemd unit)"
    else:
        assert table.password_file is not None
        secret = Secret(f"cassandra.{key}", problem.file, file=base / table.password_file)
        hint = "check the path (relative to this config file) and that the server may read it"
    try:
        password = secret.resolve()
    except ConfigError as exc:
        return None, [problem(key, p.message, hint) for p in exc.problems]
    if not password:
        return None, [problem(key, f"{secret.file} is empty", "write the password into it")]
    return password, []


def _cql_tls(
    table: _CassandraTable, base: Path, problem: _ProblemAt
) -> tuple[ssl.SSLContext | None, list[ConfigProblem]]:
    """An SSL context verifying the nodes' certificates against ca_file; None without it."""
    client = {"cert_file": table.cert_file, "key_file": table.key_file}
    given = [key for key, value in client.items() if value]
    problems = []
    if given and table.ca_file is None:
        problems.append(
            problem(given[0], "a client certificate needs TLS", "set ca_file too (turns TLS on)")
        )
    if len(given) == 1:
        missing = "key_file" if given == ["cert_file"] else "cert_file"
        problems.append(problem(given[0], f"needs {missing} too", f"set {missing} as well"))
    if problems or table.ca_file is None:
        return None, problems
    files = {key: (base / value).resolve() for key, value in client.items() if value}
    ca_file = (base / table.ca_file).resolve()
    for key, pem in {"ca_file": ca_file, **files}.items():
        if not pem.is_file():
            problems.append(
                problem(
                    key,
                    f"{pem} is not a readable file",
                    "give the path of a PEM file (relative to this config file)",
                )
            )
    if problems:
        return None, problems
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
    except (ssl.SSLError, OSError) as exc:
        return None, [problem("ca_file", f"not a usable CA certificate: {exc}", "give a PEM file")]
    context.check_hostname = table.verify_hostname
    if files:
        try:
            context.load_cert_chain(str(files["cert_file"]), str(files["key_file"]))
        except (ssl.SSLError, OSError) as exc:
            return None, [
                problem(
                    "cert_file",
                    f"cannot load the client certificate and key: {exc}",
                    "give a PEM certificate and its unencrypted PEM private key",
                )
            ]
    return context, []


@dataclass(frozen=True)
class _ProblemAt:
    """Builds problems for keys of the [cassandra] table, pinned to their lines."""

    file: str
    lines: dict[tuple[str, ...], int]

    def __call__(self, key: str, message: str, hint: str) -> ConfigProblem:
        where = ("cassandra", key)
        return ConfigProblem(self.file, line_of(self.lines, where), ".".join(where), message, hint)


def _cql_access(
    nodes: _NodesTable,
    table: _CassandraTable | None,
    path: Path,
    lines: dict[tuple[str, ...], int],
) -> tuple[CqlAccess, list[ConfigProblem]]:
    """How to open CQL to the nodes; without a [cassandra] table, as before: no auth, no TLS."""
    if table is None:
        return CqlAccess(port=nodes.cql_port, config=str(path.resolve())), []
    problem = _ProblemAt(str(path), lines)
    password, problems = _cql_password(table, path.parent, problem)
    context, tls_problems = _cql_tls(table, path.parent, problem)
    problems += tls_problems
    auth = (
        PlainTextAuthProvider(username=table.username, password=password)
        if table.username is not None and password is not None
        else None
    )
    access = CqlAccess(
        port=nodes.cql_port,
        auth_provider=auth,
        ssl_context=context,
        connect_timeout_s=table.connect_timeout_seconds,
        config=str(path.resolve()),
    )
    return access, problems


def load_server_settings(path: Path) -> ServerSettings:
    """Read server.toml; every problem names the file, the line and the key."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [
                ConfigProblem(
                    file,
                    None,
                    "",
                    f"cannot read the server config: {exc.strerror}",
                    "pass an existing file with --config",
                )
            ]
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            [
                toml_syntax_problem(
                    file,
                    text,
                    exc,
                    not_ours="the server's config is a TOML file with [storage] and [nodes] "
                    "tables: write one from examples/server.toml",
                )
            ]
        ) from None
    lines = key_lines(text)
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_problem_from(err, file, lines) for err in exc.errors()]) from None
    problems = []
    hosts: dict[str, NodeEndpoint] = {}
    host_paths: dict[str, HostPaths] = {}
    for address, table in parsed.nodes.hosts.items():
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
        hosts[address] = NodeEndpoint(
            address=address,
            jmx_host=table.jmx_host or address,
            jmx_port=table.jmx_port or parsed.nodes.jmx_port,
            data_dir=Path(table.data_dir) if table.data_dir else None,
        )
        host_paths[address] = HostPaths(
            *(
                Path(value) if value else None
                for value in (
                    table.commitlog_dir,
                    table.hints_dir,
                    table.saved_caches_dir,
                    table.restore_staging_dir,
                )
            )
        )
    try:
        open_storage(parsed.storage.uri)
    except UnsupportedStorageError as exc:
        problems.append(
            ConfigProblem(
                file,
                line_of(lines, ("storage", "uri")),
                "storage.uri",
                str(exc),
                'use a filesystem URI such as "file:///var/backups/cassandra"',
            )
        )
    applications, application_problems = _applications(parsed.applications, lines, file)
    problems.extend(application_problems)
    cql, cql_problems = _cql_access(parsed.nodes, parsed.cassandra, path, lines)
    problems.extend(cql_problems)
    if problems:
        raise ConfigError(problems)
    base = path.parent
    tls = _tls(parsed.server.tls, base, lines, file)
    return ServerSettings(
        host=parsed.server.host,
        port=parsed.server.port,
        max_workers=parsed.server.max_workers,
        shutdown_grace_seconds=parsed.server.shutdown_grace_seconds,
        metadata_path=(base / parsed.metadata.path).resolve(),
        storage_uri=parsed.storage.uri,
        nodetool=tuple(parsed.nodes.nodetool),
        jmx_port=parsed.nodes.jmx_port,
        cql=cql,
        nodetool_timeout_seconds=parsed.nodes.nodetool_timeout_seconds,
        parallel_nodes=parsed.nodes.parallel_nodes,
        hosts=MappingProxyType(hosts),
        host_paths=MappingProxyType(host_paths),
        tls=tls,
        applications=applications,
    )
