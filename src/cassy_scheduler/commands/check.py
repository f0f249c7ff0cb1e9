"""`check`: is the scheduler ready to be trusted? Exit codes as Nagios plugins use them.

`check --offline` judges the file alone, so a CI job or a config-management pipeline can
refuse a bad file before it is deployed, with no server to reach.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cassy_scheduler.commands.common import (
    config_option,
    err,
    json_option,
    out,
    print_json,
    styled,
)
from cassy_scheduler.commands.tables import Column, print_table

if TYPE_CHECKING:
    from cassy_scheduler.config.model import SchedulerConfig
    from cassy_scheduler.configfile.errors import ConfigProblem
    from cassy_scheduler.preflight import Finding, Severity


def check(
    config: Path = config_option(),
    as_json: bool = json_option(),
    offline: bool = typer.Option(
        False,
        "--offline",
        help="Check the file alone (syntax, keys, values, advice across jobs); contact no "
        "server. For validating a file before deploying it, e.g. in CI.",
    ),
    server_config: Path | None = typer.Option(
        None,
        "--server-config",
        metavar="FILE",
        help="Also check the built-in server's config and its storage: a small object is "
        "written, read back and deleted, as `serve` does at start.",
    ),
) -> None:
    """Check the config, the server, the clusters and recent runs.

    Every job's cluster and base snapshot are looked up, and recent failures and
    staleness judged.

    With --offline only the file is checked: every load error (CRITICAL, naming the file, the
    line and the key) and the advice across jobs (WARNING). No server, history or state
    directory is consulted, since the file is often validated on another host than the one
    that runs it: use it in CI or a config-management pipeline before deploying a file.

    Exit codes: 0 OK, 1 WARNING, 2 CRITICAL (e.g. a bad config, the server unreachable, a
    cluster missing, an incremental job with nothing to extend), 3 UNKNOWN (check itself
    failed).
    """
    from cassy_scheduler.preflight import Finding, Severity, worst

    try:
        findings = _offline_findings(config) if offline else _findings(config)
        if server_config is not None:
            findings += _storage_findings(server_config)
    except Exception as exc:  # monitoring must get UNKNOWN, not a traceback
        findings = [Finding(Severity.UNKNOWN, "check", f"check could not finish: {exc!r}")]
    status = worst(findings)
    if as_json:
        print_json({"status": status.name, "findings": [f.as_dict() for f in findings]})
    else:
        _print(findings, status)
    raise typer.Exit(int(status))


def _problem(severity: Severity, problem: ConfigProblem) -> Finding:
    """A config problem as a finding whose message keeps the file and line."""
    from cassy_scheduler.preflight import Finding

    return Finding(severity, problem.field or "config", str(problem).split("\n")[0], problem.hint)


def _load(path: Path) -> SchedulerConfig | list[Finding]:
    from cassy_scheduler.config.loader import load_config
    from cassy_scheduler.configfile.errors import ConfigError
    from cassy_scheduler.preflight import Severity

    try:
        return load_config(path)
    except ConfigError as exc:
        return [_problem(Severity.CRITICAL, p) for p in exc.problems]


def _offline_findings(path: Path) -> list[Finding]:
    """What the file alone tells: it loads, and the cross-job advice `check_config` gives."""
    from cassy_scheduler.config.checks import check_config
    from cassy_scheduler.preflight import Finding, Severity

    config = _load(path)
    if isinstance(config, list):
        return config
    return [
        *_job_count(config),
        *(_problem(Severity.WARNING, p) for p in check_config(config, datetime.now(UTC))),
        Finding(
            Severity.OK,
            "server",
            f"{config.server.address} not contacted (--offline): clusters, base snapshots, "
            "the state directory and recent runs are not checked",
        ),
    ]


def _job_count(config: SchedulerConfig) -> list[Finding]:
    """OK with jobs; CRITICAL for a file with none (emptied or cut short), WARNING for one
    that says it backs up nothing."""
    from cassy_scheduler.config.guards import missing_jobs, says_no_jobs
    from cassy_scheduler.preflight import Finding, Severity

    empty = missing_jobs(config)
    if empty is not None:
        return [_problem(Severity.CRITICAL, empty)]
    if says_no_jobs(config):
        return [
            Finding(
                Severity.WARNING,
                "jobs",
                f"{config.path} says jobs = {{}}: nothing is backed up",
                "add [jobs.NAME] tables when backups should run",
            )
        ]
    return [Finding(Severity.OK, "config", f"{config.path} loads: {len(config.jobs)} job(s)")]


def _findings(path: Path) -> list[Finding]:
    from cassy_scheduler.config.guards import missing_jobs
    from cassy_scheduler.history import RunHistory
    from cassy_scheduler.notify.journal import NoticeJournal
    from cassy_scheduler.preflight import preflight
    from cassy_scheduler.runtime import open_client
    from cassy_scheduler.statefile import StateError, state_exists

    config = _load(path)
    if isinstance(config, list):
        return config
    if missing_jobs(config) is not None:
        return _job_count(config)
    history = journal = None
    path = config.runtime.history_path
    try:
        if state_exists(path):
            history = RunHistory.open_read_only(path)
            journal = NoticeJournal.open_read_only(path)
    except StateError as exc:
        err().print(f"warning: {exc}")
    try:
        with open_client(config.server) as client:
            return preflight(config, client, datetime.now(UTC), history, journal)
    finally:
        for opened in (history, journal):
            if opened is not None:
                opened.close()


def _storage_findings(path: Path) -> list[Finding]:
    """The server's config loads and its storage takes a write, a read and a delete."""
    from cassy_scheduler.configfile.errors import ConfigError
    from cassy_scheduler.preflight import Finding, Severity
    from cassy_scheduler.server.settings import load_server_settings
    from cassy_scheduler.storage import StorageError, open_storage
    from cassy_scheduler.storage.probe import probe

    try:
        settings = load_server_settings(path)
    except ConfigError as exc:
        return [_problem(Severity.CRITICAL, problem) for problem in exc.problems]
    try:
        storage = open_storage(settings.storage)
        probe(storage)
    except StorageError as exc:
        return [Finding(Severity.CRITICAL, "storage", str(exc))]
    return [Finding(Severity.OK, "storage", f"{storage.uri} takes a write, a read and a delete")]


def _print(findings: list[Finding], status: Severity) -> None:
    from cassy_scheduler.preflight import Severity

    colours = {
        Severity.OK: "green",
        Severity.WARNING: "yellow",
        Severity.CRITICAL: "red",
        Severity.UNKNOWN: "magenta",
    }
    rows = []
    for finding in findings:
        hint = [("\nhint: " + finding.hint, "dim")] if finding.hint else []
        text = styled(finding.message, *hint)
        rows.append(
            (styled((finding.severity.name, colours[finding.severity])), finding.subject, text)
        )
    columns = [Column(""), Column("subject", prose=True), Column("finding", prose=True)]
    console = out()
    print_table(console, columns, rows)
    console.print(styled((status.name, f"bold {colours[status]}")))
