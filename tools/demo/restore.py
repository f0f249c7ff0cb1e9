"""The restore tour: back a cluster up, lose one node's data, and bring every row back.

make demo-restore                                      # 3 nodes on 127.0.0.21-23
DEMO_NODES=1 DEMO_FIRST_OCTET=104 python -m tools.demo restore

Backups, listings and the restore go through the `cassy-scheduler` commands an operator
would type; only writing rows and losing the node are done by hand. The keyspace has
replication factor 1, so the lost node's rows are really gone until the restore.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import Cluster
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.query import SimpleStatement
from rich.markup import escape
from rich.table import Table

from tools.demo.configs import restore_scheduler_config
from tools.demo.services import (
    Settings,
    console,
    ignore_interrupts,
    start_server,
    stop_children,
)
from tools.localcluster import LocalCluster
from tools.localcluster.nodeconfig import NodeSpec

FIRST_ROWS, MORE_ROWS = 1000, 200
#: What the tour removes from its directory before it starts, so each run starts clean.
OWN_ENTRIES = ("cluster", "backups", "state", "server.log", "scheduler.toml", "server.toml")


class TourError(Exception):
    """A step did not do what the tour needs; the message says which and why."""


@dataclass
class Step:
    title: str
    result: str = ""
    seconds: float = 0.0


@dataclass
class Tour:
    """The steps taken so far, printed as they start and tabled at the end."""

    steps: list[Step] = field(default_factory=list)

    @contextmanager
    def step(self, title: str) -> Iterator[Step]:
        current = Step(f"{len(self.steps) + 1}. {title}")
        self.steps.append(current)
        console.print(f"\n[bold]{escape(current.title)}[/]")
        began = time.monotonic()
        try:
            yield current
        except BaseException:
            current.result = current.result or "[red]failed[/]"
            raise
        finally:
            current.seconds = time.monotonic() - began

    def table(self) -> Table:
        table = Table(title="restore tour", title_justify="left")
        for column in ("step", "result", "took"):
            table.add_column(column, overflow="fold")
        for step in self.steps:
            table.add_row(escape(step.title), step.result, f"{step.seconds:.0f} s")
        return table


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends the tour like Ctrl-C, so the clean-up below still runs."""
    raise KeyboardInterrupt


def _fresh(work: Path) -> None:
    """Remove a previous run's cluster, backups and state, unless its nodes still run or the
    directory holds someone else's (DEMO_DIR pointing at the demo's, say)."""
    marker = work / ".restore-tour"
    if not marker.exists() and any((work / name).exists() for name in OWN_ENTRIES):
        raise TourError(f"{work} was not made by the restore tour; set DEMO_DIR to another one")
    state = work / "cluster" / "cluster.json"
    if state.exists() and any(LocalCluster.attach(work / "cluster").running().values()):
        raise TourError(
            f"a previous run's nodes still run under {work / 'cluster'}; stop them with "
            f"`python -m tools.localcluster stop --root {work / 'cluster'}`"
        )
    for name in OWN_ENTRIES:
        path = work / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for metadata in work.glob("server-metadata.db*"):
        metadata.unlink()
    marker.write_text("made by `python -m tools.demo restore`; emptied at each run\n")
    (work / ".gitignore").write_text("*\n")  # everything here is made by the tour


# ------------------------------------------------------------------------- the CLI


def _cli(*args: str, show: bool = True) -> str:
    """Run `cassy-scheduler ARGS` as its own process; its output, or TourError on failure."""
    command = shlex.join(["cassy-scheduler", *args])
    console.print(f"  $ {command}", style="cyan", markup=False, highlight=False, soft_wrap=True)
    done = subprocess.run(
        [sys.executable, "-m", "cassy_scheduler", *args],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        env={**os.environ, "COLUMNS": str(max(60, console.width - 4))},
    )
    text = (done.stdout if show or done.returncode else "") + done.stderr
    for line in text.rstrip().splitlines():
        console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)
    if done.returncode != 0:
        raise TourError(f"`cassy-scheduler {args[0]}` exited with {done.returncode}")
    return done.stdout


