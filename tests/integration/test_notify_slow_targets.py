"""The daemon with one mail server that is closed, one that accepts and never answers, and a
working command hook: the hook gets its notice at once, and SIGTERM ends the daemon within
its bounds, recording what could not be delivered."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from cassy_scheduler.notify.journal import NoticeJournal
from cassy_scheduler.records import Outcome
from tests.integration.test_scheduler_helpers import (
    DaemonProcess,
    fire_soon,
    runs,
    wait_for,
    write_config,
)
from tests.receivers import free_port, silent_server

HOOK = "import json, sys\nopen(sys.argv[1], 'a').write(json.dumps(json.load(sys.stdin)) + '\\n')\n"


def test_a_hung_and_a_closed_mail_server_hold_up_no_other_target(tmp_path: Path) -> None:
    hook = tmp_path / "hook.py"
    hook.write_text(HOOK, encoding="utf-8")
    seen = tmp_path / "seen.jsonl"
    argv = json.dumps([sys.executable, str(hook), str(seen)])
    with silent_server() as hung_port:
        jobs = f"""
            [jobs.snap]
            type = "snapshot"
            cluster_name = "prod"
            schedule = "0 0 1 1 *"
            retries = 0
            notify = ["closed-mail", "hung-mail", "hook"]

            [notify.closed-mail]
            type = "email"
            host = "127.0.0.1"
            port = {free_port()}
            security = "plain"
            sender = "cassy@example.com"
            to = ["ops@example.com"]
            retries = 5

            [notify.hung-mail]
            type = "email"
            host = "127.0.0.1"
            port = {hung_port}
            security = "plain"
            sender = "cassy@example.com"
            to = ["ops@example.com"]

            [notify.hook]
            type = "command"
            command = {argv}
            """
        # The server is down: each run fails at once, and each failure is worth a notice.
        config = write_config(
            tmp_path, f"127.0.0.1:{free_port()}", jobs, scheduler='shutdown_grace = "5s"'
        )
        daemon = DaemonProcess(config).start()
        try:
            fire_soon(config)
            wait_for("the failed run", lambda: any(r.outcome.is_final for r in runs(config)), 120)
            wait_for("the hook's notice", lambda: seen.exists() and seen.read_text(), 60)
            assert "hung-mail" in daemon.output()  # its attempt is still open meanwhile
            daemon.signal(signal.SIGTERM)
            code = daemon.stop(timeout_s=90)  # bounded: the old daemon took minutes here
        finally:
            daemon.stop()
    assert code == 0, daemon.output()[-3000:]
    (run,) = runs(config)
    assert run.outcome is Outcome.FAILED
    (notice,) = [json.loads(line) for line in seen.read_text().splitlines()]
    assert notice["job"] == "snap" and notice["outcome"] == "failed"
    with NoticeJournal.open_read_only(config.parent / "state" / "history.sqlite") as journal:
        deliveries = journal.deliveries(run_id=run.run_id)
    by_target = {d.target: d for d in deliveries}  # the last attempt of each
    assert by_target["hook"].delivered
    assert not by_target["hung-mail"].delivered and not by_target["closed-mail"].delivered
    assert any("the scheduler stopped first" in (d.error or "") for d in deliveries)
