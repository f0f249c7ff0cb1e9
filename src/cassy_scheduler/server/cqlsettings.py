"""How the server opens CQL to its nodes, from the [cassandra] table: credentials read from
the environment or a file (never inline), and TLS verifying the nodes' certificates.

A bad password source or PEM file stops the start here, pinned to its key, rather than at the
first backup.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cassandra.auth import PlainTextAuthProvider

from cassy_scheduler.configfile.errors import ConfigError, ConfigProblem
from cassy_scheduler.configfile.locate import TableProblems
from cassy_scheduler.configfile.secrets import Secret
from cassy_scheduler.node.discovery import CqlAccess
from cassy_scheduler.server.settingsfile import CassandraTable, NodesTable

_PASSWORD_HINT = (
    'password_env = "CASSY_CQL_PASSWORD" (a variable in the server\'s environment, e.g. its '
    'systemd unit) or password_file = "/etc/cassy-scheduler/cql-password"'
)


def _cql_password(
    table: CassandraTable, base: Path, problem: TableProblems
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
    table: CassandraTable, base: Path, problem: TableProblems
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


def cql_access(
    nodes: NodesTable,
    table: CassandraTable | None,
    path: Path,
    lines: dict[tuple[str, ...], int],
) -> tuple[CqlAccess, list[ConfigProblem]]:
    """How to open CQL to the nodes; without a [cassandra] table, as before: no auth, no TLS."""
    if table is None:
        return CqlAccess(port=nodes.cql_port, config=str(path.resolve())), []
    problem = TableProblems(str(path), lines, "cassandra")
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
        connect_timeout_s=(
            table.connect_timeout.total_seconds() if table.connect_timeout is not None else None
        ),
        config=str(path.resolve()),
    )
    return access, problems
