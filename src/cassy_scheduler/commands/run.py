"""`run`: the scheduler daemon, in the foreground, for systemd or a terminal."""

from __future__ import annotations

from pathlib import Path

import typer

from cassy_scheduler.commands.common import Exit, config_option, fail, load


def run(
    config: Path = config_option(),
    log_level: str = typer.Option(
        "INFO", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR (stderr)."
    ),
) -> None:
    """Run every enabled job on its schedule, until SIGTERM.

    The config file is re-read when it changes or on SIGHUP; a bad edit is logged and the
    running config kept. On SIGTERM, running backups get [scheduler] shutdown_grace to finish
    and are recorded interrupted after it. Exit codes: 0 stopped, 2 config error, 1 other.
    """
    from cassy_scheduler.config.guards import missing_jobs
    from cassy_scheduler.logs import configure_logging
    from cassy_scheduler.metrics import MetricsError
    from cassy_scheduler.runtime import Runtime
    from cassy_scheduler.scheduling import SchedulingError
    from cassy_scheduler.statefile import StateError

    configure_logging(log_level)
    settings = load(config)
    empty = missing_jobs(settings)
    if empty is not None:
        fail(str(empty), Exit.USAGE)
    try:
        runtime = Runtime(settings)
    except (SchedulingError, StateError) as exc:
        fail(str(exc), Exit.USAGE)
    with runtime:
        daemon = runtime.daemon()
        try:
            runtime.serve_metrics()
        except MetricsError as exc:
            fail(str(exc), Exit.USAGE)
        try:
            daemon.serve()
        finally:
            _hold_signals_while_exiting()


def _hold_signals_while_exiting() -> None:
    """A second SIGTERM while notices and history close must not kill the process.

    `serve` restores the default handlers when it returns, yet the runtime still closes
    its notifier and journal after it: a signal then would end the process mid-write.
    """
    import logging
    import signal
    import threading
    from types import FrameType

    if threading.current_thread() is not threading.main_thread():
        return
    log = logging.getLogger("cassy_scheduler.scheduling.daemon")

    def already(signum: int, frame: FrameType | None) -> None:
        log.info(
            "signal received signal=%s decision='already stopping'", signal.Signals(signum).name
        )

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, already)
