"""What `check` finds, against an in-memory Cassy: each rule and its Nagios severity; and what
`check --offline` finds in the file alone, with no server anywhere."""

from __future__ import annotations

import json
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cassy_scheduler.cli import app
from cassy_scheduler.config.loader import load_config
from cassy_scheduler.history import RunHistory
from cassy_scheduler.preflight import Finding, Severity, preflight, worst
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.records import Outcome
from tests.unit.fakes import T0, FakeCassy, FakeClock, unavailable


def config_with(tmp_path: Path, jobs: str) -> Path:
    path = tmp_path / "scheduler.toml"
    path.write_text(textwrap.dedent('[scheduler]\nstate_dir = "state"\n' + jobs), encoding="utf-8")
    return path


def findings(
    tmp_path: Path, cassy: FakeCassy, jobs: str, history: RunHistory | None = None
) -> list[Finding]:
    return preflight(load_config(config_with(tmp_path, jobs)), cassy, T0, history)


def about(found: list[Finding], subject: str) -> list[tuple[Severity, str]]:
    return [(f.severity, f.message) for f in found if f.subject == subject]


SNAPSHOT = """
[jobs.snap]
type = "snapshot"
cluster_name = "prod"
schedule = "30 0 * * *"
"""
INCREMENTAL = """
[jobs.incr]
type = "incremental"
cluster_name = "prod"
schedule = "0 * * * *"
"""


def test_all_good_is_ok(tmp_path: Path) -> None:
    cassy = FakeCassy()
    cluster = cassy.add_cluster("prod")
    snapshot = cassy.add_backup(cluster, BackupType.NODE_SNAPSHOT)
    found = findings(tmp_path, cassy, SNAPSHOT + INCREMENTAL)
    assert worst(found) is Severity.OK, found
    assert any(snapshot in message for _, message in about(found, "jobs.incr"))


def test_an_unreachable_server_is_critical(tmp_path: Path) -> None:
    cassy = FakeCassy(errors={"ListClusters": [unavailable("ListClusters")]})
    found = findings(tmp_path, cassy, SNAPSHOT)
    assert worst(found) is Severity.CRITICAL
    ((severity, message),) = about(found, "server")
    assert severity is Severity.CRITICAL and "UNAVAILABLE" in message


def test_a_missing_cluster_is_critical_unless_it_will_be_registered(tmp_path: Path) -> None:
    found = findings(tmp_path, FakeCassy(), SNAPSHOT)
    ((severity, message),) = about(found, "jobs.snap")
    assert severity is Severity.CRITICAL and 'no cluster named "prod"' in message
    by_host = SNAPSHOT.replace('cluster_name = "prod"', 'cassandra_host = "127.0.0.9"')
    found = findings(tmp_path, FakeCassy(), by_host + "register_if_missing = true\n")
    ((severity, message),) = about(found, "jobs.snap")
    assert severity is Severity.WARNING and "registered at the first run" in message


def test_an_incremental_without_a_base_is_critical_or_a_warning_by_policy(
    tmp_path: Path,
) -> None:
    cassy = FakeCassy()
    cassy.add_cluster("prod")
    found = findings(tmp_path, cassy, SNAPSHOT + INCREMENTAL)
    assert any(s is Severity.CRITICAL and "will fail" in m for s, m in about(found, "jobs.incr"))
    found = findings(
        tmp_path, cassy, SNAPSHOT + INCREMENTAL + 'when_no_snapshot = "take-snapshot"\n'
    )
    assert worst(found) is Severity.WARNING
    assert any("takes one first" in m for _, m in about(found, "jobs.incr"))


