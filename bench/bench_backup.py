"""Backups and a restore as an operator waits for them: a request to the built-in server (a real
`cassy-scheduler serve` process) until every node is COMPLETED, against the plain tools doing
the same work, in turns (ours, baseline, ours, ...), BENCH_PAIRS (default 5) pairs each.

One node on 127.0.0.91 holds about BENCH_BACKUP_MB (default 1500) MB of incompressible rows;
the server stores into a local directory and runs nodetool in its resident JVM
([nodes.nodetool_jvm]), or with BENCH_NODETOOL=process as Cassandra's own `nodetool` script
does (one JVM a call, counted). Cases, each against its baseline:
- full snapshot (nothing stored yet)          vs `cp -r` of a snapshot + `sync`
- second snapshot of unchanged data           vs `nodetool snapshot` alone
- incremental with nothing new                vs `nodetool flush` alone
- incremental after 50 MB more rows           vs `nodetool flush`, `cp` of the new files, `sync`
- restore of a stopped, emptied node          vs `cp -r` of the stored files + `sync`
Also printed: bytes sent, nodetool JVMs per backup, CPU seconds per GB (the server and the
nodetool JVMs it ran apart) and the server's peak resident memory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from bench.compare import PAIRS, Runs, in_turns, report, timed
from bench.data import KEYSPACE, fill
from cassy_scheduler.client import CassyClient, RestoreEntry
from cassy_scheduler.node.datadir import backup_files
from cassy_scheduler.outcome import poll, wait_for_backup
from cassy_scheduler.protocol.types import BackupType, OperationStatus, RestoreType
from tests.serverproc import ServerProcess, server_toml
from tools.localcluster import LocalCluster
from tools.localcluster.artifacts import fetch
from tools.localcluster.java import find_java
from tools.localcluster.nodeconfig import nodetool_command

OCTET = 91
INCREMENT_MB = 50
_COMPLETED = re.compile(r"node backup completed .* bytes_sent=(\d+) .*bytes_copied=(\d+)")
_JVM_STARTED = re.compile(r"nodetool JVM started pid=(\d+)")
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Usage:
    """CPU seconds of the server itself and of the processes it ran (nodetool JVMs)."""

    own: float = 0.0
    children: float = 0.0

    @classmethod
    def of(cls, pid: int) -> Usage:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
        return cls((utime + stime) / _TICK, (cutime + cstime) / _TICK)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.own - other.own, self.children - other.children)


@dataclass
class Bench:
    work: Path
    cluster: LocalCluster
    server: ServerProcess = field(init=False)
    client: CassyClient = field(init=False)
    cluster_id: str = field(init=False)
    counter: Path = field(init=False)
    nodetool: list[str] = field(init=False)
    _seen: int = 0  # node backups logged before the newest request

    def __post_init__(self) -> None:
        self.nodetool = nodetool_command(find_java(), fetch())
        self.counter = self.work / "nodetool-calls"
        counting = self.work / "nodetool"
        counting.write_text(
            f"#!/bin/sh\necho >> {shlex.quote(str(self.counter))}\n"
            f'exec {shlex.join(self.nodetool)} "$@"\n'
        )
        counting.chmod(0o755)
        resident = os.environ.get("BENCH_NODETOOL", "resident") == "resident"
        print(f"nodetool: {'one resident JVM' if resident else 'a JVM per command'}")
        config = server_toml(self.work, [self.cluster], nodetool=counting, resident=resident)
        self.server = ServerProcess(config, self.work / "server.log").start()
        self.client = CassyClient(self.server.address, timeout_s=600)
        self.cluster_id = self.client.register_cluster(self.node).cluster_id

    @property
    def node(self) -> str:
        return self.cluster.addresses[0]

    @property
    def data_dir(self) -> Path:
        return self.cluster.spec(1).data_dir

    @property
    def pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    def usage(self) -> Usage:
        """The server's CPU and its nodetool JVMs': ended ones, and the resident one so far."""
        usage = Usage.of(self.pid)
        started = _JVM_STARTED.findall(self.server.output())
        if started:
            # One that ended has its time in the server's children's already.
            with contextlib.suppress(FileNotFoundError):
                usage.children += Usage.of(int(started[-1])).own
        return usage

    def launches(self) -> int:
        return len(self.counter.read_text().splitlines()) if self.counter.exists() else 0

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.pid}/status").read_text()
        found = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(found.group(1)) / 1024 if found else float("nan")

    def backup(self, backup_type: BackupType, snapshot_id: str | None = None) -> str:
        """TakeBackup, then wait (polling every 0.25 s) until every node is COMPLETED."""
        self._seen = len(_COMPLETED.findall(self.server.output()))
        ack = self.client.take_backup(self.cluster_id, backup_type, snapshot_id)
        outcome = wait_for_backup(self.client, ack, timeout_s=1800, poll_interval_s=0.25)
        if not outcome.succeeded:
            raise RuntimeError(f"backup did not complete: {outcome}")
        return ack.snapshot_id

    def restore(self, snapshot_id: str) -> None:
        """RestoreBackup of this node, then wait (every 0.25 s) until its row is COMPLETED."""
        listed = self.client.list_restore_statuses(self.cluster_id, snapshot_id)
        before = {row.created_at_ms for row in listed}
        self.client.restore_backup(self.cluster_id, snapshot_id, RestoreType.NODE, [self.node])

        def rows() -> list[RestoreEntry]:
            found = self.client.list_restore_statuses(self.cluster_id, snapshot_id)
            return [row for row in found if row.created_at_ms not in before]

        def final(found: list[RestoreEntry]) -> bool:
            return bool(found) and all(row.status.is_final for row in found)

        none: list[RestoreEntry] = []
        polled = poll(rows, final, none, 1800, 0.25, f"restore of {snapshot_id}")
        if polled.timed_out or any(r.status is not OperationStatus.COMPLETED for r in polled.value):
            raise RuntimeError(f"restore did not complete: {polled.value}")

    def sent(self) -> tuple[int, int]:
        """Bytes sent and bytes stored from earlier uploads by the newest node backup, once
        its line is in the log (the row goes COMPLETED a moment before it is written)."""
        deadline = time.monotonic() + 30
        while True:
            found = _COMPLETED.findall(self.server.output())
            if len(found) > self._seen or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        sent, copied = found[-1]
        return int(sent), int(copied)

    def run_nodetool(self, *args: str) -> None:
        spec = self.cluster.spec(1)
        subprocess.run(
            [*self.nodetool, "-h", "127.0.0.1", "-p", str(spec.jmx_port), *args],
            check=True,
            capture_output=True,
        )

    def close(self) -> None:
        self.client.close()
        self.server.stop()


def _sync() -> None:
    subprocess.run(["sync"], check=True)


def _copy(source: Path, target: Path) -> None:
    subprocess.run(["cp", "-r", str(source), str(target)], check=True)
    _sync()


def _empty(path: Path) -> None:
    if path.exists():
        for entry in path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _per_gb(usage: Usage, runs: int, size: int) -> str:
    gb = runs * size / 1e9
    return f"CPU per GB: server {usage.own / gb:.2f} s, nodetool JVMs {usage.children / gb:.2f} s"


def full_snapshot(bench: Bench, pairs: int) -> tuple[str, int]:
    bench.run_nodetool("snapshot", "-t", "bench-cp", KEYSPACE)
    (table,) = (bench.data_dir / KEYSPACE).glob("blobs-*")
    source = table / "snapshots" / "bench-cp"
    size = _tree_bytes(source)
    store, copy = bench.work / "storage" / "node-backup", bench.work / "cp-target"
    snapshots: list[str] = []

    def nothing_stored() -> None:  # nothing a snapshot could be stored from
        shutil.rmtree(store, ignore_errors=True)
        _sync()

    def no_copy() -> None:
        shutil.rmtree(copy, ignore_errors=True)
        _sync()

    before, calls = bench.usage(), bench.launches()
    ours, base = in_turns(
        lambda: snapshots.append(bench.backup(BackupType.NODE_SNAPSHOT)),
        lambda: _copy(source, copy),
        names=("snapshot through the server", "cp -r + sync"),
        pairs=pairs,
        before_ours=nothing_stored,
        before_baseline=no_copy,
    )
    used = bench.usage() - before
    report(f"full snapshot, {size / 1e6:.0f} MB", ours, base)
    print(f"  ours: {size / 1e6 / ours.median:.0f} MB/s; {_per_gb(used, pairs, size)}")
    print(f"  nodetool JVMs started per snapshot: {(bench.launches() - calls) / pairs:.1f}")
    bench.run_nodetool("clearsnapshot", "-t", "bench-cp")
    shutil.rmtree(copy, ignore_errors=True)
    # The last snapshot stays stored: the next case builds on it.
    return snapshots[-1], size


def unchanged_snapshot(bench: Bench, pairs: int, size: int) -> str:
    snapshots: list[str] = []
    sent: list[tuple[int, int]] = []
    tags = iter(range(1000))

    def ours() -> None:
        snapshots.append(bench.backup(BackupType.NODE_SNAPSHOT))
        sent.append(bench.sent())

    def baseline() -> None:
        bench.run_nodetool("snapshot", "-t", f"bench-only-{next(tags)}", KEYSPACE)

    before, calls = bench.usage(), bench.launches()
    mine, base = in_turns(
        ours, baseline, names=("second snapshot, unchanged", "nodetool snapshot"), pairs=pairs
    )
    used = bench.usage() - before
    report(f"second snapshot of unchanged data ({size / 1e6:.0f} MB)", mine, base)
    sent_bytes, copied_bytes = sorted({s for s, _ in sent}), sorted({c for _, c in sent})
    print(f"  bytes sent per snapshot: {sent_bytes}; stored from the previous one: {copied_bytes}")
    launches = (bench.launches() - calls) / pairs
    print(f"  nodetool JVMs started per snapshot: {launches:.1f}; {_per_gb(used, pairs, size)}")
    for number in range(pairs):
        bench.run_nodetool("clearsnapshot", "-t", f"bench-only-{number}")
    return snapshots[-1]


def nothing_new(bench: Bench, pairs: int, snapshot_id: str) -> None:
    sent: list[int] = []

    def ours() -> None:
        bench.backup(BackupType.NODE_INCREMENTAL, snapshot_id)
        sent.append(bench.sent()[0])

    calls, before = bench.launches(), bench.usage()
    mine, base = in_turns(
        ours,
        lambda: bench.run_nodetool("flush", "--", KEYSPACE),
        names=("incremental, nothing new", "nodetool flush"),
        pairs=pairs,
    )
    used = bench.usage() - before
    report("incremental with nothing new", mine, base)
    launches = (bench.launches() - calls) / pairs
    print(f"  bytes sent: {sorted(set(sent))}; nodetool JVMs started each: {launches:.1f}")
    print(
        f"  CPU per incremental: server {used.own / pairs:.2f} s, "
        f"nodetool JVMs {used.children / pairs:.2f} s"
    )


def after_a_flush(bench: Bench, pairs: int, snapshot_id: str, next_key: int) -> int:
    """Each side gets 50 MB of new rows to flush; what the baseline flushed is then taken
    by an untimed incremental, so each of ours sends only its own 50 MB."""
    mine, base = Runs("incremental after 50 MB"), Runs("flush, cp of new files, sync")
    sent: list[int] = []
    target = bench.work / "cp-increment"
    for _ in range(pairs):
        next_key = fill(bench.cluster.addresses, INCREMENT_MB, first_key=next_key)
        mine.seconds.append(timed(lambda: bench.backup(BackupType.NODE_INCREMENTAL, snapshot_id)))
        sent.append(bench.sent()[0])
        next_key = fill(bench.cluster.addresses, INCREMENT_MB, first_key=next_key)
        known = {f.relative for f in backup_files(bench.data_dir, [KEYSPACE])}
        base.seconds.append(timed(partial(_flush_and_copy, bench, known, target)))
        shutil.rmtree(target, ignore_errors=True)
        bench.backup(BackupType.NODE_INCREMENTAL, snapshot_id)  # the baseline's files
    report(f"incremental after {INCREMENT_MB} MB more rows", mine, base)
    print(f"  MB sent per incremental: {sorted({round(s / 1e6) for s in sent})}")
    return next_key


def _flush_and_copy(bench: Bench, known: set[str], target: Path) -> None:
    """What an incremental does by hand: flush, copy the files the flush added, sync."""
    bench.run_nodetool("flush", "--", KEYSPACE)
    new = [f for f in backup_files(bench.data_dir, [KEYSPACE]) if f.relative not in known]
    target.mkdir(exist_ok=True)
    subprocess.run(["cp", *[str(f.path) for f in new], str(target)], check=True)
    _sync()


def restore(bench: Bench, pairs: int, snapshot_id: str) -> None:
    spec = bench.cluster.spec(1)
    directories = [spec.data_dir, spec.commitlog_dir, spec.hints_dir, spec.saved_caches_dir]
    stored = bench.work / "storage" / "node-backup" / bench.cluster_id / snapshot_id / bench.node
    size = _tree_bytes(stored)
    bench.cluster.stop(1)

    def between() -> None:
        for directory in directories:
            _empty(directory)
        _sync()

    before = bench.usage()
    ours, base = in_turns(
        lambda: bench.restore(snapshot_id),
        lambda: _copy(stored, spec.data_dir / "copy"),
        names=("restore through the server", "cp -r + sync"),
        pairs=pairs,
        before_ours=between,
        before_baseline=between,
    )
    used = bench.usage() - before
    report(f"restore of a stopped, emptied node ({size / 1e6:.0f} MB)", ours, base)
    print(f"  ours: {size / 1e6 / ours.median:.0f} MB/s; {_per_gb(used, pairs, size)}")


def main() -> None:
    megabytes = int(os.environ.get("BENCH_BACKUP_MB", "1500"))
    pairs = int(os.environ.get("BENCH_PAIRS", str(PAIRS)))
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
        work = Path(tmp)
        cluster = LocalCluster(work / "cluster", 1, cluster_name="bench", first_octet=OCTET)
        cluster.start_all()
        bench = None
        try:
            print(f"writing {megabytes} MB of rows to {cluster.addresses[0]} ...", flush=True)
            started = time.perf_counter()
            next_key = fill(cluster.addresses, megabytes)
            cluster.nodetool(1, "flush", KEYSPACE)
            print(f"  written in {time.perf_counter() - started:.0f} s", flush=True)
            bench = Bench(work, cluster)
            snapshot_id, size = full_snapshot(bench, pairs)
            snapshot_id = unchanged_snapshot(bench, pairs, size)
            nothing_new(bench, pairs, snapshot_id)
            after_a_flush(bench, pairs, snapshot_id, next_key)
            restore(bench, pairs, snapshot_id)
            print(f"server peak resident memory: {bench.peak_rss_mb():.0f} MB")
        finally:
            if bench is not None:
                bench.close()
            cluster.stop_all(graceful=False)
