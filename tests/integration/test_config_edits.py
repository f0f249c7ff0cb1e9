"""The daemon as a process while its config file is emptied, cut short and deleted: it keeps
its jobs, says so at ERROR, and alerts its targets; a good file is taken again, and said."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.integration.test_scheduler_helpers import DaemonProcess, wait_for, write_config

HOOK = "import json, sys\nopen(sys.argv[1], 'a').write(json.dumps(json.load(sys.stdin)) + '\\n')\n"


def notices(seen: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in seen.read_text().splitlines()] if seen.exists() else []


def test_an_emptied_cut_or_deleted_config_keeps_the_jobs_and_is_alerted(tmp_path: Path) -> None:
    hook = tmp_path / "hook.py"
    hook.write_text(HOOK, encoding="utf-8")
    seen = tmp_path / "seen.jsonl"
    jobs = f"""
        [jobs.snap]
        type = "snapshot"
        cluster_name = "prod"
        schedule = "0 0 1 1 *"

        [notify.hook]
        type = "command"
        command = {json.dumps([sys.executable, str(hook), str(seen)])}
        """
    config = write_config(tmp_path, "127.0.0.1:20551", jobs)
    good = config.read_text()
    daemon = DaemonProcess(config).start()
    try:
        config.write_text("")  # emptied
        wait_for("the refusal's alert", lambda: len(notices(seen)) == 1, 60)
        config.write_text(good[: good.index("[server]")])  # cut after its first table
        wait_for("the second alert", lambda: len(notices(seen)) == 2, 60)
        config.unlink()
        wait_for("the vanished file's alert", lambda: len(notices(seen)) == 3, 60)
        config.write_text(good)
        wait_for("the recovery notice", lambda: len(notices(seen)) == 4, 60)
    finally:
        assert daemon.stop() == 0
    emptied, cut, gone, back = notices(seen)
    assert emptied["outcome"] == "refused" and "defines no jobs" in str(emptied["subject"])
    assert any("[server] table is gone" in str(p) for p in list(emptied["problems"]))
    assert cut["outcome"] == "refused"
    assert gone["outcome"] == "refused" and gone["trigger"] == "the file is gone"
    assert "does not exist" in str(gone["subject"])
    assert back["outcome"] == "accepted" and back["jobs_running"] == 1
    log = daemon.output()
    assert log.count("config reload refused") == 3
    assert "keep running the previous config (1 job(s))" in log
    assert "job removed" not in log
