"""Rendering notices from run results and staleness: the subject, text and HTML bodies.

The subject leads with the verdict and the cluster so a person can triage from a phone
("FAILED snapshot prod-cluster: 1 of 3 nodes failed"); the body holds what follow-up needs.
"""

from __future__ import annotations

import html
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cassy_scheduler.config.model import JobConfig
from cassy_scheduler.configfile.durations import format_duration
from cassy_scheduler.configfile.errors import ConfigProblem
from cassy_scheduler.notify.notice import Event, Notice
from cassy_scheduler.protocol.types import OperationStatus
from cassy_scheduler.records import Failure, Outcome, RunResult

_VERDICTS = {
    Outcome.SUCCEEDED: "OK",
    Outcome.FAILED: "FAILED",
    Outcome.TIMED_OUT: "TIMED OUT",
    Outcome.SKIPPED: "SKIPPED",
    Outcome.INTERRUPTED: "INTERRUPTED",
    Outcome.RUNNING: "RUNNING",
}
_FAILURES = {
    Failure.UNREACHABLE: "server unreachable",
    Failure.REFUSED: "refused by the server",
    Failure.UNKNOWN_CLUSTER: "cluster not registered",
    Failure.NO_BASE_SNAPSHOT: "no snapshot to extend",
    Failure.BASE_SNAPSHOT_FAILED: "the base snapshot failed",
    Failure.TIMED_OUT: "no outcome in time",
    Failure.ALREADY_RUNNING: "the previous run still runs",
    Failure.CLUSTER_BUSY: "the cluster stayed busy",
    Failure.MISSED: "missed while the scheduler was down",
    Failure.STOPPED: "the scheduler stopped",
    Failure.LOCAL: "a local error on the scheduler host",
    Failure.NODES_FAILED: "nodes failed",
}


@dataclass(frozen=True)
class RunContext:
    """What a notice adds to a RunResult: the job's config, its next run, the config file."""

    job: JobConfig
    config_path: Path
    next_run: datetime | None


def history_command(config_path: Path, job_name: str) -> str:
    return shlex.join(
        ["cassy-scheduler", "history", "--config", str(config_path), "--job", job_name]
    )


def is_failing(result: RunResult) -> bool:
    return result.outcome is not Outcome.SUCCEEDED


def cluster_label(result: RunResult, job: JobConfig) -> str:
    return result.cluster_name or result.cluster_id or job.cluster.value


def run_subject(result: RunResult, job: JobConfig) -> str:
    verdict = _VERDICTS[result.outcome]
    head = f"{verdict} {result.job_type.value} {cluster_label(result, job)}"
    return f"{head}: {_detail(result)}"


def _detail(result: RunResult) -> str:
    if result.summary and not result.nodes:
        return result.summary
    total = len(result.nodes)
    if result.outcome is Outcome.SUCCEEDED:
        return f"{total} of {total} node{'s' if total != 1 else ''} completed"
    failed = len(result.failed_nodes)
    if failed:
        return f"{failed} of {total} node{'s' if total != 1 else ''} failed"
    if result.outcome is Outcome.TIMED_OUT and total:
        pending = sum(1 for n in result.nodes if not n.status.is_final)
        return f"{pending} of {total} node{'s' if total != 1 else ''} unfinished"
    if result.failure is not None:
        return _FAILURES[result.failure]
    return result.outcome.value


def render_run(result: RunResult, context: RunContext) -> Notice:
    """The notice of one finished run."""
    job = context.job
    subject = run_subject(result, job)
    command = history_command(context.config_path, result.job_name)
    duration = None
    if result.started_at is not None and result.finished_at is not None:
        duration = result.finished_at - result.started_at
    rows: list[tuple[str, str]] = [
        ("Job", result.job_name),
        (
            "Outcome",
            result.outcome.value + (f" ({result.failure.value})" if result.failure else ""),
        ),
        ("Cluster", _cluster(result, job)),
        ("Backup type", result.job_type.value),
        ("Snapshot id", result.snapshot_id or "-"),
    ]
    if result.base_snapshot_id is not None:
        taken = " (taken first by this run)" if result.base_snapshot_taken else ""
        rows.append(("Extends snapshot", result.base_snapshot_id + taken))
    rows += [
        ("Scheduled for", _when(result.scheduled_for)),
        ("Started", _when(result.started_at)),
        ("Ended", _when(result.finished_at)),
        ("Duration", _took(duration)),
        ("Attempts", str(result.attempts)),
        ("Next scheduled run", _when(context.next_run) if context.next_run else "not scheduled"),
    ]
    nodes = [(n.target_ip, n.status.name, n.reason or "") for n in result.nodes]
    facts = {
        **result.as_dict(),
        "event": Event.RUN.value,
        "subject": subject,
        "duration_s": duration.total_seconds() if duration is not None else None,
        "next_run": context.next_run.isoformat() if context.next_run else None,
        "history_command": command,
    }
    return Notice(
        event=Event.RUN,
        job_name=result.job_name,
        subject=subject,
        text=_text(subject, rows, nodes, result.error, command),
        html=_html(subject, rows, nodes, result.error, command),
        facts=facts,
        failing=is_failing(result),
        run_id=result.run_id,
    )


