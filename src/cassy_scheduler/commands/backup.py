"""`backup`: one backup now, waited for on every node, for system cron and for people. A job
with keep_* rules (and no prune_schedule) is pruned after a successful backup, as the daemon
does, so cron lines keep the storage in check too."""

from __future__ import annotations

import dataclasses
import signal
import threading
from enum import IntEnum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from cassy_scheduler.commands.common import (
    config_option,
    err,
    fail,
    json_option,
    load,
    out,
    styled,
)
from cassy_scheduler.commands.common import print_json as emit_json
from cassy_scheduler.jobtype import JobType

if TYPE_CHECKING:
    from cassy_scheduler.config.model import JobConfig
    from cassy_scheduler.records import RunResult
    from cassy_scheduler.runtime import Runtime
    from cassy_scheduler.scheduling.oneshot import ClusterResolver


class BackupExit(IntEnum):
    SUCCEEDED = 0
    FAILED = 1
    USAGE = 2
    TIMED_OUT = 3
    SKIPPED = 4
    UNREACHABLE = 5


HELP = "\n\n".join(
    [
        "Take one backup now and wait for its outcome on every node.",
        "KIND is snapshot (node snapshot), cluster-wide or incremental. CLUSTER_ID names the "
        "cluster as the seed scripts did: the run counts as the config's job of that KIND on "
        "that cluster (however the job names it), else it takes the policies of the first job "
        "of that KIND. Without CLUSTER_ID, the config's only job of that KIND runs (or --job "
        "NAME). The run is recorded in the history and holds the same locks as the daemon's "
        "runs.",
        "Exit codes: 0 succeeded; 1 failed or interrupted; 2 config or usage error; 3 timed "
        "out waiting for the outcome; 4 skipped (the job or the cluster was busy); 5 server "
        "unreachable.",
    ]
)


def exit_code(result: RunResult) -> BackupExit:
    from cassy_scheduler.records import Failure, Outcome

    if result.outcome is Outcome.SUCCEEDED:
        return BackupExit.SUCCEEDED
    if result.outcome is Outcome.TIMED_OUT:
        return BackupExit.TIMED_OUT
    if result.outcome is Outcome.SKIPPED:
        return BackupExit.SKIPPED
    if result.failure is Failure.UNREACHABLE:
        return BackupExit.UNREACHABLE
    return BackupExit.FAILED


def backup(  # noqa: PLR0917 (typer reads options from parameters)
    kind: JobType = typer.Argument(
        ..., metavar="KIND", help="snapshot, cluster-wide or incremental."
    ),
    cluster_id: str | None = typer.Argument(
        None, metavar="CLUSTER_ID", help="The cluster id to back up."
    ),
    config: Path = config_option(),
    job: str | None = typer.Option(
        None, "--job", "-j", metavar="NAME", help="Run this configured job."
    ),
    as_json: bool = json_option(),
    log_level: str = typer.Option(
        "WARNING", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR (stderr)."
    ),
) -> None:
    from cassy_scheduler.logs import configure_logging
    from cassy_scheduler.runtime import Runtime
    from cassy_scheduler.scheduling import SchedulingError
    from cassy_scheduler.scheduling.oneshot import OneShotError, one_shot_job
    from cassy_scheduler.statefile import StateError

    configure_logging(log_level)
    if kind is JobType.PRUNE:
        fail("prune is not a kind of backup: run `cassy-scheduler prune`", BackupExit.USAGE)
    settings = load(config)
    try:
        runtime = Runtime(settings)
    except (SchedulingError, StateError) as exc:
        fail(str(exc), BackupExit.USAGE)
    with runtime:
        try:
            chosen = one_shot_job(settings, kind, cluster_id, job, _resolver(runtime))
        except OneShotError as exc:
            fail(str(exc), BackupExit.USAGE)
        runtime.notifier.adopt(chosen)
        result = _run_with_signals(runtime, chosen)
    if as_json:
        emit_json(result.as_dict())
    else:
        _describe(result)
    raise typer.Exit(exit_code(result))


def _resolver(runtime: Runtime) -> ClusterResolver:
    """Which cluster id a configured job's name or node means on the server, never
    registering anything; unknown (None) when the server cannot say."""
    from cassy_scheduler.client import CassyError
    from cassy_scheduler.config.model import ClusterRef
    from cassy_scheduler.scheduling.resolve import ResolveError, resolve_cluster

    def resolve(ref: ClusterRef) -> str | None:
        try:
            found = resolve_cluster(
                runtime.client, dataclasses.replace(ref, register_if_missing=False)
            )
        except (CassyError, ResolveError):
            return None
        return found.cluster_id

    return resolve


def _run_with_signals(runtime: Runtime, job: JobConfig) -> RunResult:
    """Run in a worker thread so SIGTERM/SIGINT only set a flag the run checks."""
    from cassy_scheduler.scheduling import SchedulingError
    from cassy_scheduler.statefile import StateError

    stop = threading.Event()
    results: list[RunResult] = []
    errors: list[SchedulingError | StateError] = []

    def work() -> None:
        try:
            results.append(runtime.runner.run(job, runtime.clock.now(), stop))
            if results[0].succeeded and job.retention is not None and job.prune_schedule is None:
                runtime.pruner.prune(job, stop)  # as the daemon does: its own run and notice
        except (SchedulingError, StateError) as exc:  # the state files, not the backup
            errors.append(exc)

    worker = threading.Thread(target=work, name="backup")

    def interrupt(signum: int, frame: FrameType | None) -> None:
        err().print(f"{signal.Signals(signum).name}: stopping the run")
        stop.set()

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.5)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if errors:
        fail(str(errors[0]), BackupExit.FAILED)
    return results[0]


def _describe(result: RunResult) -> None:
    from cassy_scheduler.records import Outcome

    console = out()
    colour = {
        Outcome.SUCCEEDED: "green",
        Outcome.SKIPPED: "yellow",
        Outcome.TIMED_OUT: "yellow",
    }.get(result.outcome, "red")
    took = ""
    if result.started_at and result.finished_at:
        took = f" in {(result.finished_at - result.started_at).total_seconds():.0f}s"
    console.print(
        styled(
            (result.job_name, "bold"),
            f" ({result.job_type}) on {result.cluster_id or '?'}: ",
            (result.outcome.value, colour),
            took,
        )
    )
    if result.snapshot_id:
        base = " (base taken first)" if result.base_snapshot_taken else ""
        console.print(f"  snapshot id: {result.snapshot_id}{base}")
    for node in result.nodes:
        reason = f" ({node.reason})" if node.reason else ""
        console.print(f"  node {node.target_ip}: {node.status.name}{reason}")
    if result.attempts > 1:
        console.print(f"  attempts: {result.attempts}")
    if result.error:
        console.print(styled("  ", (result.error, "red")))
