"""Apprise and command targets against real receivers: a JSON webhook on a loopback HTTP
server, and a command hook that writes down its environment and stdin."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cassy_scheduler.history import RunHistory
from cassy_scheduler.notify.command import BASE_ENV
from cassy_scheduler.notify.dispatcher import Dispatcher
from cassy_scheduler.notify.journal import NoticeJournal
from cassy_scheduler.records import Outcome
from tests.receivers import free_port, http_receiver
from tests.unit.fakes import FakeClock
from tests.unit.notify_fakes import config, result

HOOK = """\
import json, os, sys
facts = json.load(sys.stdin)
env = {k: v for k, v in os.environ.items() if k.startswith("CASSY_")}
with open(sys.argv[1], "w") as out:
    json.dump({"env": env, "stdin": facts}, out)
"""


def test_the_json_webhook_receives_the_subject_and_body(tmp_path: Path) -> None:
    with (
        http_receiver() as receiver,
        RunHistory.open(tmp_path / "h.sqlite") as history,
        NoticeJournal.open(tmp_path / "h.sqlite") as journal,
    ):
        targets = f"""\
[notify.chat]
type = "apprise"
urls = ["json://127.0.0.1:{receiver.port}/hooks/backups"]
when = "always"
"""
        settings = config(tmp_path, targets, 'notify = ["chat"]')
        dispatcher = Dispatcher(settings, history, journal, FakeClock())
        dispatcher.run_finished(result(Outcome.FAILED, run_id=5, failed=("127.0.0.4",)))
        ((path, headers, _),) = receiver.wait_for(1)
        assert dispatcher.wait_idle(30)
        dispatcher.close(30)
        body = receiver.json(0)
        assert [d.delivered for d in journal.deliveries(run_id=5)] == [True]
    assert path == "/hooks/backups"
    assert headers["content-type"].startswith("application/json")
    assert body["title"] == "FAILED snapshot prod-cluster: 1 of 3 nodes failed"
    assert body["type"] == "failure"
    assert "127.0.0.4  FAILED" in body["message"]


def test_a_webhook_that_is_down_is_recorded_as_not_delivered(tmp_path: Path) -> None:
    targets = f"""\
[notify.chat]
type = "apprise"
urls = ["json://127.0.0.1:{free_port()}/hook"]
when = "always"
retries = 1
"""
    with (
        RunHistory.open(tmp_path / "h.sqlite") as history,
        NoticeJournal.open(tmp_path / "h.sqlite") as journal,
    ):
        dispatcher = Dispatcher(
            config(tmp_path, targets, 'notify = ["chat"]'), history, journal, FakeClock()
        )
        dispatcher.run_finished(result(run_id=9))
        assert dispatcher.wait_idle(60)
        dispatcher.close(30)
        tries = journal.deliveries(run_id=9)
    assert [(t.attempt, t.delivered) for t in tries] == [(1, False), (2, False)]
    assert (
        tries[0].error and "apprise could not deliver to apprise json://127.0.0.1" in tries[0].error
    )


def test_a_command_hook_gets_the_facts_in_its_environment_and_on_stdin(tmp_path: Path) -> None:
    script = tmp_path / "hook.py"
    script.write_text(HOOK, encoding="utf-8")
    seen = tmp_path / "seen.json"
    targets = f"""\
