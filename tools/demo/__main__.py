"""Run the demo until Ctrl-C (or DEMO_SECONDS), then stop everything it started.

make demo                     # 3 nodes, until Ctrl-C
DEMO_NODES=1 DEMO_SECONDS=150 make demo
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from cassandra.cluster import Cluster
from rich.console import Console
from rich.live import Live
from rich.table import Table

from cassy_scheduler.config import load_config
from cassy_scheduler.scheduling.history import Outcome, RunHistory
from tools.demo.configs import REPO, scheduler_config, server_config
from tools.localcluster import LocalCluster

console = Console()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}:\n{log.read_text()}")


def _table(config_path: Path, history_path: Path) -> Table:
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
    return table


def _succeeded_types(history_path: Path) -> set[str]:
    history = RunHistory.open_read_only(history_path)
    try:
        return {r.job_type for r in history.list_runs(limit=500) if r.outcome is Outcome.SUCCEEDED}
    finally:
        history.close()


def _start_services(
    work: Path, cluster: LocalCluster, children: list[subprocess.Popen[bytes]], pace: str
) -> Path:
    """The example application, the server and the scheduler, in the order they need."""
    app_port = _free_port()
    rf = str(min(3, len(cluster.addresses)))
    app = [sys.executable, "-m", "examples.pausable_app", "--listen", f"127.0.0.1:{app_port}"]
    app += ["--cassandra", cluster.addresses[0], "--keyspace", "app", "--replication-factor", rf]
    children.append(_start(app, work / "app.log"))
    _wait_listening(app_port, children[-1], work / "app.log")
    console.print(f"  example application (pauses for cluster-wide backups): 127.0.0.1:{app_port}")

    port = _free_port()
    server_toml = server_config(work, cluster, port, f"127.0.0.1:{app_port}")
    serve = [sys.executable, "-m", "cassy_scheduler", "serve", "--config", str(server_toml)]
    children.append(_start(serve, work / "server.log"))
    _wait_listening(port, children[-1], work / "server.log")
    console.print(f"  built-in server: 127.0.0.1:{port}, backups in {work / 'backups'}")

    scheduler_toml = scheduler_config(work, cluster, port, pace)
    run = [sys.executable, "-m", "cassy_scheduler", "run", "--config", str(scheduler_toml)]
    children.append(_start(run, work / "scheduler.log"))
    console.print(f"  scheduler: {scheduler_toml} (edit a schedule: it reloads by itself)")
    return scheduler_toml


def main() -> int:
    nodes = int(os.environ.get("DEMO_NODES", "3"))
    seconds = float(os.environ.get("DEMO_SECONDS", "0")) or None
    work = Path(os.environ.get("DEMO_DIR", REPO / ".demo")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())

    first_octet = int(os.environ.get("DEMO_FIRST_OCTET", "1"))
    cluster = LocalCluster(work / "cluster", nodes, cluster_name="demo", first_octet=first_octet)
    children: list[subprocess.Popen[bytes]] = []
    try:
        console.print(f"Starting a {nodes}-node Cassandra {cluster.jars.version} cluster ...")
        cluster.start_all()
        console.print(f"  nodes: {', '.join(cluster.addresses)} (CQL port 9042)")
        _sample_data(cluster, stopping)
        scheduler_toml = _start_services(work, cluster, children, "short" if seconds else "normal")
        console.print(f"  logs: {work / 'server.log'}, {work / 'scheduler.log'}")
        console.print("Ctrl-C stops everything.\n")
        history_path = load_config(scheduler_toml).runtime.history_path
        deadline = time.monotonic() + seconds if seconds else None
        with Live(
            _table(scheduler_toml, history_path), console=console, refresh_per_second=1
        ) as live:
            while not stopping.wait(2.0):
                live.update(_table(scheduler_toml, history_path))
                if deadline and time.monotonic() > deadline:
                    break
        if seconds:
            done = _succeeded_types(history_path)
            missing = {"snapshot", "incremental", "cluster-wide"} - done
            console.print(f"succeeded job types: {', '.join(sorted(done)) or 'none'}")
            return 1 if missing else 0
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        stopping.set()
        console.print("Stopping the scheduler, the server and the cluster ...")
        for child in reversed(children):  # the scheduler first, while its server still answers
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(90)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        cluster.stop_all()
        console.print("Stopped.")


if __name__ == "__main__":
    sys.exit(main())
