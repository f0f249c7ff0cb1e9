"""Run the demo until Ctrl-C (or DEMO_SECONDS), then stop everything it started.

make demo                     # 3 nodes, until Ctrl-C
DEMO_NODES=1 DEMO_SECONDS=150 make demo
make demo-restore             # python -m tools.demo restore: lose a node, restore it
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from cassandra.cluster import Cluster
from cassandra.concurrent import execute_concurrent_with_args
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cassy_scheduler.config.loader import load_config
from cassy_scheduler.history import RunHistory
from cassy_scheduler.records import Outcome
from tools.demo.configs import NORMAL_SCHEDULES, scheduler_config, short_schedules
from tools.demo.mailsink import MailSink
from tools.demo.services import (
    Settings,
    console,
    env_number,
    free_port,
    ignore_interrupts,
    start,
    start_server,
    stop_children,
    wait_listening,
)
from tools.demo.verdict import WAIT_FOR_RUNS_S, Standing, Verdict, judge, read_standing
from tools.localcluster import LocalCluster

USAGE = "usage: python -m tools.demo [restore]"


SAMPLE_ROWS = 1000


def _sample_data(cluster: LocalCluster, stop: threading.Event) -> None:
    """Create a keyspace and keep writing orders, so every incremental has something new."""
    began = time.monotonic()
    driver = Cluster(cluster.addresses, protocol_version=5)
    session = driver.connect()
    rf = min(3, len(cluster.addresses))
    session.execute(
        "CREATE KEYSPACE IF NOT EXISTS shop WITH replication = "
        f"{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}"
    )
    session.execute(
        "CREATE TABLE IF NOT EXISTS shop.orders (id int PRIMARY KEY, item text, qty int)"
    )
    insert = session.prepare("INSERT INTO shop.orders (id, item, qty) VALUES (?, ?, ?)")
    rows = [(i, f"item-{i % 37}", i % 5 + 1) for i in range(SAMPLE_ROWS)]
    for first in range(0, SAMPLE_ROWS, SAMPLE_ROWS // 4):
        batch = rows[first : first + SAMPLE_ROWS // 4]
        execute_concurrent_with_args(session, insert, batch, concurrency=32)
        console.print(
            f"  sample orders written: {first + len(batch)} of {SAMPLE_ROWS} "
            f"({time.monotonic() - began:.0f} s)"
        )

    def keep_writing() -> None:
        i = SAMPLE_ROWS
        while not stop.wait(1.0):
            session.execute(insert, (i, f"item-{i % 37}", i % 5 + 1))
            i += 1
        driver.shutdown()

    threading.Thread(target=keep_writing, name="demo-writer", daemon=True).start()


_STYLES = {"succeeded": "green", "failed": "red", "timed_out": "red", "running": "yellow"}


def _last_cell(history: RunHistory | None, job_name: str) -> tuple[Text, str]:
    """The job's last run that ran (its outcome and snapshot), and a newer skip beside it."""
    if history is None:
        return Text("-"), "-"
    ran = history.last_run(job_name, skipped=False)
    newest = history.last_run(job_name)
    cell = Text("-")
    if ran is not None:
        cell = Text(ran.outcome.value, style=_STYLES.get(ran.outcome.value, ""))
        cell.append(f" {ran.scheduled_for:%H:%M:%S}")
    if newest is not None and newest.outcome is Outcome.SKIPPED and newest is not ran:
        cell.append(f"\nskipped {newest.scheduled_for:%H:%M:%S}", style="dim")
    snapshot = (ran.snapshot_id or "-")[:8] if ran is not None else "-"
    return cell, snapshot


def _table(config_path: Path, history_path: Path, sink: MailSink) -> Table:
    config = load_config(config_path)
    table = Table(title=f"cassy-scheduler demo · {datetime.now(UTC):%H:%M:%S} UTC")
    for column in ("job", "type", "schedule", "last run", "snapshot", "next run"):
        table.add_column(column, no_wrap=column != "last run")
    history = RunHistory.open_read_only(history_path) if history_path.exists() else None
    now = datetime.now(UTC)
    for job in config.jobs:
        last, snapshot = _last_cell(history, job.name)
        next_run = job.timetable.next_fire(now).run_at
        table.add_row(
            job.name,
            job.type.value,
            job.schedule.expression,
            last,
            snapshot,
            f"{next_run:%H:%M:%S} (in {int((next_run - now).total_seconds())} s)",
        )
    if history:
        history.close()
    newest = f", newest: {sink.newest_subject}" if sink.count else ""
    table.caption = Text(f"mails received: {sink.count}{newest}")
    return table


