"""`check`: is the scheduler ready to be trusted? Exit codes as Nagios plugins use them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from cassy_scheduler.commands.common import config_option, err, json_option, out, print_json
from cassy_scheduler.config import ConfigError, load_config
from cassy_scheduler.scheduling.history import HistoryError, RunHistory
from cassy_scheduler.scheduling.preflight import Finding, Severity, preflight, worst
from cassy_scheduler.scheduling.wiring import open_client

_COLOURS = {
    Severity.OK: "green",
    Severity.WARNING: "yellow",
    Severity.CRITICAL: "red",
    Severity.UNKNOWN: "magenta",
}


def check(config: Path = config_option(), as_json: bool = json_option()) -> None:
    """Check the config, the server, every job's cluster and base snapshot, and recent runs.

    Exit codes: 0 OK, 1 WARNING, 2 CRITICAL (e.g. a bad config, the server unreachable, a
    cluster missing, an incremental job with nothing to extend), 3 UNKNOWN (check itself
    failed).
    """
    try:
        findings = _findings(config)
    except Exception as exc:  # monitoring must get UNKNOWN, not a traceback
        findings = [Finding(Severity.UNKNOWN, "check", f"check could not finish: {exc!r}")]
    status = worst(findings)
    if as_json:
        print_json({"status": status.name, "findings": [f.as_dict() for f in findings]})
    else:
        _print(findings, status)
    raise typer.Exit(int(status))


def _findings(path: Path) -> list[Finding]:
    try:
        config = load_config(path)
    except ConfigError as exc:
        return [
            Finding(Severity.CRITICAL, p.field or "config", str(p).split("\n")[0], p.hint)
            for p in exc.problems
        ]
    history = None
    if config.runtime.history_path.exists():
        try:
            history = RunHistory.open_read_only(config.runtime.history_path)
        except HistoryError as exc:
            err().print(f"warning: {exc}")
    try:
        with open_client(config.server) as client:
            return preflight(config, client, datetime.now(UTC), history)
    finally:
        if history is not None:
            history.close()


def _print(findings: list[Finding], status: Severity) -> None:
    table = Table(show_header=True, header_style="bold")
    for column in ("", "subject", "finding"):
        table.add_column(column, overflow="fold")
    for finding in findings:
        colour = _COLOURS[finding.severity]
        text = finding.message + (f"\n[dim]hint: {finding.hint}[/]" if finding.hint else "")
        table.add_row(f"[{colour}]{finding.severity.name}[/]", finding.subject, text)
    console = out()
    console.print(table)
    console.print(f"[bold {_COLOURS[status]}]{status.name}[/]", markup=True)
