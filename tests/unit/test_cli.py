"""The verbs people and cron use, run in-process through typer's test runner. The server here
is an address nobody listens on; verbs that need a real server are tested end to end."""

from __future__ import annotations

import json
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cassy_scheduler.cli import app
from cassy_scheduler.config.loader import load_config
from cassy_scheduler.config.model import ClusterRef
from cassy_scheduler.configfile.errors import ConfigError
from cassy_scheduler.jobtype import JobType
from cassy_scheduler.scheduling.oneshot import OneShotError, one_shot_job

CONFIG = """\
# The test config.
[scheduler]
state_dir = "state"

[server]
address = "127.0.0.1:1"
call_deadline = "2s"

[defaults]
cluster_name = "prod"
retries = 0

# Nightly, as the old cron line did.
[jobs.nightly]
type = "snapshot"
schedule = "30 0 * * *"    # at 00:30 every day
jitter = "2m"

[jobs.hourly]
type = "incremental"
schedule = "0 * * * *"  # keep me
timezone = "Europe/Berlin"

[jobs.weekly]
type = "snapshot"
cluster_id = "other-1"
schedule = "0 15 0 * * 0"
enabled = false
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "scheduler.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def cli(*args: str) -> tuple[int, str]:
    """Exit code and what was printed; with --json only stdout, which must be the JSON."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout if "--json" in args else result.output


def test_jobs_lists_schedules_in_words_with_next_runs(config: Path) -> None:
    code, output = cli("jobs", "--config", str(config), "--json", "--next", "2")
    assert code == 0, output
    jobs = {j["name"]: j for j in json.loads(output)}
    assert jobs["nightly"]["description"] == "at 00:30 every day, up to 2m later"
    assert len(jobs["nightly"]["next_runs"]) == 2
    assert jobs["hourly"]["timezone"] == "Europe/Berlin"
    assert jobs["weekly"]["next_runs"] == [] and not jobs["weekly"]["enabled"]
    assert jobs["nightly"]["last_run"] is None
    code, output = cli("jobs", "--config", str(config))
    assert code == 0 and "nightly" in output and "every day" in output


def test_crontab_writes_one_backup_line_per_job(config: Path) -> None:
    code, output = cli("crontab", "--config", str(config), "--command", "/usr/bin/cs")
    assert code == 0, output
    lines = output.splitlines()
    assert f"30 0 * * * /usr/bin/cs backup snapshot --config {config} --job nightly" in lines
    assert "CRON_TZ=Europe/Berlin" in lines
    assert any(line.startswith("0 * * * * /usr/bin/cs backup incremental") for line in lines)
    weekly = [line for line in lines if "--job weekly" in line]
    assert weekly and weekly[0].startswith("# ")  # disabled, and cron has no seconds field


def test_schedule_rewrites_the_job_and_keeps_the_comments(config: Path) -> None:
    code, output = cli("schedule", "nightly", "45 1 * * *", "--config", str(config))
    assert code == 0, output
    assert "at 01:45 every day" in output
    text = config.read_text(encoding="utf-8")
    assert 'schedule = "45 1 * * *"    # at 01:45 every day' in text
    assert "# Nightly, as the old cron line did." in text and "# The test config." in text
    assert load_config(config).job("nightly").schedule.expression == "45 1 * * *"
    code, _ = cli("schedule", "hourly", "30 * * * *", "--config", str(config))
    assert code == 0
    assert 'schedule = "30 * * * *"  # keep me' in config.read_text(encoding="utf-8")


def test_schedule_refuses_a_bad_expression_and_leaves_the_file(config: Path) -> None:
    code, output = cli("schedule", "nightly", "61 0 * * *", "--config", str(config))
    assert code == 2
    assert 'minute field "61"' in output
    assert config.read_text(encoding="utf-8") == CONFIG


def test_schedule_dry_run_only_shows(config: Path) -> None:
    code, output = cli("schedule", "nightly", "*/15 * * * *", "--config", str(config), "--dry-run")
    assert code == 0 and "every 15 minutes" in output
    assert config.read_text(encoding="utf-8") == CONFIG


def test_schedule_of_an_unknown_job_names_the_known_ones(config: Path) -> None:
    code, output = cli("schedule", "nope", "0 * * * *", "--config", str(config))
    assert code == 2 and "nightly, hourly, weekly" in output


