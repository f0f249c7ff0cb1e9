"""The server's config file as written: its tables and keys, checked by pydantic at the edge.

Nothing past server/settings.py sees these. Every table refuses unknown keys, with the allowed
ones in the hint. Durations are written as in the scheduler's file ("30s", "5m"); the older
`*_seconds` numbers are still read, with a note that says what to write instead.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from cassy_scheduler.configfile.errors import ConfigError, ConfigProblem, toml_syntax_problem
from cassy_scheduler.configfile.fields import Duration, PositiveDuration, Rate, Size
from cassy_scheduler.configfile.locate import key_lines, line_of
from cassy_scheduler.storage.options import (
    DEFAULT_CONCURRENCY,
    DEFAULT_PART_SIZE,
    DEFAULT_RETRY_TIMEOUT_S,
)

DEFAULT_PORT = 20051


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TlsTable(_Table):
    cert_file: str
    key_file: str
    client_ca_file: str | None = None  # set to require client certificates signed by it


class ServerTable(_Table):
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)  # 0: any free port
    max_workers: int = Field(default=16, ge=1, le=256)
    shutdown_grace: Duration = timedelta(seconds=30)  # "0s": fail running work at once
    tls: TlsTable | None = None


class MetadataTable(_Table):
    path: str = "cassy-metadata.db"


class ClientEncryptionTable(_Table):
    """[storage.client_encryption]: every object sealed before it is stored (docs/encryption.md)."""

    key_file: str | None = Field(default=None, min_length=1)
    key_env: str | None = Field(default=None, min_length=1)
    previous_key_files: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)


class StorageTable(_Table):
    uri: str
    endpoint: str | None = None  # MinIO, Ceph, SeaweedFS, Azurite, a private endpoint
    region: str | None = None
    path_style: bool | None = None  # S3; default: path-style when an endpoint is given
    storage_class: str | None = None
    encryption: Literal["s3", "kms"] | None = None  # server-side: SSE-S3 or SSE-KMS
    kms_key_id: str | None = None
    account: str | None = None  # Azure storage account
    concurrency: int = Field(default=DEFAULT_CONCURRENCY, ge=1, le=64)
    part_size: Size = DEFAULT_PART_SIZE
    max_bandwidth: Rate | None = None
    retry_timeout: PositiveDuration = timedelta(seconds=DEFAULT_RETRY_TIMEOUT_S)
    # Credentials: read from the named variable or file, never written here.
    access_key_id_env: str | None = None
    access_key_id_file: str | None = None
    secret_access_key_env: str | None = None
    secret_access_key_file: str | None = None
    session_token_env: str | None = None
    session_token_file: str | None = None
    account_key_env: str | None = None
    account_key_file: str | None = None
    sas_token_env: str | None = None
    sas_token_file: str | None = None
    service_account_file: str | None = None  # GCS: a service account's JSON key
    # Refused with the fix when written inline.
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    account_key: str | None = None
    sas_token: str | None = None
    client_encryption: ClientEncryptionTable | None = None


class SshTable(_Table):
    """[nodes.ssh] (every node's defaults) or [nodes.hosts."IP".ssh] (that node's)."""

    host: str | None = Field(default=None, min_length=1)  # default: the node's address
    port: int = Field(default=22, ge=1, le=65535)
    user: str | None = Field(default=None, min_length=1)
    key_file: str | None = Field(default=None, min_length=1)  # else the agent, ~/.ssh keys
    known_hosts: str | None = Field(default=None, min_length=1)  # else ~/.ssh/known_hosts
    connect_timeout: PositiveDuration = timedelta(seconds=10)
    keepalive: PositiveDuration = timedelta(seconds=15)
    idle_timeout: PositiveDuration = timedelta(seconds=120)
    sudo_user: str | None = Field(default=None, min_length=1)
    program: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["cassy-scheduler"], min_length=1
    )
    max_bandwidth: Rate | None = None  # each node's uploads; default [storage]'s
    # The node program's settings (CASSY_NODE_JMX_PORT, ...), sent with each request: they
    # reach it through sudo, which drops the login's own environment.
    environment: dict[str, str] = Field(default_factory=dict)


class HostTable(_Table):
    ssh: SshTable | None = None  # set: this node's host is reached over SSH
    jmx_host: str | None = None
    jmx_port: int | None = Field(default=None, ge=1, le=65535)
    data_dir: str | None = None
    commitlog_dir: str | None = None
    hints_dir: str | None = None
    saved_caches_dir: str | None = None
    restore_staging_dir: str | None = None


class NodetoolJvmTable(_Table):
    classpath: str = Field(min_length=1)  # Cassandra's jars, e.g. "/usr/share/cassandra/lib/*"
    java: str = Field(default="java", min_length=1)
    # after the module flags clients need
    options: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)


class NodesTable(_Table):
    executor: Literal["local", "ssh"] = "local"  # ssh: every node over SSH ([nodes.ssh])
    ssh: SshTable | None = None
    nodetool: list[str] = Field(default_factory=lambda: ["nodetool"], min_length=1)
    nodetool_jvm: NodetoolJvmTable | None = None  # set: one resident JVM runs every command
    jmx_port: int = Field(default=7199, ge=1, le=65535)
    cql_port: int = Field(default=9042, ge=1, le=65535)
    nodetool_timeout: PositiveDuration = timedelta(seconds=1800)
    parallel_nodes: int = Field(default=8, ge=1, le=64)
    hosts: dict[str, HostTable] = Field(default_factory=dict)


class CassandraTable(_Table):
    username: str | None = Field(default=None, min_length=1)
    password: str | None = None  # only to refuse it with a pointer to password_env
    password_env: str | None = Field(default=None, min_length=1)
    password_file: str | None = Field(default=None, min_length=1)
    ca_file: str | None = None  # set to speak TLS, verifying the node's certificate
    cert_file: str | None = None  # client certificate, for client_encryption_options
    key_file: str | None = None  # require_client_auth
    verify_hostname: bool = True
    connect_timeout: PositiveDuration | None = None


class ApplicationsTable(_Table):
    srv_name: str | None = None
    dns_server: str | None = None
    instances: list[str] = Field(default_factory=list)
    pause_timeout: PositiveDuration = timedelta(seconds=60)
    unpause_timeout: PositiveDuration = timedelta(seconds=10)
    dns_timeout: PositiveDuration = timedelta(seconds=5)


class IdentityTable(_Table):
    """[access.identities.NAME]: one caller, known by a token or a client certificate."""

    role: Literal["reader", "operator", "admin"]
    token_file: str | None = Field(default=None, min_length=1)
    token_env: str | None = Field(default=None, min_length=1)
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    cert_name: str | None = Field(default=None, min_length=1)  # the certificate's CN or a SAN
    token: str | None = None  # only to refuse it with a pointer to token_file


class AccessTable(_Table):
    identities: dict[str, IdentityTable] = Field(default_factory=dict)
    allow_plaintext_tokens: bool = False  # tokens over plaintext beyond loopback
    cluster_hosts: list[str] | None = None  # the hosts RegisterCluster may contact
    audit_keep: PositiveDuration | None = None  # older audit rows are removed; None: kept


class FileTable(_Table):
    server: ServerTable = ServerTable()
    metadata: MetadataTable = MetadataTable()
    storage: StorageTable
    nodes: NodesTable = NodesTable()
    cassandra: CassandraTable | None = None
    applications: ApplicationsTable | None = None
    access: AccessTable = AccessTable()


_MAX_SECONDS = 366 * 86_400  # a year: longer is a typo, and timedelta overflows past 1e14

#: Keys of earlier versions, in seconds, and the duration key each became.
RENAMED = {
    ("server", "shutdown_grace_seconds"): "shutdown_grace",
    ("nodes", "nodetool_timeout_seconds"): "nodetool_timeout",
    ("cassandra", "connect_timeout_seconds"): "connect_timeout",
    ("applications", "pause_timeout_seconds"): "pause_timeout",
    ("applications", "unpause_timeout_seconds"): "unpause_timeout",
    ("applications", "dns_timeout_seconds"): "dns_timeout",
}

_HINTS = {
    "missing": "add it; see the example at the top of cassy_scheduler/server/settings.py",
    "int_type": "write a whole number without quotes",
    "string_type": 'write a quoted string: key = "value"',
    "list_type": 'write a list: nodetool = ["nodetool"]',
}


@dataclass(frozen=True)
class ParsedFile:
    """The validated tables, the lines keys were found on, and notes on deprecated keys."""

    tables: FileTable
    lines: dict[tuple[str, ...], int]
    notes: list[ConfigProblem]


def read_file(path: Path) -> ParsedFile:
    """Read and check the file's shape; every problem names the file, the line and the key."""
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
        not_ours = (
            "the server's config is a TOML file with [storage] and [nodes] tables: write one "
            "from examples/server.toml"
        )
        raise ConfigError([toml_syntax_problem(file, text, exc, not_ours=not_ours)]) from None
    lines = key_lines(text)
    renamed = _Renamed(file, lines)
    data = renamed.read(data)
    problems = list(renamed.problems)
    try:
        tables = FileTable.model_validate(data)
    except ValidationError as exc:
        problems += [_problem_from(err, file, lines, renamed.written_as) for err in exc.errors()]
    if problems:
        raise ConfigError(problems)
    return ParsedFile(tables, lines, renamed.notes)


