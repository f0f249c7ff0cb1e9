"""The server config's [cassandra] table: CQL credentials from the environment or a file, TLS
from PEM files, and every mistake refused at start with its line and the fix."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from cassandra.auth import PlainTextAuthProvider

from cassy_scheduler.configfile.errors import ConfigError, ConfigProblem
from cassy_scheduler.node.discovery import CqlAccess
from cassy_scheduler.server.settings import load_server_settings

VARIABLE = "CASSY_UNIT_CQL_PASSWORD"


def write(tmp_path: Path, table: str) -> Path:
    path = tmp_path / "server.toml"
    storage = (tmp_path / "storage").as_uri()
    path.write_text(f'[storage]\nuri = "{storage}"\n\n[nodes]\ncql_port = 9142\n{table}')
    return path


def load(tmp_path: Path, table: str) -> CqlAccess:
    return load_server_settings(write(tmp_path, table)).cql


def refusal(tmp_path: Path, table: str) -> ConfigProblem:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, table)
    assert len(caught.value.problems) == 1, caught.value
    return caught.value.problems[0]


def test_no_table_keeps_plain_unauthenticated_cql(tmp_path: Path) -> None:
    cql = load(tmp_path, "")
    assert (cql.port, cql.auth_provider, cql.ssl_context, cql.connect_timeout_s) == (
        9142,
        None,
        None,
        None,
    )
    assert cql.config == str(tmp_path / "server.toml")
    assert load_server_settings(write(tmp_path, "")).cql_port == 9142


def test_password_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, "s3cret")
    cql = load(
        tmp_path,
        f'[cassandra]\nusername = "backup"\npassword_env = "{VARIABLE}"\nconnect_timeout = "5s"\n',
    )
    assert isinstance(cql.auth_provider, PlainTextAuthProvider)
    assert (cql.auth_provider.username, cql.auth_provider.password) == ("backup", "s3cret")
    assert cql.connect_timeout_s == 5.0
    assert cql.ssl_context is None
    assert "s3cret" not in repr(cql)


def test_password_from_a_file_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "cql-password").write_text("from-file\n")
    (tmp_path / "cql-password").chmod(0o600)
    cql = load(tmp_path, '[cassandra]\nusername = "backup"\npassword_file = "cql-password"\n')
    assert isinstance(cql.auth_provider, PlainTextAuthProvider)
    assert cql.auth_provider.password == "from-file"


def test_a_missing_variable_is_refused_with_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    problem = refusal(tmp_path, f'[cassandra]\nusername = "backup"\npassword_env = "{VARIABLE}"\n')
    assert problem.file == str(tmp_path / "server.toml")
    assert (problem.line, problem.field) == (8, "cassandra.password_env")
    assert problem.message == f"environment variable {VARIABLE} is not set or empty"
    assert f"export {VARIABLE} in the server's environment" in problem.hint


@pytest.mark.parametrize(
    ("table", "field", "words", "hint"),
    [
        ('username = "backup"\n', "cassandra.username", "needs a password", "password_env ="),
        (f'password_env = "{VARIABLE}"\n', "cassandra.password_env", "needs a username", "add"),
        (
            'username = "backup"\npassword = "inline"\n',
            "cassandra.password",
            "not written in the config file",
            "password_env =",
        ),
        (
            f'username = "b"\npassword_env = "{VARIABLE}"\npassword_file = "p"\n',
            "cassandra.password_file",
            "both given",
            "keep one",
        ),
        (
            'username = "b"\npassword_file = "no-such-file"\n',
            "cassandra.password_file",
            "cannot read secret file",
            "check the path",
        ),
        ('ca_file = "missing-ca.pem"\n', "cassandra.ca_file", "not a readable file", "PEM"),
        ('cert_file = "c.pem"\nkey_file = "k.pem"\n', "cassandra.cert_file", "needs TLS", "ca_"),
        ('connect_timeout = "0s"\n', "cassandra.connect_timeout", "longer than zero", '"30s"'),
        ("connect_timeout_seconds = 0\n", "cassandra.connect_timeout_seconds", "longer than", ""),
        ('usernme = "backup"\n', "cassandra.usernme", "unknown key", 'did you mean "username"'),
    ],
)
def test_mistakes_are_refused_with_the_fix(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    table: str,
    field: str,
    words: str,
    hint: str,
) -> None:
    monkeypatch.setenv(VARIABLE, "s3cret")
    problem = refusal(tmp_path, "[cassandra]\n" + table)
    assert problem.field == field
    assert problem.line is not None and problem.line >= 7
    assert words in problem.message
    assert hint in problem.hint


def test_an_empty_password_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    problem = refusal(tmp_path, '[cassandra]\nusername = "b"\npassword_file = "empty"\n')
    assert (problem.field, problem.message) == (
        "cassandra.password_file",
        f"{tmp_path}/empty is empty",
    )


def test_a_ca_file_that_is_no_certificate_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    problem = refusal(tmp_path, '[cassandra]\nca_file = "ca.pem"\n')
    assert problem.field == "cassandra.ca_file"
    assert "not a usable CA certificate" in problem.message


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    """A self-signed CA (also usable as a client certificate) and its key."""
    _openssl(
        tmp_path,
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "client.key",
        "-subj",
        "/CN=cql-test",
        "-days",
        "2",
        "-out",
        "ca.pem",
    )
    return tmp_path


@needs_openssl
def test_ca_file_turns_tls_on_and_verifies_the_node(pem: Path) -> None:
    cql = load(pem, '[cassandra]\nca_file = "ca.pem"\n')
    assert cql.ssl_context is not None
    assert cql.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert cql.ssl_context.check_hostname
    assert any(
        c["subject"] == ((("commonName", "cql-test"),),) for c in cql.ssl_context.get_ca_certs()
    )


@needs_openssl
def test_client_certificate_and_no_hostname_check(pem: Path) -> None:
    cql = load(
        pem,
        '[cassandra]\nca_file = "ca.pem"\ncert_file = "ca.pem"\nkey_file = "client.key"\n'
        "verify_hostname = false\n",
    )
    assert cql.ssl_context is not None
    assert not cql.ssl_context.check_hostname
    assert cql.ssl_context.verify_mode == ssl.CERT_REQUIRED


@needs_openssl
def test_a_key_that_does_not_match_is_refused(pem: Path) -> None:
    (pem / "other.key").write_text((pem / "client.key").read_text()[:200] + "\n")
    problem = refusal(
        pem, '[cassandra]\nca_file = "ca.pem"\ncert_file = "ca.pem"\nkey_file = "other.key"\n'
    )
    assert problem.field == "cassandra.cert_file"
    assert "cannot load the client certificate and key" in problem.message


@needs_openssl
def test_a_cert_without_its_key_is_refused(pem: Path) -> None:
    problem = refusal(pem, '[cassandra]\nca_file = "ca.pem"\ncert_file = "ca.pem"\n')
    assert (problem.field, problem.message) == ("cassandra.cert_file", "needs key_file too")
