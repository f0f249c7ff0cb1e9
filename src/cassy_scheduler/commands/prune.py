"""`prune`: what each job's retention policy keeps and deletes, previewed or carried out."""

from __future__ import annotations

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
    server_errors,
    storage_from,
    when,
)
from cassy_scheduler.commands.tables import Column, print_table

if TYPE_CHECKING:
    from cassy_scheduler.cassyprune import CassyStorageBackups
    from cassy_scheduler.client import CassyClient
    from cassy_scheduler.config.model import JobConfig, SchedulerConfig
    from cassy_scheduler.scheduling.prune import PruneClient, PruneDone, PrunePlan, Pruner


def prune(  # noqa: PLR0917 (typer reads options from parameters)
    config: Path = config_option(),
    job: str | None = typer.Option(
        None, "--job", "-j", metavar="NAME", help="Only this job (default: every job with rules)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", "-n", help="Print what would be kept and deleted; delete nothing."
    ),
    storage_uri: str | None = typer.Option(
        None,
        "--storage",
        metavar="URI",
        help="Against Scalar's Cassy: the storage it writes to (its key layout), deleted "
        "from directly, e.g. s3://bucket/prefix.",
    ),
    server_config: Path | None = typer.Option(
        None,
        "--server-config",
        metavar="FILE",
        help="Against Scalar's Cassy: a built-in server config whose [storage] table "
        "(endpoint, credentials) names that storage.",
    ),
    as_json: bool = json_option(),
) -> None:
    """Delete the backups no keep_* rule of a job keeps.

    Prints every backup of each job with KEEP or DELETE and the rule or rail that decided
    it, and the bytes freed. The newest good backup, min_keep good ones, the snapshot the
    current incrementals extend, running backups and those a restore reads are never
    deleted. Each prune (not a dry run) is recorded in the history as the job NAME:prune
    and notified like a run. The built-in server deletes through its Backups service;
    Scalar's Cassy has no delete, so against it prune deletes from its storage (--storage
    or --server-config), and Cassy's ListBackups still lists the deleted backups.

    Exit codes: 0 done, 1 a backup could not be deleted or the server refused, 2 config
    error, 5 server unreachable.
    """
    from cassy_scheduler.runtime import Runtime
    from cassy_scheduler.scheduling import SchedulingError
    from cassy_scheduler.statefile import StateError

    settings = load(config)
    jobs = _jobs(settings, job)
    try:
        runtime = Runtime(settings)
    except (SchedulingError, StateError) as exc:
        fail(str(exc), Exit.USAGE)
    worst = Exit.OK
    reports: list[dict[str, object]] = []
    with runtime, server_errors():
        client: PruneClient = runtime.client
        pruner = runtime.pruner
        behind_cassy = not runtime.client.is_builtin_server()
        if behind_cassy:
            backups = _cassy_storage(runtime.client, storage_uri, server_config, settings)
            client, pruner = backups, runtime.pruner_for(lambda: backups)
        elif storage_uri is not None or server_config is not None:
            fail(
                f"the server at {settings.server.address} is `cassy-scheduler serve`, which "
                "deletes its own backups: leave out --storage and --server-config",
                Exit.USAGE,
            )
        for chosen in jobs:
            code, report = _prune_one(chosen, client, pruner, settings, dry_run, as_json)
            worst = max(worst, code)
            reports += report
            if code is Exit.UNREACHABLE:
                break  # the other jobs would fail alike
    if as_json:
        print_json(reports)
    elif behind_cassy:
        from cassy_scheduler.cassyprune import ROWS_STAY

        out().print(f"note: {ROWS_STAY}")
    raise typer.Exit(worst)