class _Renamed:
    """Reads each old `*_seconds` key into its duration key, noting what to write instead;
    remembers where each came from so a problem with its value names the key in the file."""

    def __init__(self, file: str, lines: dict[tuple[str, ...], int]) -> None:
        self._file = file
        self._lines = lines
        self.notes: list[ConfigProblem] = []
        self.problems: list[ConfigProblem] = []
        self.written_as: dict[tuple[str, ...], tuple[str, ...]] = {}

    def read(self, data: dict[str, Any]) -> dict[str, Any]:
        tables = {name: dict(table) for name, table in data.items() if isinstance(table, Mapping)}
        for (table, old), new in RENAMED.items():
            found = tables.get(table, {})
            if old in found:
                self._rename(found, table, old, new)
        return {**data, **tables}

    def _rename(self, found: dict[str, Any], table: str, old: str, new: str) -> None:
        value = found.pop(old)
        key = f"{table}.{old}"
        place = line_of(self._lines, (table, old))
        if new in found:
            self.problems.append(
                ConfigProblem(self._file, place, key, f"{new} is given too", f"keep only {new}")
            )
            return
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not 0 <= value <= _MAX_SECONDS  # nan and inf fail this too
        ):
            self.problems.append(
                ConfigProblem(
                    self._file,
                    place,
                    key,
                    f"must be a number of seconds from 0 to {_MAX_SECONDS}, got {value!r}",
                    f'write {new} = "30s" instead',
                )
            )
            return
        found[new] = timedelta(seconds=value)
        self.written_as[(table, new)] = (table, old)
        whole = math.ceil(value)
        hint = f'write {new} = "{whole}s" instead'
        if whole != value:
            hint += f" (durations count whole seconds: {value:g} rounds up)"
        self.notes.append(
            ConfigProblem(
                self._file,
                place,
                key,
                "is deprecated: durations are written with their unit, as in the scheduler's file",
                hint,
            )
        )


