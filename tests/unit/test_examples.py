"""The files in examples/ are copied into production as they are, so each must stay true: the
configs load, the crontab's lines parse and run real verbs, and the systemd units start real
verbs with stop timeouts longer than the grace their config gives running backups."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer.main
from cronsim import CronSim, CronSimError

from cassy_scheduler.cli import app
from cassy_scheduler.config.loader import load_config
from cassy_scheduler.jobtype import JOB_KINDS, JobType
from cassy_scheduler.server.settings import load_server_settings

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
PRODUCTION = EXAMPLES / "scheduler.toml"
SCHEDULER_EXAMPLES = sorted(EXAMPLES.glob("scheduler*.toml"))
SERVER_EXAMPLE = EXAMPLES / "server.toml"
CRONTAB = EXAMPLES / "crontab"
SCHEDULER_UNIT = EXAMPLES / "cassy-scheduler.service"
SERVER_UNIT = EXAMPLES / "cassy-scheduler-server.service"
CONFIG_ERROR_EXIT = 2  # what every verb exits with on a config file that does not load

# The seed's crontab, quoted, and what each of its scripts took.
SEED_CRONTAB = {
    "30 0 * */1 * /opt/automate/backup/take_cluster_wide_snapshot.sh "
    "/opt/automate/backup/config_cluster_wide <cluster-id>": JobType.CLUSTER_WIDE,
    "15 0 * * 0 /opt/automate/backup/take_snapshot.sh "
    "/opt/automate/backup/config_snapshot <cluster-id>": JobType.SNAPSHOT,
    "0 * * * * /opt/automate/backup/take_incremental_backup.sh "
    "/opt/automate/backup/config_incremental_backup <cluster-id>": JobType.INCREMENTAL,
}
SEED = {(" ".join(line.split()[:5]), kind) for line, kind in SEED_CRONTAB.items()}


def parse_verb(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """The verb and its parameters as the CLI itself parses `argv`; a bad option raises."""
    verbs = getattr(typer.main.get_command(app), "commands", {})
    verb, *args = argv
    command = verbs.get(verb)
    assert command is not None, f"no verb {verb!r} in {' '.join(argv)}"
    with command.make_context(verb, args) as context:
        return verb, dict(context.params)


# --- scheduler configs ---------------------------------------------------------------------


def test_there_is_a_scheduler_example() -> None:
    assert PRODUCTION in SCHEDULER_EXAMPLES


@pytest.mark.parametrize("path", SCHEDULER_EXAMPLES, ids=lambda p: p.name)
def test_each_scheduler_example_passes_check_offline(path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cassy_scheduler", "check", "--offline", "-c", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    report = json.loads(result.stdout)
    allowed = 0 if path == PRODUCTION else 1  # the production-like file: not even a warning
    assert result.returncode <= allowed, json.dumps(report, indent=2) + result.stderr


def test_the_production_example_backs_up_two_clusters_every_way() -> None:
    config = load_config(PRODUCTION)
    by_cluster: dict[str, dict[JobType, Any]] = {}
    for job in config.jobs:
        by_cluster.setdefault(str(job.cluster), {})[job.type] = job
    assert len(by_cluster) == 2
    assert {ref.kind for ref in (j.cluster for j in config.jobs)} == {
        "cluster_name",
        "cassandra_host",
    }
    for jobs in by_cluster.values():
        assert set(jobs) == set(JOB_KINDS)
        incremental = jobs[JobType.INCREMENTAL]
        fires = incremental.schedule.next_n(datetime(2025, 6, 10, tzinfo=UTC), 3)
        assert incremental.wait_timeout < fires[1] - fires[0]
        assert incremental.when_no_snapshot.value == "take-snapshot"
        assert all(job.alert_after is not None and job.notify for job in jobs.values())
    assert {t.name for t in config.notify} >= {"ops-mail", "chat"}
    assert config.runtime.metrics_listen is not None
    assert config.runtime.metrics_listen.startswith("127.0.0.1:")


@pytest.mark.parametrize(
    "path", [*SCHEDULER_EXAMPLES, CRONTAB, SCHEDULER_UNIT, SERVER_UNIT], ids=lambda p: p.name
)
def test_examples_name_only_documentation_hosts(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for address in re.findall(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])", text):
        assert address.startswith(("10.", "127.")), address
    hosts = re.findall(r"https?://([^/:\s\"'<]+)", text)
    hosts += re.findall(r'^\s*#?\s*host\s*=\s*"([^"]+)"', text, flags=re.MULTILINE)
    for host in hosts:
        placeholder = host.isupper()  # "http://ADDRESS/metrics"
        assert placeholder or host == "example.com" or host.endswith(".example.com"), host


# --- server config -------------------------------------------------------------------------


def test_the_server_example_loads() -> None:
    settings = load_server_settings(SERVER_EXAMPLE)
    assert settings.shutdown_grace_seconds > 0


# --- crontab ---------------------------------------------------------------------------------

_ENV_LINE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\s*=")
_DISABLED_ENTRY = re.compile(r"#[0-9*@]")  # "#30 0 * * * ...": an entry commented out


def crontab_entries() -> list[tuple[bool, str, str]]:
    """(enabled, schedule, command) for every cron entry, commented-out ones included."""
    entries = []
    for raw in CRONTAB.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or _ENV_LINE.match(line):
            continue
        enabled = not line.startswith("#")
        if not enabled and not _DISABLED_ENTRY.match(line):
            continue  # a comment
        fields = line.lstrip("#").split(maxsplit=5)
        assert len(fields) == 6, f"not a cron entry: {raw}"
        entries.append((enabled, " ".join(fields[:5]), fields[5]))
    return entries


def backup_of(command: str) -> tuple[JobType, str]:
    """What a crontab command backs up, as the CLI parses it; a shim is run to see what it
    would run."""
    argv = shlex.split(command)
    program = Path(argv[0])
    if program.name != "cassy-scheduler":
        assert program.parent.parts[-2:] == ("contrib", "cron"), command
        shim = ROOT / "contrib" / "cron" / program.name
        assert shim.is_file() and os.access(shim, os.X_OK), shim
        shown = subprocess.run(
            [str(shim), *argv[1:]],
            env={**os.environ, "CASSY_SCHEDULER": r"printf %s\n"},
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        argv = ["cassy-scheduler", *shown.stdout.splitlines()]
    verb, params = parse_verb(argv[1:])
    assert verb == "backup", command
    assert Path(params["config"]).name == "scheduler.toml"
    return params["kind"], params["cluster_id"]


def test_the_crontab_has_valid_schedules_and_commands() -> None:
    entries = crontab_entries()
    assert entries
    for _, schedule, command in entries:
        try:
            CronSim(schedule, datetime(2025, 6, 10))
        except CronSimError as exc:
            pytest.fail(f"{schedule!r}: {exc}")
        assert "%" not in command  # cron turns % into a newline
        backup_of(command)


def test_the_crontab_replaces_each_seed_line_once_enabled_and_once_commented() -> None:
    entries = crontab_entries()
    for enabled in (True, False):
        found = [
            (schedule, backup_of(command)[0]) for on, schedule, command in entries if on is enabled
        ]
        assert sorted(found) == sorted(SEED), (enabled, found)
    assert len({backup_of(command)[1] for _, _, command in entries}) == 1


@pytest.mark.parametrize(
    "path",
    [CRONTAB, PRODUCTION, ROOT / "README.md", ROOT / "contrib" / "cron" / "README.md"],
    ids=lambda p: p.name,
)
def test_the_seed_lines_are_quoted_exactly(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for line in SEED_CRONTAB:
        assert line in text, f"{path.name} does not quote the seed line {line!r}"
    for mention in re.findall(r"\S*take_\w+\.sh[^\n]*", text):
        if "/opt/automate/" in mention:
            assert any(mention.endswith(line.split(" ", 5)[5]) for line in SEED_CRONTAB), mention


def test_the_production_example_keeps_the_seed_schedules() -> None:
    config = load_config(PRODUCTION)
    by_kind = {(job.cluster.value, job.type): job for job in config.jobs}
    orders = {kind: by_kind["orders", kind].schedule.expression for kind in JOB_KINDS}
    seed = {kind: schedule for schedule, kind in SEED}
    for kind, expression in orders.items():
        assert CronSim(expression, datetime(2025, 6, 10)).explain() == (
            CronSim(seed[kind], datetime(2025, 6, 10)).explain()
        ), kind


# --- systemd units ---------------------------------------------------------------------------


def read_unit(path: Path) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    unit.read(path, encoding="utf-8")
    return unit


def seconds(span: str) -> float:
    """A systemd time span such as "180", "90s" or "3min"."""
    match = re.fullmatch(r"(\d+)\s*(s|sec|min|m)?", span.strip())
    assert match, span
    return float(match.group(1)) * (60 if match.group(2) in ("min", "m") else 1)


def started_verb(unit: configparser.ConfigParser) -> tuple[str, dict[str, Any]]:
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert Path(argv[0]).name == "cassy-scheduler", argv
    return parse_verb(argv[1:])


@pytest.mark.parametrize("path", [SCHEDULER_UNIT, SERVER_UNIT], ids=lambda p: p.name)
def test_each_unit_runs_as_its_own_user_and_does_not_restart_a_bad_config(path: Path) -> None:
    service = read_unit(path)["Service"]
    assert service["Type"] == "exec"
    assert service["User"] and service["StateDirectory"]
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == str(CONFIG_ERROR_EXIT)
    assert service["UMask"] == "0077" and service["StateDirectoryMode"] == "0700"


def test_the_scheduler_unit_runs_the_daemon_on_the_example_config() -> None:
    unit = read_unit(SCHEDULER_UNIT)
    verb, params = started_verb(unit)
    assert verb == "run"
    config = load_config(EXAMPLES / Path(params["config"]).name)
    service = unit["Service"]
    # The grace, then the interrupted runs recorded, pings and the last notices sent.
    assert seconds(service["TimeoutStopSec"]) > config.runtime.shutdown_grace.total_seconds() + 70
    assert config.runtime.state_dir == Path("/var/lib") / service["StateDirectory"]
    assert shlex.split(service["ExecReload"])[1:] == ["-HUP", "$MAINPID"]  # run reloads


def test_the_server_unit_serves_the_example_config() -> None:
    unit = read_unit(SERVER_UNIT)
    verb, params = started_verb(unit)
    assert verb == "serve"
    settings = load_server_settings(EXAMPLES / Path(params["config"]).name)
    service = unit["Service"]
    # Calls in flight get the grace, then backups and restores do: the unit waits out both.
    assert seconds(service["TimeoutStopSec"]) > 2 * settings.shutdown_grace_seconds
    assert "ExecReload" not in service  # serve has no SIGHUP handler: SIGHUP would stop it


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("path", [SCHEDULER_UNIT, SERVER_UNIT], ids=lambda p: p.name)
def test_systemd_accepts_each_unit(path: Path, tmp_path: Path) -> None:
    # verify also wants ExecStart's program to exist; point it at one that does.
    program = shlex.split(read_unit(path)["Service"]["ExecStart"])[0]
    copy = tmp_path / path.name
    copy.write_text(path.read_text(encoding="utf-8").replace(program, sys.executable))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    complaints = [
        line for line in (result.stdout + result.stderr).splitlines() if path.name in line
    ]
    assert not complaints, complaints