def _latest_snapshot(config: Path, cluster_name: str) -> tuple[str, str, int]:
    """(cluster id, newest node snapshot every node completed, incrementals of it)."""
    clusters = json.loads(_cli("clusters", "--config", str(config), "--json", show=False))
    cluster_id = next(c["cluster_id"] for c in clusters if c["cluster_name"] == cluster_name)
    rows = json.loads(_cli("backups", cluster_id, "--config", str(config), "--json", show=False))
    requests: dict[tuple[str, str, int], list[str]] = {}
    for row in rows:  # newest first; one row per node of each request
        key = (row["backup_type"], row["snapshot_id"], row["created_at_ms"])
        requests.setdefault(key, []).append(row["status"])
    done = [key for key, statuses in requests.items() if set(statuses) == {"COMPLETED"}]
    snapshot_id = next(sid for kind, sid, _ in done if kind == "NODE_SNAPSHOT")
    incrementals = sum(
        1 for kind, sid, _ in done if (kind, sid) == ("NODE_INCREMENTAL", snapshot_id)
    )
    return cluster_id, snapshot_id, incrementals


# ---------------------------------------------------------------------------- CQL


@contextmanager
def _session(cluster: LocalCluster) -> Iterator[Any]:
    """A fresh driver per use: it never waits on reconnecting to a node that was down."""
    driver = Cluster(cluster.addresses, protocol_version=5, connect_timeout=20)
    try:
        session = driver.connect()
        session.default_timeout = 120
        yield session
    finally:
        driver.shutdown()


def _write(cluster: LocalCluster, first: int, count: int) -> None:
    with _session(cluster) as session:
        session.execute(
            "CREATE KEYSPACE IF NOT EXISTS shop WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        session.execute(
            "CREATE TABLE IF NOT EXISTS shop.orders (id int PRIMARY KEY, item text, qty int)"
        )
        insert = session.prepare("INSERT INTO shop.orders (id, item, qty) VALUES (?, ?, ?)")
        insert.consistency_level = ConsistencyLevel.ONE
        rows = [(i, f"item-{i % 37}", i % 5 + 1) for i in range(first, first + count)]
        execute_concurrent_with_args(session, insert, rows, concurrency=32)


def _count(cluster: LocalCluster) -> int:
    query = SimpleStatement(
        "SELECT count(*) FROM shop.orders", consistency_level=ConsistencyLevel.ONE
    )
    with _session(cluster) as session:
        return int(session.execute(query).one()[0])


def _readable(cluster: LocalCluster, total: int) -> int:
    """How many of the ids 0..total-1 one replica still answers for, read one by one."""
    try:
        with _session(cluster) as session:
            select = session.prepare("SELECT id FROM shop.orders WHERE id = ?")
            select.consistency_level = ConsistencyLevel.ONE
            results = execute_concurrent_with_args(
                session, select, [(i,) for i in range(total)], raise_on_first_error=False
            )
            return sum(1 for ok, rows in results if ok and rows.one() is not None)
    except Exception:  # no node left to connect to
        return 0


def _count_when_back(cluster: LocalCluster, timeout_s: float = 180) -> int:
    """The row count once the restarted node answers reads again."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return _count(cluster)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def _empty(spec: NodeSpec) -> list[str]:
    """Empty the node's data, commit log, hints and saved caches: a lost disk."""
    emptied = []
    for directory in (spec.data_dir, spec.commitlog_dir, spec.hints_dir, spec.saved_caches_dir):
        for entry in directory.iterdir() if directory.exists() else ():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        emptied.append(directory.name)
    return emptied


# --------------------------------------------------------------------------- tour