def test_a_schedule_inherited_from_defaults_is_written_on_the_job(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        textwrap.dedent(
            """\
            [scheduler]
            state_dir = "state"
            [defaults]
            cluster_name = "prod"
            schedule = "0 * * * *"
            [jobs.a]
            type = "snapshot"
            [jobs.b]
            type = "snapshot"
            """
        )
    )
    code, output = cli("schedule", "a", "5 * * * *", "--config", str(path))
    assert code == 0, output
    loaded = load_config(path)
    assert loaded.job("a").schedule.expression == "5 * * * *"
    assert loaded.job("b").schedule.expression == "0 * * * *"


def test_a_bad_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(CONFIG.replace("retries = 0", 'retries = "0"'))
    for verb in ("jobs", "backup snapshot", "history", "crontab", "run"):
        code, output = cli(*verb.split(), "--config", str(path))
        assert code == 2, (verb, output)
        assert "defaults.retries" in output


def test_backup_needs_a_cluster_when_the_config_has_several_jobs_of_that_kind(
    config: Path,
) -> None:
    code, output = cli("backup", "snapshot", "--config", str(config))
    assert code == 2
    assert "nightly, weekly" in output and "CLUSTER_ID" in output


def test_backup_with_the_server_down_exits_5_and_records_the_failure(config: Path) -> None:
    code, output = cli("backup", "snapshot", "prod-1", "--config", str(config), "--json")
    assert code == 5, output
    result = json.loads(output)
    assert (result["outcome"], result["failure"]) == ("failed", "unreachable")
    assert result["job"] == "snapshot@prod-1"
    code, output = cli("history", "--config", str(config), "--json")
    assert code == 0
    (run,) = json.loads(output)
    assert run["outcome"] == "failed" and "UNAVAILABLE" in run["error"]
    code, output = cli("history", "--config", str(config))
    assert code == 0 and "snapshot@prod-1" in output


def test_history_before_any_run_says_so(config: Path) -> None:
    code, output = cli("history", "--config", str(config))
    assert code == 0 and "no runs recorded yet" in output
    code, output = cli("history", "--config", str(config), "--json")
    assert json.loads(output) == []


def test_check_is_critical_when_the_server_is_unreachable(config: Path) -> None:
    code, output = cli("check", "--config", str(config), "--json")
    assert code == 2
    report = json.loads(output)
    assert report["status"] == "CRITICAL"
    server = [f for f in report["findings"] if f["subject"] == "server"]
    assert server[0]["severity"] == "CRITICAL" and "UNAVAILABLE" in server[0]["message"]