def _start_services(
    work: Path,
    cluster: LocalCluster,
    children: list[subprocess.Popen[bytes]],
    mail_port: int,
    short: bool,
) -> Path:
    """The example application, the server and the scheduler, in the order they need."""
    app_port = free_port()
    rf = str(min(3, len(cluster.addresses)))
    app = [sys.executable, "-m", "examples.pausable_app", "--listen", f"127.0.0.1:{app_port}"]
    app += ["--cassandra", cluster.addresses[0], "--keyspace", "app", "--replication-factor", rf]
    children.append(start(app, work / "app.log"))
    wait_listening(app_port, children[-1], work / "app.log")
    console.print(f"  example application (pauses for cluster-wide backups): 127.0.0.1:{app_port}")

    port = start_server(work, cluster, children, f"127.0.0.1:{app_port}")
    schedules = short_schedules(datetime.now(UTC)) if short else NORMAL_SCHEDULES
    scheduler_toml = scheduler_config(work, cluster, port, mail_port, schedules)
    run = [sys.executable, "-m", "cassy_scheduler", "run", "--config", str(scheduler_toml)]
    children.append(start(run, work / "scheduler.log"))
    console.print(f"  scheduler: {scheduler_toml} (edit a schedule: it reloads by itself)")
    return scheduler_toml


def _short_verdict(
    config_path: Path, sink: MailSink, since: datetime, stopping: threading.Event
) -> int:
    """Pass when every job type succeeded once and a notice was mailed; runs still going (or
    due) at the deadline get WAIT_FOR_RUNS_S more, since a slow machine ends them late."""
    config = load_config(config_path)
    deadline = time.monotonic() + WAIT_FOR_RUNS_S
    while True:
        found = Standing(frozenset(), frozenset())
        if config.runtime.history_path.exists():
            with RunHistory.open_read_only(config.runtime.history_path) as history:
                found = read_standing(config, history, since, datetime.now(UTC))
        verdict = judge(found)
        if verdict is not Verdict.WAIT or time.monotonic() > deadline or stopping.is_set():
            break
        console.print(f"waiting for runs still going: {', '.join(sorted(found.in_flight))}")
        stopping.wait(5.0)
    if found.succeeded and not sink.count:
        sink.wait_for(1, timeout_s=30)  # notices are sent in the background, after the run
    done = ", ".join(sorted(found.succeeded)) or "none"
    console.print(f"succeeded job types: {done}", soft_wrap=True)
    if found.missing:
        console.print(f"never succeeded: {', '.join(sorted(found.missing))}", soft_wrap=True)
    console.print(f"received mails: {sink.count} in {sink.directory}", soft_wrap=True)
    return 0 if verdict is Verdict.PASS and sink.count >= 1 else 1


def demo() -> int:
    settings = Settings.from_env(".demo", 1)
    work = settings.work
    seconds = env_number("DEMO_SECONDS", 0, 0, 7 * 24 * 3600) or None
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())

    cluster = settings.cluster("demo")
    sink = MailSink(work / "mail")
    children: list[subprocess.Popen[bytes]] = []
    try:
        version = cluster.jars.version
        console.print(f"Starting a {settings.nodes}-node Cassandra {version} cluster ...")
        began = datetime.now(UTC)
        cluster.start_all(progress=lambda step: console.print(f"  {step}"))
        console.print(f"  nodes: {', '.join(cluster.addresses)} (CQL port 9042)")
        _sample_data(cluster, stopping)
        sink.start()
        console.print(
            f"  mails: {sink.directory} (one .eml file per notification; "
            "open with any mail reader or `cat`)",
            soft_wrap=True,
        )
        scheduler_toml = _start_services(work, cluster, children, sink.port, bool(seconds))
        console.print(f"  logs: {work / 'server.log'}, {work / 'scheduler.log'}")
        console.print("Ctrl-C stops everything.\n")
        history_path = load_config(scheduler_toml).runtime.history_path
        deadline = time.monotonic() + seconds if seconds else None
        with Live(
            _table(scheduler_toml, history_path, sink), console=console, refresh_per_second=1
        ) as live:
            while not stopping.wait(2.0):
                live.update(_table(scheduler_toml, history_path, sink))
                if deadline and time.monotonic() > deadline:
                    break
        if not console.is_terminal:
            console.line()  # Live leaves its last line open when output goes to a file
        return _short_verdict(scheduler_toml, sink, began, stopping) if seconds else 0
    except KeyboardInterrupt:
        return 0
    finally:
        ignore_interrupts()
        stopping.set()
        console.print("Stopping the scheduler, the server and the cluster ...")
        stop_children(children)  # the scheduler first, while its server still answers
        sink.stop()  # after the scheduler, so its last notices still arrive
        cluster.stop_all()
        console.print("Stopped.")


def main(argv: list[str]) -> int:
    if not argv:
        return demo()
    if argv == ["restore"]:
        from tools.demo.restore import main as restore  # noqa: PLC0415 (only when asked for)

        return restore()
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
