"""Who may call the server, from the [access] table: identities known by a token (read from a
file or the environment, or written as its SHA-256; only the digest is kept) or by a client
certificate's name, and the Cassandra hosts RegisterCluster may contact.

    [access]
    cluster_hosts = ["10.0.0.0/8", "cassandra-*.prod.example"]   # optional allow-list
    audit_keep = "400d"                                          # optional: else kept for good

    [access.identities.monitoring]
    role = "reader"
    token_file = "/etc/cassy-scheduler/monitoring.token"   # or token_env, or token_sha256

    [access.identities.scheduler]
    role = "operator"
    cert_name = "scheduler.ops.example"   # CN or SAN of a certificate [server.tls] admits

A token that would cross the network in plaintext stops the start, unless
allow_plaintext_tokens says TLS ends in front of the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from cassy_scheduler.addresses import is_loopback
from cassy_scheduler.configfile.errors import ConfigError, ConfigProblem
from cassy_scheduler.configfile.locate import line_of
from cassy_scheduler.configfile.secrets import Secret
from cassy_scheduler.server.access import Credentials, Identity, Role, token_digest
from cassy_scheduler.server.hostallow import HostAllowList
from cassy_scheduler.server.settingsfile import AccessTable, IdentityTable, ServerTable

_TOKEN_KEYS = ("token_file", "token_env", "token_sha256")


@dataclass(frozen=True)
class AccessSettings:
    credentials: Credentials = field(default_factory=Credentials)
    cluster_hosts: HostAllowList | None = None  # None: any host
    audit_keep: timedelta | None = None  # None: audit rows are kept for good


def access_settings(
    table: AccessTable, server: ServerTable, path: Path, lines: dict[tuple[str, ...], int]
) -> tuple[AccessSettings, list[ConfigProblem]]:
    file = str(path)
    problems: list[ConfigProblem] = []
    tokens: dict[str, Identity] = {}
    certificates: dict[str, Identity] = {}
    for name, identity in table.identities.items():

        def problem(key: str, message: str, hint: str, name: str = name) -> ConfigProblem:
            where = ("access", "identities", name, key)
            return ConfigProblem(file, line_of(lines, where), ".".join(where), message, hint)

        who = Identity(name, Role.named(identity.role))
        digest, found = _token_digest(identity, path.parent, problem)
        problems += found
        if digest is not None:
            if digest in tokens:
                problems.append(
                    problem(
                        _token_key(identity),
                        f"the same token as identity {tokens[digest].name!r}",
                        "give each identity a token of its own (cassy-scheduler token)",
                    )
                )
            tokens[digest] = who
        if identity.cert_name is not None:
            if server.tls is None or server.tls.client_ca_file is None:
                problems.append(
                    problem(
                        "cert_name",
                        "client certificates are not asked for",
                        "set [server.tls] client_ca_file to the CA that signs them",
                    )
                )
            if identity.cert_name in certificates:
                problems.append(
                    problem(
                        "cert_name",
                        f"also the certificate of {certificates[identity.cert_name].name!r}",
                        "map each certificate name to one identity",
                    )
                )
            certificates[identity.cert_name] = who
        if digest is None and identity.cert_name is None and not found:
            problems.append(
                problem(
                    "role",
                    "this identity has neither a token nor a certificate name",
                    "add token_file, token_env or token_sha256, or cert_name",
                )
            )
    if (
        tokens
        and server.tls is None
        and not is_loopback(server.host)
        and not (table.allow_plaintext_tokens)
    ):
        problems.append(
            ConfigProblem(
                file,
                line_of(lines, ("server", "host")),
                "server.host",
                f"tokens would cross the network in plaintext on {server.host}",
                "configure [server.tls], listen on 127.0.0.1, or, when TLS ends in a proxy in "
                "front of the server, set [access] allow_plaintext_tokens = true",
            )
        )
    hosts = None
    if table.cluster_hosts is not None:
        try:
            hosts = HostAllowList.parse(table.cluster_hosts)
        except ValueError as exc:
            problems.append(
                ConfigProblem(
                    file,
                    line_of(lines, ("access", "cluster_hosts")),
                    "access.cluster_hosts",
                    str(exc),
                    'write networks and host names: ["10.0.0.0/8", "cassandra-*.example"]',
                )
            )
    settings = AccessSettings(Credentials(tokens, certificates), hosts, table.audit_keep)
    return settings, problems


def _token_key(identity: IdentityTable) -> str:
    return next((key for key in _TOKEN_KEYS if getattr(identity, key)), "role")


def _token_digest(
    identity: IdentityTable, base: Path, problem: Callable[[str, str, str], ConfigProblem]
) -> tuple[str | None, list[ConfigProblem]]:
    """The token's digest, from whichever of token_file, token_env, token_sha256 is given."""
    if identity.token is not None:
        return None, [
            problem(
                "token",
                "a token is not written in the config file (it gets copied and committed)",
                "write it to a file and set token_file, or set token_sha256 to its digest "
                "(cassy-scheduler token prints both)",
            )
        ]
    given = [key for key in _TOKEN_KEYS if getattr(identity, key)]
    if len(given) > 1:
        return None, [problem(given[1], f"{' and '.join(given)} are all given", "keep one")]
    if not given:
        return None, []
    if identity.token_sha256 is not None:
        return identity.token_sha256.lower(), []
    if identity.token_env is not None:
        secret = Secret("token_env", "", env=identity.token_env)
        hint = f"export {identity.token_env} in the server's environment (e.g. its systemd unit)"
    else:
        assert identity.token_file is not None
        file = Path(identity.token_file).expanduser()
        secret = Secret("token_file", "", file=file if file.is_absolute() else base / file)
        hint = "check the path (relative to this config file) and that the server may read it"
    try:
        token = secret.resolve().strip()
    except ConfigError as exc:
        return None, [problem(given[0], p.message, hint) for p in exc.problems]
    if not token:
        return None, [problem(given[0], "the token is empty", "write the token into it")]
    return token_digest(token), []