def _prune_one(  # noqa: PLR0917 (one job's prune and how to show it)
    job: JobConfig,
    client: PruneClient,
    pruner: Pruner,
    settings: SchedulerConfig,
    dry_run: bool,
    as_json: bool,
) -> tuple[Exit, list[dict[str, object]]]:
    """One job: its exit code and its report; a job that fails leaves the others to go on.
    An unreachable server ends the command (exit 5): the other jobs would fail alike."""
    from cassy_scheduler.client import CassyError
    from cassy_scheduler.records import Failure
    from cassy_scheduler.scheduling.prune import plan_prune
    from cassy_scheduler.scheduling.resolve import ResolveError

    code = Exit.OK
    done: PruneDone | None = None
    if dry_run:
        try:
            plan = plan_prune(client, job, datetime.now(UTC), settings.jobs)
        except ResolveError as exc:
            err().print(f"error: prune of {job.name}: {exc}")
            return Exit.FAILED, []
        except CassyError as exc:
            if exc.is_transient:
                raise  # exit 5
            err().print(f"error: prune of {job.name}: {exc}")
            return Exit.FAILED, []
    else:
        result, done = pruner.prune_and_report(job)
        if not result.succeeded:
            code = Exit.UNREACHABLE if result.failure is Failure.UNREACHABLE else Exit.FAILED
        if done is None:
            err().print(f"error: {result.error or f'prune of {job.name} failed'}")
            return code, []
        plan = done.plan
    if as_json:
        return code, [_report(plan, done)]
    _print(plan, done)
    return code, []


def _cassy_storage(
    client: CassyClient, uri: str | None, server_config: Path | None, settings: SchedulerConfig
) -> CassyStorageBackups:
    from cassy_scheduler.cassyprune import CassyStorageBackups

    storage = storage_from(
        uri,
        server_config,
        f"the server at {settings.server.address} is Scalar's Cassy, which has no call to "
        "delete a backup, so prune deletes from the storage it writes to",
    )
    return CassyStorageBackups(client, storage)


def _jobs(settings: SchedulerConfig, name: str | None) -> list[JobConfig]:
    if name is not None:
        try:
            chosen = settings.job(name)
        except KeyError as exc:
            fail(str(exc.args[0]), Exit.USAGE)
        if chosen.retention is None:
            fail(
                f'job "{name}" has no keep_* rule in {settings.path}: nothing of it is ever '
                "pruned; add e.g. keep_daily = 7 to it or to [defaults]",
                Exit.USAGE,
            )
        return [chosen]
    found = [j for j in settings.jobs if j.retention is not None]
    if not found:
        fail(
            f"no job in {settings.path} has a keep_* rule: add e.g. keep_daily = 7 to a job "
            "or to [defaults]",
            Exit.USAGE,
        )
    return found


def _print(plan: PrunePlan, done: PruneDone | None) -> None:
    from cassy_scheduler.configfile.sizes import format_size

    job = plan.job
    assert job.retention is not None
    zone = job.schedule.timezone
    rows = [
        (
            when(d.chain.created_at, zone),
            d.chain.snapshot_id,
            d.chain.state.value
            + (f" +{len(d.chain.incrementals)} incr." if d.chain.incrementals else ""),
            "-" if d.chain.stored_bytes is None else format_size(d.chain.stored_bytes),
            d.verdict.name,
            d.why
            + (f"; {len(d.incrementals)} failed incremental(s) removed" if d.incrementals else ""),
        )
        for d in plan.decisions
    ]
    columns = [Column("taken"), Column("snapshot id", shorten=True), Column("state")]
    columns += [Column("size"), Column("decision"), Column("why", prose=True)]
    title = f"{job.name} on {plan.cluster_id}: {job.retention.describe()}"
    if rows:
        print_table(out(), columns, rows, title=title)
    else:
        out().print(f"{title}: no backups")
    if done is None:
        out().print(
            f"dry run: {len(plan.doomed)} to delete, {format_size(plan.bytes_to_free)} to "
            "free; nothing deleted"
        )
    else:
        out().print(done.summary())


def _report(plan: PrunePlan, done: PruneDone | None) -> dict[str, object]:
    return {
        "job": plan.job.name,
        "cluster_id": plan.cluster_id,
        "dry_run": done is None,
        "backups": [
            {
                "snapshot_id": d.chain.snapshot_id,
                "created_at": d.chain.created_at,
                "state": d.chain.state.value,
                "incrementals": len(d.chain.incrementals),
                "bytes": d.chain.stored_bytes,
                "decision": d.verdict.name,
                "reasons": list(d.reasons),
            }
            for d in plan.decisions
        ],
        "bytes_to_free": plan.bytes_to_free,
        "deleted": [
            {"what": what, "objects": r.objects, "bytes": r.bytes} for what, r in done.deleted
        ]
        if done
        else [],
        "failed": [{"what": what, "error": why} for what, why in done.failed] if done else [],
    }
