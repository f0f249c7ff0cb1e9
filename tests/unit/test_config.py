"""Loading scheduler.toml: defaults, and one test per kind of error, each checking that the
message names the file, the line and the field, and says what to write instead."""

from __future__ import annotations

import logging
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cassy_scheduler.config.checks import check_config
from cassy_scheduler.config.loader import load_config
from cassy_scheduler.config.model import DEFAULT_ADDRESS, ClusterRef, WhenNoSnapshot
from cassy_scheduler.config.targets import NotifyUse
from cassy_scheduler.configfile.durations import format_duration, parse_duration
from cassy_scheduler.configfile.errors import ConfigError, ConfigProblem
from cassy_scheduler.configfile.secrets import Secret
from cassy_scheduler.jobtype import JobType
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.timetable import MissedRunPolicy

EXAMPLE = Path(__file__).parents[2] / "examples" / "scheduler.toml"

BASE = """
[defaults]
cassandra_host = "10.0.0.1"

[jobs.nightly]
type = "snapshot"
schedule = "30 0 * * *"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scheduler.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line_with(path: Path, fragment: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, start=1) if fragment in line)


def problems(path: Path) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return list(caught.value.problems)


def only_problem(path: Path, field: str, line_fragment: str) -> ConfigProblem:
    """The single problem, checked to name this file, the line holding `line_fragment`, and
    `field`; its printed form must carry all three and a hint."""
    found = problems(path)
    assert len(found) == 1, found
    problem = found[0]
    line = line_with(path, line_fragment)
    assert (problem.file, problem.line, problem.field) == (str(path), line, field)
    assert problem.hint
    assert f"{path}:{line}: {field}: " in str(problem)
    return problem


# --- loading what is right --------------------------------------------------------------------


def test_the_example_config_loads_and_passes_check() -> None:
    config = load_config(EXAMPLE)
    kinds = ["daily-cluster-wide", "weekly-snapshot", "hourly-incremental"]
    assert [j.name for j in config.jobs] == [
        f"{cluster}-{kind}" for cluster in ("orders", "analytics") for kind in kinds
    ]
    assert config.server.address == DEFAULT_ADDRESS
    daily = config.job("orders-daily-cluster-wide")
    assert daily.type.backup_type is BackupType.CLUSTER_SNAPSHOT
    assert daily.jitter == timedelta(minutes=2)
    assert daily.cluster == ClusterRef(cluster_name="orders")
    assert config.job("analytics-weekly-snapshot").cluster == ClusterRef(
        cassandra_host="10.0.2.1", register_if_missing=True
    )
    assert check_config(config, datetime(2025, 6, 10, tzinfo=UTC)) == []


def test_defaults_apply_and_a_job_overrides_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [server]
        address = "cassy.example:20051"
        call_deadline = "1m"

        [server.tls]
        ca_file = "ca.pem"

        [defaults]
        cluster_name = "prod"
        timezone = "Europe/Berlin"
        retries = 5
        notify = ["ops"]

        [notify.ops]
        type = "email"
        host = "127.0.0.1"
        sender = "backups@example.com"
        to = ["ops@example.com"]

        [jobs.hourly]
        type = "incremental"
        cluster_id = "prod-1234"
        schedule = "@hourly"
        retries = 0
        missed_runs = "skip"
        misfire_grace = "10m"
        alert_after = "3h"

        [jobs.nightly]
        type = "snapshot"
        schedule = "30 0 * * *"
        """,
    )
    config = load_config(path)
    assert config.server.call_deadline == timedelta(minutes=1)
    assert config.server.tls is not None and config.server.tls.ca_file == tmp_path / "ca.pem"
    hourly, nightly = config.jobs
    assert hourly.cluster == ClusterRef(cluster_id="prod-1234")
    assert (hourly.retries, hourly.missed_runs) == (0, MissedRunPolicy.SKIP)
    assert (hourly.misfire_grace, hourly.alert_after) == (timedelta(minutes=10), timedelta(hours=3))
    assert hourly.schedule.timezone_name == "Europe/Berlin"
    assert hourly.when_no_snapshot is WhenNoSnapshot.FAIL
    assert nightly.cluster == ClusterRef(cluster_name="prod")
    assert (nightly.retries, nightly.notify, nightly.type) == (
        5,
        (NotifyUse("ops"),),
        JobType.SNAPSHOT,
    )
    assert (nightly.wait_timeout, nightly.poll_interval) == (
        timedelta(hours=2),
        timedelta(seconds=10),
    )
    assert nightly.source.line == line_with(path, "[jobs.nightly]")
    assert config.notify[0].name == "ops" and config.notify[0].kind == "email"


# --- one test per kind of error ---------------------------------------------------------------


def test_a_missing_file_says_where_to_start(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path / "nope.toml")
    assert problem.file == str(tmp_path / "nope.toml")
    assert "does not exist" in problem.message
    assert "examples/scheduler.toml" in problem.hint