def render_stale(
    job: JobConfig,
    config_path: Path,
    now: datetime,
    last_success: datetime | None,
    since: datetime,
    *,
    stale: bool,
) -> Notice:
    """A STALE alert (no success within alert_after) or the notice that ends one."""
    assert job.alert_after is not None
    limit = format_duration(job.alert_after)
    command = history_command(config_path, job.name)
    if stale:
        age = now - (last_success or since)
        what = (
            f"no successful run for {format_duration(age)}"
            if last_success
            else f"no successful run since watching began {format_duration(age)} ago"
        )
        subject = f"STALE {job.type.value} {job.cluster.value}: {what} (alert_after {limit})"
    else:
        subject = f"RECOVERED {job.type.value} {job.cluster.value}: a run succeeded again"
    rows = [
        ("Job", job.name),
        ("Cluster", str(job.cluster)),
        ("Backup type", job.type.value),
        ("Last success", _when(last_success) if last_success else "never"),
        ("alert_after", limit),
        ("Checked at", _when(now)),
    ]
    error = (
        "the backups of this job are older than alert_after; whatever the reason (scheduler "
        "down, job disabled, every run failing), look at its history"
        if stale
        else None
    )
    event = Event.STALE if stale else Event.FRESH
    facts: dict[str, object] = {
        "event": event.value,
        "job": job.name,
        "type": job.type.value,
        "cluster": job.cluster.value,
        "subject": subject,
        "outcome": "stale" if stale else "fresh",
        "last_success": last_success.isoformat() if last_success else None,
        "alert_after_s": job.alert_after.total_seconds(),
        "checked_at": now.isoformat(),
        "history_command": command,
    }
    return Notice(
        event=event,
        job_name=job.name,
        subject=subject,
        text=_text(subject, rows, [], error, command),
        html=_html(subject, rows, [], error, command),
        facts=facts,
        failing=stale,
    )


#: The job name notices about the config file itself are recorded under.
CONFIG_NOTICES = "(config)"


def render_config(
    config_path: Path,
    trigger: str,
    problems: Sequence[ConfigProblem],
    jobs_running: int,
    now: datetime,
) -> Notice:
    """An alert that the daemon refused its edited config (no problems: took it again)."""
    refused = bool(problems)
    name = config_path.name
    if refused:
        first = problems[0]
        field = f"{first.field}: " if first.field else ""
        subject = f"CONFIG REFUSED {name}: {field}{first.message}"
        error = (
            f"the daemon keeps running the previous config ({jobs_running} job(s)) until the "
            "file loads again"
        )
    else:
        subject = f"CONFIG OK {name}: reloaded, {jobs_running} job(s)"
        error = None
    rows = [("Config", str(config_path)), ("Trigger", trigger), ("Checked at", _when(now))]
    rows += [(f"Problem {n}", str(p).replace("\n", " ")) for n, p in enumerate(problems, 1)]
    command = shlex.join(["cassy-scheduler", "check", "--offline", "--config", str(config_path)])
    facts: dict[str, object] = {
        "event": Event.CONFIG.value,
        "job": CONFIG_NOTICES,
        "subject": subject,
        "outcome": "refused" if refused else "accepted",
        "config": str(config_path),
        "trigger": trigger,
        "problems": [str(p) for p in problems],
        "jobs_running": jobs_running,
        "checked_at": now.isoformat(),
        "history_command": command,
    }
    return Notice(
        event=Event.CONFIG,
        job_name=CONFIG_NOTICES,
        subject=subject,
        text=_text(subject, rows, [], error, command, label="Check"),
        html=_html(subject, rows, [], error, command, label="Check"),
        facts=facts,
        failing=refused,
    )


def _cluster(result: RunResult, job: JobConfig) -> str:
    if result.cluster_id is None:
        return f"{job.cluster} (not resolved)"
    name = f" ({result.cluster_name})" if result.cluster_name else ""
    return f"{result.cluster_id}{name}"


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "-"


def _took(duration: timedelta | None) -> str:
    if duration is None:
        return "-"
    return format_duration(duration) if duration >= timedelta(seconds=1) else "under 1s"


def _text(
    subject: str,
    rows: Sequence[tuple[str, str]],
    nodes: Sequence[tuple[str, str, str]],
    error: str | None,
    command: str,
    *,
    label: str = "History",
) -> str:
    width = max(len(k) for k, _ in rows)
    lines = [subject, ""]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    if nodes:
        ip_w = max(len("Node"), *(len(n[0]) for n in nodes))
        st_w = max(len("Status"), *(len(n[1]) for n in nodes))
        lines += ["", f"{'Node'.ljust(ip_w)}  {'Status'.ljust(st_w)}  Reason"]
        lines += [f"{ip.ljust(ip_w)}  {st.ljust(st_w)}  {why}".rstrip() for ip, st, why in nodes]
    if error:
        lines += ["", f"Error: {error}"]
    lines += ["", f"{label}: {command}", ""]
    return "\n".join(lines)


def _html(
    subject: str,
    rows: Sequence[tuple[str, str]],
    nodes: Sequence[tuple[str, str, str]],
    error: str | None,
    command: str,
    *,
    label: str = "History",
) -> str:
    e = html.escape
    parts = [f"<html><body><h2>{e(subject)}</h2>", "<table>"]
    parts += [f"<tr><th align='left'>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows]
    parts.append("</table>")
    if nodes:
        parts.append("<table border='1' cellpadding='4'><tr><th>Node</th><th>Status</th>")
        parts.append("<th>Reason</th></tr>")
        for ip, status, why in nodes:
            colour = "green" if status == OperationStatus.COMPLETED.name else "red"
            parts.append(
                f"<tr><td>{e(ip)}</td><td style='color:{colour}'>{e(status)}</td>"
                f"<td>{e(why)}</td></tr>"
            )
        parts.append("</table>")
    if error:
        parts.append(f"<p><b>Error:</b> {e(error)}</p>")
    parts.append(f"<p>{e(label)}: <code>{e(command)}</code></p></body></html>")
    return "\n".join(parts)