@pytest.mark.parametrize("builtin", [False, True], ids=["scalar-cassy", "builtin-server"])
def test_one_cluster_for_cluster_wide_and_incremental_jobs(tmp_path: Path, builtin: bool) -> None:
    """Critical on Scalar's Cassy (the seed's rule); fine where a cut keeps incremental files."""
    cassy = FakeCassy(builtin=builtin)
    cluster = cassy.add_cluster("prod", ("127.0.0.2",))
    cassy.add_backup(cluster, BackupType.NODE_SNAPSHOT)
    wide = """
    [jobs.wide]
    type = "cluster-wide"
    cassandra_host = "127.0.0.2"
    schedule = "15 0 * * 0"
    """
    found = findings(tmp_path, cassy, SNAPSHOT + INCREMENTAL + wide)
    about_cluster = about(found, f"cluster {cluster.cluster_id}")
    if builtin:
        assert about_cluster == []
        assert worst(found) is Severity.OK, found
    else:
        ((severity, message),) = about_cluster
        assert severity is Severity.CRITICAL
        assert "wide" in message and "incr" in message


def test_recent_failures_and_overdue_successes_are_reported(tmp_path: Path) -> None:
    cassy = FakeCassy()
    cassy.add_cluster("prod")
    clock = FakeClock(T0 - timedelta(days=2))
    with RunHistory.open(tmp_path / "h.sqlite", clock) as history:
        ok = history.start_run("snap", "snapshot", T0 - timedelta(days=2))
        history.finish_run(ok.run_id, Outcome.SUCCEEDED)
        bad = history.start_run("snap", "snapshot", T0 - timedelta(days=1))
        history.finish_run(bad.run_id, Outcome.FAILED, error="node 127.0.0.2 failed")
        found = findings(tmp_path, cassy, SNAPSHOT + 'alert_after = "26h"\n', history)
    messages = about(found, "jobs.snap")
    assert any(s is Severity.WARNING and "failed: node 127.0.0.2" in m for s, m in messages)
    assert any(s is Severity.CRITICAL and "alert_after" in m for s, m in messages)


# --- check --offline: the file alone -----------------------------------------------------------

NOBODY = '[server]\naddress = "127.0.0.1:1"\ncall_deadline = "1s"\n'  # no server listens there


def check_offline(path: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["check", "--offline", "--config", str(path), *extra], env={"COLUMNS": "200"}
    )
    return result.exit_code, result.stdout


def test_offline_a_good_file_is_ok_without_any_server(tmp_path: Path) -> None:
    path = config_with(tmp_path, NOBODY + SNAPSHOT + INCREMENTAL)
    code, output = check_offline(path, "--json")
    assert code == 0, output
    report = json.loads(output)
    assert report["status"] == "OK"
    assert f"{path} loads: 2 job(s)" in report["findings"][0]["message"]
    (server,) = [f for f in report["findings"] if f["subject"] == "server"]
    assert server["severity"] == "OK" and "not contacted" in server["message"]
    code, output = check_offline(path)
    assert code == 0 and output.rstrip().endswith("OK"), output


def test_offline_a_bad_file_is_critical_naming_file_line_and_field(tmp_path: Path) -> None:
    path = config_with(tmp_path, NOBODY + SNAPSHOT.replace('"30 0 * * *"', '"30 25 * * *"'))
    line = path.read_text(encoding="utf-8").splitlines().index('schedule = "30 25 * * *"') + 1
    code, output = check_offline(path, "--json")
    assert code == 2, output
    report = json.loads(output)
    assert report["status"] == "CRITICAL"
    (finding,) = report["findings"]
    assert finding["severity"] == "CRITICAL" and finding["subject"] == "jobs.snap.schedule"
    assert finding["message"].startswith(f"{path}:{line}: jobs.snap.schedule: ")
    assert finding["hint"]
    code, output = check_offline(path)
    assert code == 2 and "jobs.snap.schedule" in output and "CRITICAL" in output


def test_offline_advice_across_jobs_is_a_warning(tmp_path: Path) -> None:
    path = config_with(tmp_path, NOBODY + INCREMENTAL)  # nothing takes the snapshot it extends
    code, output = check_offline(path, "--json")
    assert code == 1, output
    warnings = [f for f in json.loads(output)["findings"] if f["severity"] == "WARNING"]
    assert [f["subject"] for f in warnings] == ["jobs.incr.when_no_snapshot"]