def test_toml_syntax_errors_give_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "jitter = 5m\n")
    (problem,) = problems(path)
    assert problem.line == line_with(path, "jitter = 5m")
    assert "not valid TOML" in problem.message


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + 'jiter = "5m"\n')
    problem = only_problem(path, "jobs.nightly.jiter", "jiter =")
    assert problem.message == 'unknown key "jiter"'
    assert problem.hint == 'did you mean "jitter"?'


def test_unknown_table_suggests_the_close_one(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + '[servre]\naddress = "x:1"\n')
    problem = only_problem(path, "servre", "[servre]")
    assert "server" in problem.hint


def test_job_only_keys_in_defaults_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[defaults]\ntype = "snapshot"\n' + BASE.replace("[defaults]", ""))
    problem = only_problem(path, "defaults.type", 'type = "snapshot"')
    assert "[jobs.NAME]" in problem.hint


def test_bad_cron_names_the_expression_the_field_and_gives_an_example(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("30 0 * * *", "30 25 * * *"))
    problem = only_problem(path, "jobs.nightly.schedule", "schedule =")
    assert '"30 25 * * *"' in problem.message and "hour" in problem.message
    assert "0-23" in problem.hint and "for example" in problem.hint


def test_bad_timezone_suggests_close_names(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + 'timezone = "America/NewYork"\n')
    problem = only_problem(path, "jobs.nightly.timezone", "timezone =")
    assert "America/New_York" in problem.hint


def test_bad_duration_says_how_to_write_one(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + 'wait_timeout = "2 hours"\n')
    problem = only_problem(path, "jobs.nightly.wait_timeout", "wait_timeout =")
    assert '"2 hours" is not a duration' in problem.message
    assert '"1h30m"' in problem.hint


def test_wrong_value_type_says_how_to_write_it(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + 'retries = "3"\n')
    problem = only_problem(path, "jobs.nightly.retries", "retries =")
    assert "whole number" in problem.message and "without quotes" in problem.hint


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('heartbeat_url = "ftp://hc.example/0a1b2c3d-secret"\n', "jobs.nightly.heartbeat_url"),
        ("heartbeat_url = 98127361\n", "jobs.nightly.heartbeat_url"),
    ],
)
def test_a_value_that_may_be_a_secret_is_never_repeated(
    tmp_path: Path, line: str, field: str
) -> None:
    """Problems are logged and, on a refused reload, sent to every target."""
    path = write(tmp_path, BASE + line)
    problem = only_problem(path, field, "heartbeat_url =")
    assert "secret" not in str(problem) and "98127361" not in str(problem)
    assert "not shown" in problem.message


def test_a_list_written_as_a_string_says_how_to_write_that_list(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + 'notify = "ops-mail"\n')
    found = problems(path)
    assert any(p.hint == 'write it in brackets, e.g. notify = ["ops-mail"]' for p in found), found


def test_unknown_choice_suggests_the_close_one(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace('"snapshot"', '"snapshots"'))
    problem = only_problem(path, "jobs.nightly.type", "type =")
    assert problem.hint == 'did you mean "snapshot"?'


def test_missing_type_points_at_the_job_table(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace('type = "snapshot"\n', ""))
    problem = only_problem(path, "jobs.nightly.type", "[jobs.nightly]")
    assert 'type = "snapshot"' in problem.hint


def test_missing_schedule_points_at_the_job_table(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace('schedule = "30 0 * * *"\n', ""))
    problem = only_problem(path, "jobs.nightly", "[jobs.nightly]")
    assert "schedule" in problem.message and "[defaults]" in problem.hint


def test_a_job_without_a_cluster_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace('cassandra_host = "10.0.0.1"\n', ""))
    problem = only_problem(path, "jobs.nightly", "[jobs.nightly]")
    assert "cluster" in problem.message and "cluster_id" in problem.hint


def test_a_job_naming_its_cluster_two_ways_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + 'cluster_id = "a"\ncluster_name = "b"\n')
    problem = only_problem(path, "jobs.nightly.cluster_name", "cluster_name =")
    assert "cluster_id and cluster_name" in problem.message


def test_register_if_missing_needs_a_host(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + 'cluster_id = "a"\nregister_if_missing = true\n')
    problem = only_problem(path, "jobs.nightly.register_if_missing", "register_if_missing")
    assert "cassandra_host" in problem.message


def test_when_no_snapshot_is_only_for_incremental_jobs(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + 'when_no_snapshot = "take-snapshot"\n')
    problem = only_problem(path, "jobs.nightly.when_no_snapshot", "when_no_snapshot")
    assert "only to incremental jobs" in problem.message


