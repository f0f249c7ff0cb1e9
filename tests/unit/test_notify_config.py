"""[notify.NAME] tables: each kind's fields, defaults, and errors naming file, line and field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cassy_scheduler.config.checks import check_config
from cassy_scheduler.config.targets import (
    AppriseChannel,
    CommandChannel,
    EmailChannel,
    NotifyUse,
    NotifyWhen,
    SmtpSecurity,
)
from cassy_scheduler.configfile.errors import ConfigError
from tests.unit.fakes import T0
from tests.unit.notify_fakes import config

TARGETS = """\
[notify.mail]
type = "email"
host = "smtp.example.com"
security = "tls"
sender = "backups@example.com"
to = ["ops@example.com"]
username = "backup"
password_file = "smtp.pass"

[notify.chat]
type = "apprise"
urls = ["json://127.0.0.1:8080/hook", "ntfy://127.0.0.1/backups"]
when = "change"

[notify.hook]
type = "command"
command = ["/usr/local/bin/on-backup", "--quiet"]
timeout = "5s"
"""


def line(tmp_path: Path, text: str) -> int:
    lines = (tmp_path / "scheduler.toml").read_text().splitlines()
    return next(n for n, written in enumerate(lines, 1) if written.startswith(text))


def problems(tmp_path: Path, targets: str, job_extra: str = 'notify = ["mail"]') -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, targets, job_extra)
    return [str(p).split("\n")[0] for p in caught.value.problems]


def test_each_kind_of_target_loads_with_its_defaults(tmp_path: Path) -> None:
    settings = config(
        tmp_path, TARGETS, 'notify = ["mail", {target = "chat", when = "always"}, "hook"]'
    )
    mail, chat, hook = (settings.target(n) for n in ("mail", "chat", "hook"))
    assert isinstance(mail.channel, EmailChannel)
    assert (mail.channel.security, mail.channel.port) == (SmtpSecurity.TLS, 465)
    assert mail.channel.password is not None
    assert mail.channel.password.file == tmp_path / "smtp.pass"
    assert (mail.when, mail.retries, mail.retry_backoff) == (
        NotifyWhen.FAILURE,
        3,
        timedelta(seconds=10),
    )
    assert mail.line == line(tmp_path, "[notify.mail]")
    assert isinstance(chat.channel, AppriseChannel) and chat.when is NotifyWhen.CHANGE
    assert isinstance(hook.channel, CommandChannel)
    assert hook.channel.argv == ("/usr/local/bin/on-backup", "--quiet")
    assert settings.job("nightly").notify == (
        NotifyUse("mail"),
        NotifyUse("chat", NotifyWhen.ALWAYS),
        NotifyUse("hook"),
    )


def test_an_unknown_type_names_the_table_line(tmp_path: Path) -> None:
    (found,) = problems(tmp_path, '[notify.mail]\ntype = "mail"\n')
    at = line(tmp_path, 'type = "mail"')
    where = f"{tmp_path / 'scheduler.toml'}:{at}"
    assert (
        found
        == f"{where}: notify.mail.type: type must be one of email, apprise, command, got 'mail'"
    )


def test_a_missing_field_and_an_unknown_key_are_both_named(tmp_path: Path) -> None:
    found = problems(
        tmp_path, '[notify.mail]\ntype = "email"\nhost = "h"\nto = ["a@b"]\nsendr = "x"\n'
    )
    table, key = line(tmp_path, "[notify.mail]"), line(tmp_path, "sendr")
    assert any(f":{table}: notify.mail.sender: sender is missing" in p for p in found)
    assert any(f':{key}: notify.mail.sendr: unknown key "sendr"' in p for p in found)


def test_a_bad_policy_and_recipients_are_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        '[notify.mail]\ntype = "email"\nhost = "h"\nsender = "a@b"\nto = ["ops"]\n'
        'when = "sometimes"\n',
    )
    assert any("notify.mail.to: to must list at least one mail address" in p for p in found)
    assert any('notify.mail.when: "sometimes" is not one of' in p for p in found)


def test_a_job_policy_override_is_checked(tmp_path: Path) -> None:
    (found,) = problems(
        tmp_path,
        '[notify.hook]\ntype = "command"\ncommand = ["true"]\n',
        'notify = [{target = "hook", when = "never"}]',
    )
    at = line(tmp_path, "notify = [")
    assert f':{at}: jobs.nightly.notify.0.when: "never" is not one of' in found


def test_a_password_given_two_ways_names_the_target(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        '[notify.mail]\ntype = "email"\nhost = "h"\nsender = "a@b"\nto = ["o@b"]\n'
        'password = "x"\npassword_env = "Y"\n',
    )
    at = line(tmp_path, "[notify.mail]")
    assert found == [
        f"{tmp_path / 'scheduler.toml'}:{at}: notify.mail.password: password and password_env "
        "are both given"
    ]


def test_check_warns_about_alert_after_without_targets(tmp_path: Path) -> None:
    settings = config(tmp_path, "", 'alert_after = "26h"')
    (problem,) = check_config(settings, T0)
    assert problem.field == "jobs.nightly.alert_after"
    assert "reaches only the log" in problem.message
    assert (
        check_config(config(tmp_path, TARGETS, 'notify = ["hook"]\nalert_after = "1d"'), T0) == []
    )