def _tour(
    settings: Settings,
    cluster: LocalCluster,
    children: list[subprocess.Popen[bytes]],
    tour: Tour,
    counts: dict[str, str],
) -> None:
    work = settings.work
    with tour.step(f"Start a {settings.nodes}-node Cassandra cluster and the built-in server") as s:
        cluster.start_all()
        console.print(f"  nodes: {', '.join(cluster.addresses)} (CQL port 9042)")
        port = start_server(work, cluster, children)
        config = restore_scheduler_config(work, cluster, port)
        console.print(f"  scheduler config: {config}; server log: {work / 'server.log'}")
        s.result = ", ".join(cluster.addresses)

    with tour.step(f"Write {FIRST_ROWS:,} orders (keyspace shop, replication_factor 1)") as s:
        _write(cluster, 0, FIRST_ROWS)
        s.result = f"{FIRST_ROWS:,} rows"

    with tour.step("Register the cluster and take a node snapshot") as s:
        _cli("backup", "snapshot", "--config", str(config))
        s.result = "[green]succeeded[/]"

    with tour.step(f"Write {MORE_ROWS:,} more orders, then take an incremental backup") as s:
        _write(cluster, FIRST_ROWS, MORE_ROWS)
        _cli("backup", "incremental", "--config", str(config))
        s.result = "[green]succeeded[/]"

    with tour.step("Count the orders (SELECT count(*) at CL ONE)") as s:
        counts["before"] = str(_count(cluster))
        console.print(f"  {counts['before']} rows")
        s.result = f"{counts['before']} rows"

    spec = cluster.specs[-1]
    with tour.step(f"Lose {spec.name} ({spec.address}): stop it and empty its directories") as s:
        cluster.stop(spec.number)
        emptied = _empty(spec)
        console.print(f"  emptied {', '.join(emptied)} under {spec.home}")
        try:
            counted = f"still {_count(cluster)} rows"
        except Exception as exc:  # Unavailable, or NoHostAvailable with no node left
            counted = f"count(*) fails with {type(exc).__name__}"
            console.print(f"  {counted}: {escape(str(exc))[:200]}")
        readable = _readable(cluster, FIRST_ROWS + MORE_ROWS)
        console.print(f"  {readable} of {FIRST_ROWS + MORE_ROWS} orders readable one by one")
        counts["after wipe"] = f"{readable} readable ({counted})"
        s.result = escape(counts["after wipe"])

    with tour.step("Find the newest snapshot") as s:
        cluster_id, snapshot_id, incrementals = _latest_snapshot(config, cluster.cluster_name)
        console.print(
            f"  cluster {cluster_id}, snapshot {snapshot_id}, incrementals: {incrementals}"
        )
        s.result = f"{snapshot_id} + {incrementals} incremental"

    with tour.step(f"Restore {spec.address} from it (snapshot and incrementals)") as s:
        _cli("restore", cluster_id, snapshot_id, "--node", spec.address, "--config", str(config))
        s.result = "[green]COMPLETED[/]"

    with tour.step(f"Start {spec.name} again and count the orders") as s:
        cluster.start(spec.number)
        counts["after restore"] = str(_count_when_back(cluster))
        console.print(f"  {counts['after restore']} rows")
        s.result = f"{counts['after restore']} rows"


def main() -> int:
    settings = Settings.from_env(".demo-restore", 21)
    signal.signal(signal.SIGTERM, _interrupt)
    logging.getLogger("cassandra").setLevel(logging.CRITICAL)  # the tour reports what fails
    cluster = settings.cluster("restore-demo")
    children: list[subprocess.Popen[bytes]] = []
    tour = Tour()
    counts = {"before": "?", "after wipe": "?", "after restore": "?"}
    began = time.monotonic()
    interrupted = False
    try:
        _fresh(settings.work)
        console.print(f"Restore tour in {settings.work} (Cassandra {cluster.jars.version})")
        _tour(settings, cluster, children, tour, counts)
    except KeyboardInterrupt:
        interrupted = True
        console.print("[yellow]interrupted[/]")
    except Exception as exc:
        console.print(f"[red]{type(exc).__name__}:[/] {escape(str(exc))}")
    finally:
        ignore_interrupts()
        console.print("\nStopping the server and the cluster ...")
        stop_children(children)
        cluster.stop_all()
    if tour.steps:
        console.print(tour.table())
    console.print(
        f"rows before: {counts['before']}, after wipe: {counts['after wipe']}, "
        f"after restore: {counts['after restore']}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"took {time.monotonic() - began:.0f} s; files and logs in {settings.work}")
    if interrupted:
        return 130
    expected = str(FIRST_ROWS + MORE_ROWS)
    return 0 if counts["before"] == counts["after restore"] == expected else 1