def test_poll_interval_must_fit_in_wait_timeout(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + 'wait_timeout = "1m"\npoll_interval = "5m"\n')
    problem = only_problem(path, "jobs.nightly.poll_interval", "poll_interval")
    assert "longer than wait_timeout" in problem.message


def test_zero_durations_are_refused_where_time_must_pass(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + 'wait_timeout = "0s"\n')
    problem = only_problem(path, "jobs.nightly.wait_timeout", "wait_timeout")
    assert "longer than zero" in problem.message


def test_unknown_notify_target_suggests_a_defined_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BASE + 'notify = ["ops-mal"]\n[notify.ops-mail]\ntype = "command"\ncommand = ["true"]\n',
    )
    problem = only_problem(path, "jobs.nightly.notify", "notify = [")
    assert problem.hint == 'did you mean "ops-mail"?'


def test_tls_cert_without_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[server.tls]\ncert_file = "c.pem"\n' + BASE)
    problem = only_problem(path, "server.tls", "[server.tls]")
    assert "go together" in problem.message


def test_bad_server_address_shows_the_expected_form(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\naddress = "localhost"\n' + BASE)
    problem = only_problem(path, "server.address", "address =")
    assert DEFAULT_ADDRESS in problem.hint


def test_unusable_job_names_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("[jobs.nightly]", '[jobs."night ly"]'))
    problem = only_problem(path, 'jobs."night ly"', "[jobs.")
    assert "letters, digits" in problem.hint


def test_every_problem_is_reported_in_line_order(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + 'jiter = "5m"\nretries = -1\n[jobs.other]\ntype = "x"\n')
    found = problems(path)
    assert [p.field for p in found] == [
        "jobs.nightly.jiter",
        "jobs.nightly.retries",
        "jobs.other.type",
    ]
    message = str(ConfigError(found))
    assert message.startswith(f"3 problems in {path}:")


# --- checks across jobs (used by `check`, not load failures) -----------------------------------

NOW = datetime(2025, 6, 10, tzinfo=UTC)


def test_check_leaves_cluster_wide_and_incremental_on_one_cluster_to_the_server_check(
    tmp_path: Path,
) -> None:
    # Whether they may share a cluster depends on the server, which only `check` online asks.
    path = write(
        tmp_path,
        BASE
        + '[jobs.weekly]\ntype = "cluster-wide"\nschedule = "15 0 * * 0"\n'
        + '[jobs.hourly]\ntype = "incremental"\nschedule = "0 * * * *"\n',
    )
    assert check_config(load_config(path), NOW) == []


def test_check_flags_incremental_jobs_with_nothing_to_extend(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BASE.replace('"snapshot"', '"incremental"').replace("30 0 * * *", "@hourly"),
    )
    (problem,) = check_config(load_config(path), NOW)
    assert problem.field == "jobs.nightly.when_no_snapshot"
    assert "take-snapshot" in problem.hint


def test_check_flags_jitter_as_long_as_the_gap_between_runs(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("30 0 * * *", "*/10 * * * *") + 'jitter = "10m"\n')
    (problem,) = check_config(load_config(path), NOW)
    assert problem.field == "jobs.nightly.jitter"


# --- durations and secrets --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("26h", timedelta(hours=26)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("0", timedelta(0)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "5", "m", "1.5h", "30m1h", "5 min", "-5s", "1w"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def secret(table: dict[str, object], base_dir: Path = Path("/")) -> Secret | None:
    return Secret.from_table(
        table, "password", where="notify.mail", origin="scheduler.toml", base_dir=base_dir
    )


def test_secret_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    found = secret({"password_env": "SMTP_PASSWORD"})
    assert found is not None
    assert found.resolve({"SMTP_PASSWORD": "s3cret"}) == "s3cret"
    with pytest.raises(ConfigError, match="SMTP_PASSWORD is not set"):
        found.resolve({})
    monkeypatch.setenv("SMTP_PASSWORD", "from-env")
    assert found.resolve() == "from-env"


def test_secret_from_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n", encoding="utf-8")
    (tmp_path / "pw").chmod(0o600)
    found = secret({"password_file": "pw"}, base_dir=tmp_path)
    assert found is not None and found.resolve() == "s3cret"
    missing = secret({"password_file": "absent"}, base_dir=tmp_path)
    assert missing is not None
    with pytest.raises(ConfigError, match="cannot read secret file"):
        missing.resolve()


def test_inline_secret_works_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        found = secret({"password": "s3cret"})
    assert found is not None and found.resolve() == "s3cret"
    assert "password_env" in caplog.text
    assert "s3cret" not in repr(found)


def test_secret_given_two_ways_or_not_at_all() -> None:
    assert secret({}) is None
    with pytest.raises(ConfigError, match="are both given") as caught:
        secret({"password": "a", "password_env": "B"})
    assert caught.value.problems[0].field == "notify.mail.password"