def _table_at(path: tuple[str, ...]) -> type[BaseModel] | None:
    """The model of the table at `path` (e.g. ("nodes", "hosts", "10.0.0.1")), if any."""
    model: type[BaseModel] = FileTable
    for part in path:
        if model is NodesTable and part == "hosts":
            model = _HostsPlaceholder
            continue
        if model is _HostsPlaceholder:
            model = HostTable
            continue
        if model is AccessTable and part == "identities":
            model = _IdentitiesPlaceholder
            continue
        if model is _IdentitiesPlaceholder:
            model = IdentityTable
            continue
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        # An optional table (`CassandraTable | None`) is its model too.
        candidates = [annotation, *get_args(annotation)]
        tables = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not tables:
            return None
        model = tables[0]
    return model


class _HostsPlaceholder(_Table):
    """Stands for the [nodes.hosts] table, whose keys are node addresses."""


class _IdentitiesPlaceholder(_Table):
    """Stands for the [access.identities] table, whose keys are identity names."""


def _problem_from(
    error: ErrorDetails,
    file: str,
    lines: dict[tuple[str, ...], int],
    written_as: Mapping[tuple[str, ...], tuple[str, ...]],
) -> ConfigProblem:
    loc = tuple(str(part) for part in error["loc"])
    loc = written_as.get(loc, loc)
    message = error["msg"]
    context = dict(error.get("ctx") or {})
    hint = str(context.get("hint", "")) or _HINTS.get(error["type"], "")
    if error["type"] == "extra_forbidden":
        table = _table_at(loc[:-1])
        allowed = list(table.model_fields) if table is not None else []
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        message = f'unknown key "{loc[-1]}"'
        hint = f'did you mean "{close[0]}"?' if close else "allowed here: " + ", ".join(allowed)
    return ConfigProblem(file, line_of(lines, loc), ".".join(loc), message, hint)
