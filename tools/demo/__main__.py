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
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from cassy_scheduler.config import load_config
from cassy_scheduler.scheduling.history import Outcome, RunHistory
from tools.demo.configs import scheduler_config
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
from tools.localcluster import LocalCluster

USAGE = "usage: python -m tools.demo [restore]"
JOB_TYPES = {"snapshot", "incremental", "cluster-wide"}


def _sample_data(cluster: LocalCluster, stop: threading.Event) -> None:
    """Create a keyspace and keep writing orders, so every incremental has something new."""
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
    for i in range(1000):
        session.execute(insert, (i, f"item-{i % 37}", i % 5 + 1))

    def keep_writing() -> None:
        i = 1000
        while not stop.wait(1.0):
            session.execute(insert, (i, f"item-{i % 37}", i % 5 + 1))
            i += 1
        driver.shutdown()

    threading.Thread(target=keep_writing, name="demo-writer", daemon=True).start()


def _table(config_path: Path, history_path: Path, sink: MailSink) -> Table:
    config = load_config(config_path)
    table = Table(title=f"cassy-scheduler demo · {datetime.now(UTC):%H:%M:%S} UTC")
    for column in ("job", "type", "schedule", "last outcome", "snapshot", "next run"):
        table.add_column(column)
    history = RunHistory.open_read_only(history_path) if history_path.exists() else None
    now = datetime.now(UTC)
    for job in config.jobs:
        last = history.last_run(job.name) if history else None
        outcome = last.outcome.value if last else "-"
        style = {"succeeded": "green", "failed": "red", "running": "yellow"}.get(outcome, "")
        next_run = job.timetable.next_fire(now).run_at
        table.add_row(
            job.name,
            job.type.value,
            job.schedule.expression,
            f"[{style}]{outcome}[/]" if style else outcome,
            (last.snapshot_id or "-")[:8] if last else "-",
            f"{next_run:%H:%M:%S} (in {int((next_run - now).total_seconds())} s)",
        )
    if history:
        history.close()
    newest = f", newest: {escape(sink.newest_subject)}" if sink.count else ""
    table.caption = f"mails received: {sink.count}{newest}"
    return table


def _succeeded_types(history_path: Path) -> set[str]:
    history = RunHistory.open_read_only(history_path)
    try:
        return {r.job_type for r in history.list_runs(limit=500) if r.outcome is Outcome.SUCCEEDED}
    finally:
        history.close()


def _start_services(
    work: Path,
    cluster: LocalCluster,
    children: list[subprocess.Popen[bytes]],
    mail_port: int,
    pace: str,
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
    scheduler_toml = scheduler_config(work, cluster, port, mail_port, pace)
    run = [sys.executable, "-m", "cassy_scheduler", "run", "--config", str(scheduler_toml)]
    children.append(start(run, work / "scheduler.log"))
    console.print(f"  scheduler: {scheduler_toml} (edit a schedule: it reloads by itself)")
    return scheduler_toml


def _short_verdict(history_path: Path, sink: MailSink) -> int:
    """A short run passes when every job type succeeded once and a notice was mailed."""
    done = _succeeded_types(history_path)
    if done and not sink.count:
        sink.wait_for(1, timeout_s=30)  # notices are sent in the background, after the run
    console.print(f"succeeded job types: {', '.join(sorted(done)) or 'none'}", soft_wrap=True)
    console.print(f"received mails: {sink.count} in {sink.directory}", soft_wrap=True)
    return 0 if done >= JOB_TYPES and sink.count >= 1 else 1


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
        cluster.start_all()
        console.print(f"  nodes: {', '.join(cluster.addresses)} (CQL port 9042)")
        _sample_data(cluster, stopping)
        sink.start()
        console.print(
            f"  mails: {sink.directory} (one .eml file per notification; "
            "open with any mail reader or `cat`)",
            soft_wrap=True,
        )
        pace = "short" if seconds else "normal"
        scheduler_toml = _start_services(work, cluster, children, sink.port, pace)
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
        return _short_verdict(history_path, sink) if seconds else 0
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