[notify.hook]
type = "command"
command = [{json.dumps(sys.executable)}, {json.dumps(str(script))}, {json.dumps(str(seen))}]
when = "failure"
"""
    with (
        RunHistory.open(tmp_path / "h.sqlite") as history,
        NoticeJournal.open(tmp_path / "h.sqlite") as journal,
    ):
        dispatcher = Dispatcher(
            config(tmp_path, targets, 'notify = ["hook"]'), history, journal, FakeClock()
        )
        dispatcher.run_finished(result(run_id=1))  # succeeded: `failure` stays quiet
        dispatcher.run_finished(result(Outcome.FAILED, run_id=2, failed=("127.0.0.2",)))
        assert dispatcher.wait_idle(60)
        dispatcher.close(30)
        assert [(d.run_id, d.delivered) for d in journal.deliveries()] == [(2, True)]
    got = json.loads(seen.read_text())
    env, facts = got["env"], got["stdin"]
    assert env["CASSY_JOB"] == "nightly" and env["CASSY_OUTCOME"] == "failed"
    assert env["CASSY_RUN_ID"] == "2" and env["CASSY_SNAPSHOT_ID"] == "snap-42"
    assert env["CASSY_CLUSTER_ID"] == "prod-cluster-1" and env["CASSY_FAILED_NODES"] == "127.0.0.2"
    assert env["CASSY_EVENT"] == "run" and env["CASSY_FAILURE"] == "nodes-failed"
    assert env["CASSY_SUBJECT"] == "FAILED snapshot prod-cluster: 1 of 3 nodes failed"
    assert env["CASSY_NEXT_RUN"].startswith("20")
    assert facts["nodes"][1] == {"node": "127.0.0.3", "status": "COMPLETED", "reason": None}
    assert facts["history_command"].endswith("--job nightly")


def test_a_hook_that_fails_or_hangs_is_a_failed_delivery(tmp_path: Path) -> None:
    targets = f"""\
[notify.fails]
type = "command"
command = [{json.dumps(sys.executable)}, "-c", "import sys; print('no route'); sys.exit(3)"]
when = "always"
retries = 0

[notify.hangs]
type = "command"
command = [{json.dumps(sys.executable)}, "-c", "import time; time.sleep(60)"]
when = "always"
retries = 0
timeout = "1s"
"""
    with (
        RunHistory.open(tmp_path / "h.sqlite") as history,
        NoticeJournal.open(tmp_path / "h.sqlite") as journal,
    ):
        settings = config(tmp_path, targets, 'notify = ["fails", "hangs"]')
        dispatcher = Dispatcher(settings, history, journal, FakeClock())
        dispatcher.run_finished(result(run_id=4))
        assert dispatcher.wait_idle(60)
        dispatcher.close(30)
        errors = {d.target: d.error for d in journal.deliveries(run_id=4)}
    assert errors["fails"] is not None and errors["fails"].endswith("exited with 3: no route")
    assert errors["hangs"] is not None and "did not finish within 0:00:01" in errors["hangs"]


def test_a_command_hook_gets_no_secrets_from_the_schedulers_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler's environment holds SMTP_PASSWORD and the like: a hook gets the facts,
    PATH, HOME, LANG, and only what its target names in `env`."""
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2")
    monkeypatch.setenv("HOOK_TOKEN", "for-the-hook")
    script = tmp_path / "hook.py"
    script.write_text(
        "import json, os, sys\njson.dump(dict(os.environ), open(sys.argv[1], 'w'))\n",
        encoding="utf-8",
    )
    seen = tmp_path / "seen.json"
    targets = f"""\
[notify.hook]
type = "command"
command = [{json.dumps(sys.executable)}, {json.dumps(str(script))}, {json.dumps(str(seen))}]
env = ["HOOK_TOKEN"]
when = "always"
"""
    with (
        RunHistory.open(tmp_path / "h.sqlite") as history,
        NoticeJournal.open(tmp_path / "h.sqlite") as journal,
    ):
        dispatcher = Dispatcher(
            config(tmp_path, targets, 'notify = ["hook"]'), history, journal, FakeClock()
        )
        dispatcher.run_finished(result(run_id=1))
        assert dispatcher.wait_idle(60)
        dispatcher.close(30)
    env = json.loads(seen.read_text())
    assert "SMTP_PASSWORD" not in env and "hunter2" not in json.dumps(env)
    assert env["HOOK_TOKEN"] == "for-the-hook" and env["CASSY_JOB"] == "nightly"
    assert {k for k in env if not k.startswith("CASSY_")} <= {"HOOK_TOKEN", *BASE_ENV}
