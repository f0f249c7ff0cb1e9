"""`jobs`, `crontab` and `schedule`: the configured jobs, when they run, and changing that."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cassy_scheduler.commands.common import (
    Exit,
    config_option,
    err,
    fail,
    json_option,
    load,
    out,
    print_json,
    styled,
    when,
)
from cassy_scheduler.commands.tables import Column, print_table
from cassy_scheduler.configfile.durations import format_duration

if TYPE_CHECKING:
    from cassy_scheduler.config.model import JobConfig, SchedulerConfig
    from cassy_scheduler.records import RunRecord


def jobs(
    config: Path = config_option(),
    count: int = typer.Option(
        3, "--next", "-n", min=1, metavar="N", help="How many next runs to show."
    ),
    as_json: bool = json_option(),
) -> None:
    """The configured jobs: schedules in words, next and last runs.

    Each job's schedule as written and in words, its next runs (with jitter) and its last
    recorded outcome.
    """
    settings = load(config)
    now = _now()
    last = _last_runs(settings)
    if as_json:
        print_json([_job_dict(job, now, count, last.get(job.name)) for job in settings.jobs])
        return
    rows = []
    for job in settings.jobs:
        zone = job.schedule.timezone
        fires = [when(f.run_at, zone) for f in job.timetable.next_fires(now, count)]
        record = last.get(job.name)
        rows.append(
            (
                f"{job.name}\n{job.type.value}" + ("" if job.enabled else " (disabled)"),
                f"{_CLUSTER_LABELS[job.cluster.kind]} {job.cluster.value}",
                f"{_written(job)}\n{_in_words(job)}",
                "\n".join(fires) if job.enabled else "-",
                f"{record.outcome.value}\n{when(record.scheduled_for, zone)}" if record else "-",
            )
        )
    columns = [Column("job"), Column("cluster", shorten=True), Column("schedule")]
    columns += [Column("next runs"), Column("last run")]
    print_table(out(), columns, rows, title=f"jobs in {settings.path}")


_CLUSTER_LABELS = {"cluster_id": "id", "cluster_name": "name", "cassandra_host": "node"}


def crontab(
    config: Path = config_option(),
    command: str | None = typer.Option(
        None,
        metavar="COMMAND",
        help="The cassy-scheduler command cron should run (default: this one).",
    ),
) -> None:
    """Crontab lines that run the configured jobs from system cron.

    For system cron instead of the daemon.
    Each line runs `backup TYPE --job NAME`, so cron runs share the daemon's history and locks;
    a job with keep_* rules is pruned after each successful backup, or by a `prune` line on
    its prune_schedule.
    Cron has no seconds field and no jitter; a job in a timezone other than UTC gets a
    CRON_TZ line, which cronie honours and Debian's cron ignores.
    """
    settings = load(config)
    program = command or _this_program()
    path = shlex.quote(str(settings.path.resolve()))
    lines = [
        f"# cassy-scheduler jobs from {settings.path.resolve()}",
        "# install with: crontab -e (or a file under /etc/cron.d with a user field added)",
    ]
    zone_now = "UTC"
    lines.append("CRON_TZ=UTC")
    for job in settings.jobs:
        lines.append("")
        lines.append(f"# {job.name}: {_in_words(job)}")
        zone = job.schedule.timezone_name
        if zone != zone_now:
            lines.append(f"CRON_TZ={zone}")
            zone_now = zone
        schedule = job.schedule.minute_expression
        disabled = not job.enabled
        if job.schedule.seconds != (0,):
            lines.append(f"# {job.name} fires at seconds {job.schedule.seconds}: cron cannot")
            disabled = True
        if job.jitter:
            lines.append(f"# cron ignores this job's jitter of {format_duration(job.jitter)}")
        line = (
            f"{schedule} {program} backup {job.type.value} --config {path} "
            f"--job {shlex.quote(job.name)}"
        )
        lines.append(("# " if disabled else "") + line)
        if job.retention is not None and job.prune_schedule is not None:
            lines.append(f"# {job.name}: pruned on its prune_schedule")
            prune = f"{program} prune --config {path} --job {shlex.quote(job.name)}"
            off = not job.enabled or job.prune_schedule.seconds != (0,)
            if job.prune_schedule.seconds != (0,):
                lines.append(f"# {job.name}'s prune_schedule has seconds: cron cannot")
            lines.append(("# " if off else "") + f"{job.prune_schedule.minute_expression} {prune}")
    typer.echo("\n".join(lines))


def schedule(
    job_name: str = typer.Argument(..., metavar="JOB", help="The job to reschedule."),
    expression: str = typer.Argument(..., metavar="EXPR", help="The new cron expression."),
    config: Path = config_option(),
    count: int = typer.Option(
        5, "--next", "-n", min=1, metavar="N", help="How many next runs to show."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show, but do not change the file."),
) -> None:
    """Change a job's schedule, shown in words first.

    Checks the expression, shows its next runs, and writes it to the job in the file.
    The file keeps its comments and layout; a running daemon picks the change up by itself.
    """
    from cassy_scheduler.timetable import Schedule, ScheduleError

    settings = load(config)
    try:
        job = settings.job(job_name)
    except KeyError as exc:
        fail(str(exc.args[0]), Exit.USAGE)
    try:
        parsed = Schedule.parse(expression, job.schedule.timezone)
    except ScheduleError as exc:
        fail(str(exc), Exit.USAGE)
    console = out()
    console.print(styled((job.name, "bold"), f": {expression} ({parsed.timezone_name})"))
    console.print(f"  {_words(expression)}")
    for fire in parsed.next_n(_now(), count):
        console.print(f"  {when(fire, parsed.timezone)}")
    if dry_run:
        return
    if job.schedule.expression == expression:
        console.print(f"{settings.path} already has this schedule")
        return
    _rewrite(settings, job, expression)
    console.print(
        f"updated {settings.path}; a running daemon applies it within "
        f"{settings.runtime.reload_poll.total_seconds():g}s (or at once on SIGHUP)"
    )


def _rewrite(settings: SchedulerConfig, job: JobConfig, expression: str) -> None:
    import tomlkit
    from tomlkit.items import InlineTable, Item
    from tomlkit.items import Table as TomlTable

    from cassy_scheduler.config.loader import parse_config
    from cassy_scheduler.configfile.errors import ConfigError

    path = settings.path
    document = tomlkit.parse(path.read_text(encoding="utf-8"))
    table = document["jobs"][job.name]
    if not isinstance(table, TomlTable | InlineTable):
        fail(f"cannot find the [jobs.{job.name}] table in {path} to rewrite", Exit.USAGE)
    new = tomlkit.string(expression)
    old = table.item("schedule") if "schedule" in table else None
    if isinstance(old, Item):
        comment = old.trivia.comment
        if comment.lstrip("# ").strip() == _words(job.schedule.expression):
            comment = f"# {_words(expression)}"  # the comment only said what the old one meant
        new.trivia.comment_ws = old.trivia.comment_ws
        new.trivia.comment = comment
        table["schedule"] = new
    else:
        table["schedule"] = new  # it was inherited from [defaults]
    text = tomlkit.dumps(document)
    try:
        parse_config(text, path)
    except ConfigError as exc:
        fail(f"the file would not load after the change, so it was left as it was:\n{exc}", 2)
    _replace(path, text)


def _replace(path: Path, text: str) -> None:
    """Write beside the file and rename over it, so a reader never sees half a file."""
    mode = path.stat().st_mode & 0o7777
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _words(expression: str) -> str:
    from cassy_scheduler.scheduling.describe import describe
    from cassy_scheduler.timetable import ScheduleError

    try:
        return describe(expression)
    except ScheduleError:
        return ""


def _written(job: JobConfig) -> str:
    zone = job.schedule.timezone_name
    return job.schedule.expression + ("" if zone == "UTC" else f" ({zone})")


def _in_words(job: JobConfig) -> str:
    words = _words(job.schedule.expression)
    if job.jitter:
        words += f", up to {format_duration(job.jitter)} later"
    return words


def _job_dict(
    job: JobConfig, now: datetime, count: int, record: RunRecord | None
) -> dict[str, object]:
    return {
        "name": job.name,
        "type": job.type.value,
        "enabled": job.enabled,
        "cluster": {"by": job.cluster.kind, "value": job.cluster.value},
        "schedule": job.schedule.expression,
        "timezone": job.schedule.timezone_name,
        "description": _in_words(job),
        "next_runs": [f.run_at for f in job.timetable.next_fires(now, count)]
        if job.enabled
        else [],
        "last_run": None
        if record is None
        else {
            "run_id": record.run_id,
            "scheduled_for": record.scheduled_for,
            "outcome": record.outcome.value,
            "error": record.error,
        },
    }


def _last_runs(settings: SchedulerConfig) -> dict[str, RunRecord]:
    from cassy_scheduler.history import RunHistory
    from cassy_scheduler.statefile import StateError, state_exists

    path = settings.runtime.history_path
    try:
        if not state_exists(path):
            return {}
        with RunHistory.open_read_only(path) as history:
            return {
                job.name: record
                for job in settings.jobs
                if (record := history.last_run(job.name)) is not None
            }
    except StateError as exc:
        err().print(f"warning: last runs not shown: {exc}")
        return {}


def _this_program() -> str:
    argv0 = Path(sys.argv[0])
    if argv0.name == "cassy-scheduler" and argv0.exists():
        return shlex.quote(str(argv0.resolve()))
    return "cassy-scheduler"


def _now() -> datetime:
    return datetime.now(UTC)