def test_check_is_critical_for_a_config_that_does_not_load(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(CONFIG.replace('type = "incremental"', 'type = "incremetal"'))
    code, output = cli("check", "--config", str(path), "--json")
    assert code == 2
    (finding,) = json.loads(output)["findings"]
    assert finding["subject"] == "jobs.hourly.type" and "incremental" in finding["hint"]


def test_cassy_verbs_exit_5_when_the_server_is_unreachable(config: Path) -> None:
    for verb in ("clusters", "backups prod-1", "register 127.0.0.9"):
        code, output = cli(*verb.split(), "--config", str(config))
        assert code == 5, (verb, output)
        assert "UNAVAILABLE" in output


def test_one_shot_picks_the_configured_job_for_that_cluster(config: Path) -> None:
    settings = load_config(config)
    assert one_shot_job(settings, JobType.SNAPSHOT, "other-1").name == "weekly"
    assert one_shot_job(settings, JobType.INCREMENTAL).name == "hourly"
    adhoc = one_shot_job(settings, JobType.SNAPSHOT, "prod-9")
    assert adhoc.name == "snapshot@prod-9" and adhoc.cluster.cluster_id == "prod-9"
    assert adhoc.retries == 0 and not adhoc.jitter
    assert one_shot_job(settings, JobType.SNAPSHOT, job_name="nightly").name == "nightly"
    with pytest.raises(OneShotError, match="is a snapshot job, not incremental"):
        one_shot_job(settings, JobType.INCREMENTAL, job_name="nightly")
    with pytest.raises(OneShotError, match='no job "x"'):
        one_shot_job(settings, JobType.SNAPSHOT, job_name="x")
    with pytest.raises(OneShotError, match="0 cluster-wide job"):
        one_shot_job(settings, JobType.CLUSTER_WIDE)


def test_a_file_without_jobs_still_gives_cron_its_defaults(tmp_path: Path) -> None:
    """`jobs = {}` and a [defaults] table: cron's ad-hoc runs poll and wait as it says."""
    path = tmp_path / "scheduler.toml"
    path.write_text(
        'jobs = {}\n[server]\naddress = "127.0.0.1:1"\n'
        '[defaults]\npoll_interval = "2s"\nwait_timeout = "30m"\nretries = 1\n'
    )
    adhoc = one_shot_job(load_config(path), JobType.SNAPSHOT, "prod-9")
    assert adhoc.name == "snapshot@prod-9"
    assert (adhoc.poll_interval, adhoc.wait_timeout, adhoc.retries) == (
        timedelta(seconds=2),
        timedelta(minutes=30),
        1,
    )


def test_defaults_of_a_file_without_jobs_are_checked_as_a_jobs_would_be(tmp_path: Path) -> None:
    path = tmp_path / "scheduler.toml"
    path.write_text(
        'jobs = {}\n[server]\naddress = "127.0.0.1:1"\n[defaults]\npoll_interval = "0s"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert (problem.field, problem.line) == ("defaults.poll_interval", 5)
    assert "longer than zero" in problem.message


def test_a_cron_line_with_a_cluster_id_runs_as_the_job_that_names_that_cluster(
    config: Path,
) -> None:
    """The seed's cron lines give an id; the job names the same cluster by its name."""
    settings = load_config(config)

    def resolve(ref: ClusterRef) -> str | None:
        return "prod-7" if ref.cluster_name == "prod" else None

    chosen = one_shot_job(settings, JobType.SNAPSHOT, "prod-7", resolve=resolve)
    assert chosen.name == "nightly" and chosen.cluster == ClusterRef(cluster_id="prod-7")
    incremental = one_shot_job(settings, JobType.INCREMENTAL, "prod-7", resolve=resolve)
    assert incremental.name == "hourly"
    assert one_shot_job(settings, JobType.SNAPSHOT, "prod-8", resolve=resolve).name == (
        "snapshot@prod-8"
    )


@pytest.mark.parametrize("offline", [True, False])
def test_check_is_critical_for_a_file_with_no_jobs(tmp_path: Path, offline: bool) -> None:
    """An emptied file, or one cut after its first table, loads but backs nothing up."""
    for text in ("", CONFIG[: CONFIG.index("[server]")]):
        path = tmp_path / "s.toml"
        path.write_text(text)
        code, output = cli("check", "--config", str(path), "--json", *(["--offline"] * offline))
        assert code == 2, output
        (finding,) = [f for f in json.loads(output)["findings"] if f["severity"] == "CRITICAL"]
        assert finding["subject"] == "jobs" and "defines no jobs" in finding["message"]
        assert "jobs = {}" in finding["hint"]
    path.write_text("jobs = {}\n")
    code, output = cli("check", "--config", str(path), "--json", "--offline")
    assert code == 1 and "nothing is backed up" in output


def test_run_refuses_to_start_on_a_file_with_no_jobs(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[scheduler]\nstate_dir = "state"\n')
    code, output = cli("run", "--config", str(path))
    assert code == 2 and "defines no jobs" in output


def test_a_one_shot_backup_of_another_cluster_takes_no_jobs_rules(tmp_path: Path) -> None:
    path = tmp_path / "scheduler.toml"
    path.write_text(
        '[server]\naddress = "127.0.0.1:1"\n'
        '[jobs.nightly]\ntype = "snapshot"\ncluster_name = "prod"\nschedule = "0 1 * * *"\n'
        "keep_last = 3\n"
    )
    settings = load_config(path)
    assert one_shot_job(settings, JobType.SNAPSHOT, "prod-b").retention is None
    assert one_shot_job(settings, JobType.SNAPSHOT, "prod-b", "nightly").retention is None
    same = one_shot_job(settings, JobType.SNAPSHOT, "prod-1", "nightly", lambda ref: "prod-1")
    assert same.retention is not None  # its own cluster, named by id: its rules apply
    assert one_shot_job(settings, JobType.SNAPSHOT, job_name="nightly").retention is not None
