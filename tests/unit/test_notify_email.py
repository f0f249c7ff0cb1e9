"""Mail notices through a real SMTP server on loopback: subject, recipients, both parts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cassy_scheduler.config.targets import EmailChannel
from cassy_scheduler.notify import DeliveryError
from cassy_scheduler.notify.email import EmailSender
from cassy_scheduler.notify.render import RunContext, render_run
from cassy_scheduler.records import Outcome
from tests.receivers import free_port, self_signed, smtp_receiver
from tests.unit.fakes import T0
from tests.unit.notify_fakes import config, result

TARGET = """\
[notify.mail]
type = "email"
host = "127.0.0.1"
port = {port}
security = "plain"
sender = "backups@example.com"
to = ["ops@example.com", "dba@example.com"]
retries = 2
retry_backoff = "1s"
{extra}
"""


def channel(tmp_path: Path, port: int, extra: str = "") -> EmailChannel:
    settings = config(tmp_path, TARGET.format(port=port, extra=extra))
    target = settings.target("mail")
    assert isinstance(target.channel, EmailChannel)
    return target.channel


def test_a_failed_run_is_mailed_with_a_triage_subject_and_a_node_table(tmp_path: Path) -> None:
    settings = config(tmp_path, TARGET.format(port=1, extra=""))
    job = settings.job("nightly")
    notice = render_run(
        result(Outcome.FAILED, failed=("127.0.0.3",)),
        RunContext(job, settings.path, job.timetable.next_fire(T0).run_at),
    )
    with smtp_receiver() as receiver:
        EmailSender(channel(tmp_path, receiver.port)).send(notice)
        (mail,) = receiver.wait_for(1)
    assert mail.subject == "FAILED snapshot prod-cluster: 1 of 3 nodes failed"
    assert mail.recipients == ("ops@example.com", "dba@example.com")
    assert mail.sender == "backups@example.com"
    text, html = mail.part("plain"), mail.part("html")
    assert "127.0.0.3  FAILED" in text and "127.0.0.2  COMPLETED" in text
    assert "<td>127.0.0.3</td><td style='color:red'>FAILED</td>" in html
    for fact in ("prod-cluster-1 (prod-cluster)", "snap-42", "3m7s", "2025-06-10T00:30:00"):
        assert fact in text
    assert f"cassy-scheduler history --config {settings.path} --job nightly" in text
    assert "the backup failed on node(s) 127.0.0.3" in text


def test_login_uses_the_password_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    extra = 'username = "backup"\npassword_env = "TEST_SMTP_PASSWORD"'
    settings = config(tmp_path, TARGET.format(port=1, extra=extra))
    notice = render_run(result(), RunContext(settings.job("nightly"), settings.path, None))
    with smtp_receiver(auth=True) as receiver:
        EmailSender(channel(tmp_path, receiver.port, extra)).send(notice)
        (mail,) = receiver.wait_for(1)
    assert receiver.logins == [("backup", "s3cret")]
    assert mail.subject == "OK snapshot prod-cluster: 3 of 3 nodes completed"
    assert "Next scheduled run  not scheduled" in mail.part("plain")


def test_an_smtp_server_that_is_down_fails_the_attempt_naming_it(tmp_path: Path) -> None:
    port = free_port()
    settings = config(tmp_path, TARGET.format(port=port, extra=""))
    notice = render_run(result(), RunContext(settings.job("nightly"), settings.path, None))
    with pytest.raises(DeliveryError, match=f"127.0.0.1:{port} \\(plain\\) failed"):
        EmailSender(channel(tmp_path, port)).send(notice)


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_starttls_and_tls_verify_the_servers_certificate(tmp_path: Path, security: str) -> None:
    cert, key = self_signed(tmp_path)
    extra = f'ca_file = "{cert}"'
    settings = config(tmp_path, TARGET.format(port=1, extra=extra))
    notice = render_run(result(), RunContext(settings.job("nightly"), settings.path, None))
    with smtp_receiver(tls=(cert, key), starttls=security == "starttls") as receiver:
        target = TARGET.format(port=receiver.port, extra=extra).replace('"plain"', f'"{security}"')
        secured = config(tmp_path, target).target("mail").channel
        assert isinstance(secured, EmailChannel) and secured.security.value == security
        EmailSender(secured).send(notice)
        (mail,) = receiver.wait_for(1)
        assert mail.subject.startswith("OK snapshot")
        untrusted = dataclasses.replace(secured, ca_file=None)
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            EmailSender(untrusted).send(notice)
