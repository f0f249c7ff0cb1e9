"""`history`: past runs, newest first, from the run history the daemon and cron runs write."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cassy_scheduler.commands.common import (
    Exit,
    config_option,
    fail,
    json_option,
    load,
    out,
    print_json,
    styled,
    when,
)
from cassy_scheduler.commands.tables import Column, print_table
from cassy_scheduler.records import Outcome, RunRecord

if TYPE_CHECKING:
    from rich.text import Text

    from cassy_scheduler.notify.journal import DeliveryRecord

_COLOURS = {
    Outcome.SUCCEEDED: "green",
    Outcome.RUNNING: "cyan",
    Outcome.SKIPPED: "yellow",
    Outcome.TIMED_OUT: "yellow",
}


def history(
    config: Path = config_option(),
    job: str | None = typer.Option(
        None, "--job", "-j", metavar="NAME", help="Only this job's runs."
    ),
    limit: int = typer.Option(
        20, "--limit", "-n", min=1, metavar="N", help="How many runs to show."
    ),
    as_json: bool = json_option(),
) -> None:
    """Past runs, newest first, with every node's status.

    When each ran, its outcome, the snapshot id, every node's status, the error and who
    was notified.
    """
    from cassy_scheduler.history import RunHistory
    from cassy_scheduler.notify.journal import NoticeJournal
    from cassy_scheduler.statefile import StateError, state_exists

    settings = load(config)
    path = settings.runtime.history_path
    try:
        if not state_exists(path):
            if as_json:
                print_json([])
            else:
                out().print(f"no runs recorded yet ({path} does not exist)")
            return
        with RunHistory.open_read_only(path) as records, NoticeJournal.open_read_only(path) as told:
            runs = records.list_runs(job, limit)
            notices = {run.run_id: told.deliveries(run_id=run.run_id) for run in runs}
    except StateError as exc:
        fail(str(exc), Exit.FAILED)
    if as_json:
        print_json([_run_dict(run, notices[run.run_id]) for run in runs])
        return
    rows = []
    for run in runs:
        colour = _COLOURS.get(run.outcome, "red")
        after = [f"\nthe server since: {run.server_outcome}"] if run.server_outcome else []
        error = [f"\n{run.error}"] if run.error else []
        outcome = styled((run.outcome.value, colour), *after, *error)
        rows.append(
            (
                str(run.run_id),
                f"{run.job_name}\n{run.job_type}",
                when(run.scheduled_for),
                _took(run),
                outcome,
                (run.snapshot_id or "-")
                + (f"\nbase {run.base_snapshot_id}" if run.base_snapshot_id else ""),
                "\n".join(f"{n.target_ip} {n.status.name}" for n in run.nodes) or "-",
                styled("\n").join(_notified(notices[run.run_id])) or "-",
            )
        )
    columns = [Column(h) for h in ("run", "job", "scheduled for", "took")]
    columns.append(Column("outcome", prose=True))
    columns.append(Column("snapshot", shorten=True))
    columns += [Column("nodes", prose=True), Column("notified", prose=True)]
    print_table(out(), columns, rows, title=f"runs recorded in {path}")


def _took(run: RunRecord) -> str:
    if run.started_at is None or run.finished_at is None:
        return "-"
    return f"{(run.finished_at - run.started_at).total_seconds():.0f}s"


def _notified(deliveries: list[DeliveryRecord]) -> list[Text]:
    """One line per target: delivered, or failed with the last error, and how many tries."""
    last: dict[str, DeliveryRecord] = {}
    for attempt in deliveries:
        last[attempt.target] = attempt
    lines = []
    for target, final in last.items():
        tries = f"{final.attempt} tr{'ies' if final.attempt != 1 else 'y'}"
        if final.delivered:
            lines.append(styled(f"{target}: delivered ({tries})"))
        else:
            lines.append(
                styled(f"{target}: ", ("not delivered", "red"), f" ({tries}): {final.error}")
            )
    return lines


def _run_dict(run: RunRecord, deliveries: list[DeliveryRecord]) -> dict[str, object]:
    return {
        "run_id": run.run_id,
        "job": run.job_name,
        "type": run.job_type,
        "scheduled_for": run.scheduled_for,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "outcome": run.outcome.value,
        "server_outcome": run.server_outcome,
        "cluster_id": run.cluster_id,
        "cluster_name": run.cluster_name,
        "snapshot_id": run.snapshot_id,
        "base_snapshot_id": run.base_snapshot_id,
        "error": run.error,
        "nodes": [
            {"node": n.target_ip, "status": n.status.name, "reason": n.reason} for n in run.nodes
        ],
        "notifications": [
            {
                "target": d.target,
                "attempt": d.attempt,
                "at": d.at,
                "delivered": d.delivered,
                "error": d.error,
            }
            for d in deliveries
        ],
    }
