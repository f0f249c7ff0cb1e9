"""[server] token_file / token_env: the caller's token for a server with access control."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cassy_scheduler.cli import app
from cassy_scheduler.config.loader import load_config
from tests.unit.test_config import BASE, only_problem, write


def test_the_token_is_read_from_its_file_and_kept_out_of_the_repr(tmp_path: Path) -> None:
    (tmp_path / "scheduler.token").write_text("t0k3n\n")
    path = write(tmp_path, '[server]\ntoken_file = "scheduler.token"\n' + BASE)
    server = load_config(path).server
    assert server.token == "t0k3n"
    assert "t0k3n" not in repr(server)


def test_the_token_is_read_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASSY_TOKEN_FOR_TEST", "from-env")
    path = write(tmp_path, '[server]\ntoken_env = "CASSY_TOKEN_FOR_TEST"\n' + BASE)
    assert load_config(path).server.token == "from-env"


def test_a_missing_token_file_names_the_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\ntoken_file = "gone.token"\n' + BASE)
    problem = only_problem(path, "server.token_file", "token_file")
    assert "cannot read" in problem.message


def test_a_token_is_not_sent_in_plaintext_beyond_loopback_unless_allowed(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("secret")
    text = '[server]\naddress = "10.0.0.9:20051"\ntoken_file = "t"\n'
    problem = only_problem(write(tmp_path, text + BASE), "server.token_file", "token_file")
    assert "plaintext" in problem.message and "[server.tls]" in problem.hint
    allowed = write(tmp_path, text + "allow_plaintext_token = true\n" + BASE)
    assert load_config(allowed).server.token == "secret"


def test_server_option_sends_no_token_in_plaintext_beyond_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CASSY_SCHEDULER_TOKEN", "secret")
    monkeypatch.delenv("CASSY_SCHEDULER_ALLOW_PLAINTEXT_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["audit", "--server", "10.0.0.9:20051"])
    assert result.exit_code == 2
    assert "plaintext" in result.output and "CASSY_SCHEDULER_ALLOW_PLAINTEXT_TOKEN" in result.output
