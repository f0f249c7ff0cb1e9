"""Retention's deletion side against one local SeaweedFS S3 server: a prune that deletes
nearly every backup of a cluster, in objects deleted per second.

Each run gets a fresh prefix holding BACKUPS completed node snapshots (default 100, the
issue's figure is 1,000: BENCH_PRUNE_BACKUPS sets it), each of 3 nodes, each node 49 data
files of 1 KiB and its manifest (50 objects), laid out as the server writes them.

- ours:     what a user waits for. A fresh `cassy-scheduler serve` over a fresh metadata
            database that holds the backups' rows (COMPLETED, an hour apart, sizes recorded
            as the server records them), then `cassy-scheduler prune -c FILE --json` timed
            from its start to its exit, with `keep_last = 1`: every backup but the newest
            goes, each through DeleteBackup (listing, manifests first, then batched
            DeleteObjects, then the rows). Afterwards: exit code 0, nothing failed, and the
            bucket and the database hold only the newest backup.
- baseline: the same objects (all but the newest backup's), deleted one DELETE request at
            a time through Storage.delete, timed from the listing to the last delete.

BENCH_PAIRS (default 5) pairs run in turns, A B A B; seeding (many concurrent PUTs) is not
timed. Also printed: the untimed dry run's time before each prune (process start,
DescribeBackups, the decisions), and SeaweedFS's own CPU seconds per 1,000 objects deleted
on each side, which says whose work bounds the rate on loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import obstore
from obstore.store import S3Store

from bench.compare import PAIRS, TIMES, Runs, report
from cassy_scheduler.clock import epoch_ms
from cassy_scheduler.node.manifest import BackupIdentity, Manifest, ManifestEntry
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.server.metadata import SqliteMetadataStore
from cassy_scheduler.storage import Storage, open_storage
from cassy_scheduler.storage.layout import backup_prefix, manifest_key
from cassy_scheduler.storage.options import StorageOptions
from tests.serverproc import ServerProcess, server_head
from tools.peers.objectservers import (
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    ObjectServer,
    s3_create_bucket,
    start_seaweedfs,
)

BUCKET = "bench"
NODES = ("127.0.1.1", "127.0.1.2", "127.0.1.3")  # names in keys and rows; never contacted
DATA_FILES = 49  # and one manifest: 50 objects per node
BODY = os.urandom(1024)
BODY_SHA256 = hashlib.sha256(BODY).hexdigest()
SEED_CONCURRENCY = 64  # PUTs in flight while seeding: SeaweedFS's rate levels off near it
CLUSTER_NAME = "benchprune"
ISSUE_BACKUPS = 1000
AIM = 10.0  # the issue's: batched deletes at least this many times the one-by-one rate
_COMPONENTS = ("Data.db", "Index.db", "Filter.db", "Statistics.db", "Summary.db", "TOC.txt")
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Seeded:
    """One run's backups: the cluster, its snapshot ids newest first, how many objects."""

    cluster_id: str
    snapshot_ids: tuple[str, ...]
    objects: int

    @property
    def kept_prefix(self) -> str:
        """Where the newest backup lives: what keep_last = 1 keeps."""
        return f"node-backup/{self.cluster_id}/{self.snapshot_ids[0]}/"

    @property
    def doomed_objects(self) -> int:
        return self.objects - self.objects // len(self.snapshot_ids)


def _options(endpoint: str, prefix: str) -> StorageOptions:
    return StorageOptions(
        uri=f"s3://{BUCKET}/{prefix}",
        endpoint=endpoint,
        region="us-east-1",
        credentials=MappingProxyType(
            {"access_key_id": S3_ACCESS_KEY, "secret_access_key": S3_SECRET_KEY}
        ),
    )


def _store(endpoint: str, prefix: str) -> S3Store:
    """A raw obstore client of the prefix, for seeding fast through its async API."""
    return S3Store(
        BUCKET,
        prefix=prefix,
        config={
            "endpoint": endpoint,
            "region": "us-east-1",
            "access_key_id": S3_ACCESS_KEY,
            "secret_access_key": S3_SECRET_KEY,
            "virtual_hosted_style_request": False,
        },
        client_options={"allow_http": True},
    )


def _node_objects(
    cluster_id: str, snapshot_id: str, node: str, created_ms: int
) -> list[tuple[str, bytes]]:
    """One node's part of one snapshot: its data files, then its manifest naming them."""
    prefix = backup_prefix(BackupType.NODE_SNAPSHOT, cluster_id, snapshot_id, node)
    table = f"bench/kv-{uuid.uuid5(uuid.NAMESPACE_DNS, cluster_id).hex}"
    entries = []
    for index in range(DATA_FILES):
        generation, component = divmod(index, len(_COMPONENTS))
        path = f"{table}/snapshots/{snapshot_id}/nb-{generation + 1}-big-{_COMPONENTS[component]}"
        entries.append(ManifestEntry(path, prefix + path, len(BODY), BODY_SHA256))
    identity = BackupIdentity(cluster_id, snapshot_id, node, BackupType.NODE_SNAPSHOT, created_ms)
    manifest = Manifest(identity=identity, prefix=prefix, files=tuple(entries))
    objects = [(entry.key, BODY) for entry in entries]
    key = manifest_key(prefix, BackupType.NODE_SNAPSHOT, created_ms)
    objects.append((key, manifest.to_json().encode()))
    return objects


async def _put_all(store: S3Store, objects: list[tuple[str, bytes]]) -> None:
    gate = asyncio.Semaphore(SEED_CONCURRENCY)

    async def put(key: str, data: bytes) -> None:
        async with gate:
            await obstore.put_async(store, key, data)

    await asyncio.gather(*(put(key, data) for key, data in objects))


def _seed(endpoint: str, prefix: str, backups: int, metadata_path: Path | None) -> Seeded:
    """BACKUPS completed snapshots under `prefix`, an hour apart, newest an hour ago; with
    `metadata_path`, their rows (and sizes) in a new server database there too."""
    cluster_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    dated = [
        (str(uuid.uuid4()), epoch_ms(now - timedelta(hours=1 + age))) for age in range(backups)
    ]
    objects = [
        item
        for snapshot_id, created_ms in dated
        for node in NODES
        for item in _node_objects(cluster_id, snapshot_id, node, created_ms)
    ]
    asyncio.run(_put_all(_store(endpoint, prefix), objects))
    if metadata_path is not None:
        _seed_rows(metadata_path, cluster_id, dated)
    return Seeded(cluster_id, tuple(sid for sid, _ in dated), len(objects))


def _seed_rows(path: Path, cluster_id: str, dated: list[tuple[str, int]]) -> None:
    metadata = SqliteMetadataStore(path)
    try:
        metadata.add_cluster(
            cluster_id=cluster_id,
            cluster_name=CLUSTER_NAME,
            target_ips=list(NODES),
            keyspaces=["bench"],
            data_dir="/var/lib/cassandra/data",
        )
        for snapshot_id, created_ms in dated:
            rows = metadata.insert_backups(
                cluster_id=cluster_id,
                target_ips=list(NODES),
                snapshot_id=snapshot_id,
                backup_type=BackupType.NODE_SNAPSHOT,
                created_at=created_ms,
                status=OperationStatus.COMPLETED,
            )
            for row in rows:  # as the server records them when a node completes
                metadata.record_size(row.key, DATA_FILES, DATA_FILES * len(BODY))
    finally:
        metadata.close()


def _cpu(pid: int) -> float:
    """CPU seconds the process has used (SeaweedFS runs all its services in one)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _left(storage: Storage, seeded: Seeded) -> list[str]:
    """What the deletion left of the cluster's objects, listed from outside the server."""
    return [info.key for info in storage.list(f"node-backup/{seeded.cluster_id}/")]


def _check_left(storage: Storage, seeded: Seeded, side: str) -> None:
    left = _left(storage, seeded)
    wrong = [key for key in left if not key.startswith(seeded.kept_prefix)]
    kept = len(left) - len(wrong)
    if wrong or kept != seeded.objects // len(seeded.snapshot_ids):
        raise RuntimeError(
            f"{side}: {len(wrong)} objects of deleted backups left (e.g. {wrong[:2]}), "
            f"{kept} of the kept backup's {seeded.objects // len(seeded.snapshot_ids)}"
        )


def _scheduler_toml(work: Path, address: str) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    path = work / "scheduler.toml"
    path.write_text(
        f'[scheduler]\nstate_dir = "state"\n\n[server]\naddress = "{address}"\n'
        'call_deadline = "120s"\n\n[jobs.nightly]\ntype = "snapshot"\n'
        f'cluster_name = "{CLUSTER_NAME}"\nschedule = "0 1 * * *"\ntimezone = "UTC"\n'
        "keep_last = 1\n",
        encoding="utf-8",
    )
    return path


def _cli(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cassy_scheduler", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    return time.perf_counter() - started, done


@dataclass(frozen=True)
class Timed:
    seconds: float
    objects: int
    store_cpu: float  # SeaweedFS's CPU seconds over the timed span


class Bench:
    def __init__(self, work: Path, s3: ObjectServer, backups: int) -> None:
        self.work = work
        self.s3 = s3
        self.backups = backups
        self.turn = 0
        self.dry_runs: list[float] = []
        self.seeding: list[float] = []

    def _seed(self, prefix: str, metadata_path: Path | None) -> Seeded:
        started = time.perf_counter()
        seeded = _seed(self.s3.endpoint, prefix, self.backups, metadata_path)
        self.seeding.append(time.perf_counter() - started)
        return seeded

    def ours(self) -> Timed:
        """A fresh server and database, a dry run (untimed), then the prune, timed."""
        self.turn += 1
        work = self.work / f"ours-{self.turn}"
        work.mkdir(parents=True)
        prefix = f"ours-{self.turn}"
        seeded = self._seed(prefix, work / "metadata.db")
        storage = (
            f'[storage]\nuri = "s3://{BUCKET}/{prefix}"\nendpoint = "{self.s3.endpoint}"\n'
            'region = "us-east-1"\naccess_key_id_env = "BENCH_S3_KEY"\n'
            'secret_access_key_env = "BENCH_S3_SECRET"\n'
        )
        (work / "server.toml").write_text(server_head(storage), encoding="utf-8")
        server = ServerProcess(work / "server.toml", work / "server.log")
        try:
            server.start()
            config = _scheduler_toml(work / "sched", server.address)
            dry, preview = _cli("prune", "-c", str(config), "--json", "--dry-run")
            if preview.returncode != 0:
                raise RuntimeError(f"dry run exited {preview.returncode}:\n{preview.stderr}")
            self.dry_runs.append(dry)
            cpu = _cpu(self.s3.process.pid)
            seconds, done = _cli("prune", "-c", str(config), "--json")
            cpu = _cpu(self.s3.process.pid) - cpu
        finally:
            server.stop()
        if done.returncode != 0:
            raise RuntimeError(f"prune exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        (job,) = json.loads(done.stdout)
        if job["failed"] or len(job["deleted"]) != self.backups - 1:
            raise RuntimeError(f"prune deleted {len(job['deleted'])}, failed {job['failed']}")
        objects = sum(item["objects"] for item in job["deleted"])
        if objects != seeded.doomed_objects:
            raise RuntimeError(f"prune deleted {objects} objects, not {seeded.doomed_objects}")
        _check_left(open_storage(_options(self.s3.endpoint, prefix)), seeded, "ours")
        metadata = SqliteMetadataStore(work / "metadata.db")
        try:
            rows = metadata.list_backups(cluster_id=seeded.cluster_id)
        finally:
            metadata.close()
        if {row.snapshot_id for row in rows} != {seeded.snapshot_ids[0]}:
            raise RuntimeError(f"{len(rows)} rows left, not the newest backup's {len(NODES)}")
        return Timed(seconds, objects, cpu)

    def baseline(self) -> Timed:
        """The same objects, one DELETE each, from the listing to the last delete."""
        prefix = f"one-by-one-{self.turn}"
        seeded = self._seed(prefix, None)
        storage = open_storage(_options(self.s3.endpoint, prefix))
        cpu = _cpu(self.s3.process.pid)
        started = time.perf_counter()
        doomed = [key for key in _left(storage, seeded) if not key.startswith(seeded.kept_prefix)]
        for key in doomed:
            storage.delete(key)
        seconds = time.perf_counter() - started
        cpu = _cpu(self.s3.process.pid) - cpu
        if len(doomed) != seeded.doomed_objects:
            raise RuntimeError(f"listed {len(doomed)} objects, not {seeded.doomed_objects}")
        _check_left(storage, seeded, "one by one")
        return Timed(seconds, len(doomed), cpu)


def _rates(runs: list[Timed]) -> str:
    rates = [run.objects / run.seconds for run in runs]
    return (
        f"{statistics.median(rates):7.0f} objects/s  "
        f"({min(rates):.0f} to {max(rates):.0f}, {len(rates)} runs)"
    )


def _cpu_per_thousand(runs: list[Timed]) -> str:
    values = sorted(run.store_cpu / run.objects * 1000 for run in runs)
    return f"{statistics.median(values):.2f} s ({values[0]:.2f} to {values[-1]:.2f})"


def _busy(runs: list[Timed]) -> str:
    return f"{statistics.median(run.store_cpu / run.seconds for run in runs):.0%}"


def _estimate(
    bench: Bench, per_run: int, pairs: int, ours: list[Timed], baseline: list[Timed]
) -> None:
    """Seeding's rate, and what the issue's size would take at this run's rates."""
    seeding = per_run / statistics.median(bench.seeding)
    issue = ISSUE_BACKUPS * len(NODES) * (DATA_FILES + 1)
    rate = {
        side: statistics.median(r.objects / r.seconds for r in runs)
        for side, runs in (("ours", ours), ("baseline", baseline))
    }
    total = 2 * pairs * issue / seeding + pairs * issue * (1 / rate["ours"] + 1 / rate["baseline"])
    print(
        f"seeding (untimed): {seeding:.0f} objects/s; at this run's rates the issue's "
        f"{ISSUE_BACKUPS:,} backups ({issue:,} objects a run) would take {total / 60:.0f} min "
        f"for {pairs} pairs",
        flush=True,
    )


def main() -> None:
    backups = int(os.environ.get("BENCH_PRUNE_BACKUPS", "100"))
    pairs = int(os.environ.get("BENCH_PAIRS", str(PAIRS)))
    if backups < 2:
        raise SystemExit("BENCH_PRUNE_BACKUPS must be 2 or more: keep_last = 1 keeps one")
    os.environ["BENCH_S3_KEY"] = S3_ACCESS_KEY
    os.environ["BENCH_S3_SECRET"] = S3_SECRET_KEY
    per_run = backups * len(NODES) * (DATA_FILES + 1)
    with tempfile.TemporaryDirectory(prefix="bench-prune-") as tmp:
        work = Path(tmp)
        s3 = start_seaweedfs(work)
        try:
            time.sleep(3)  # its S3 gateway answers a little after the port opens
            s3_create_bucket(s3, BUCKET)
            print(
                f"scale: {backups:,} backups {TIMES} {len(NODES)} nodes {TIMES} "
                f"{DATA_FILES + 1} objects ({DATA_FILES} data files of {len(BODY)} B + 1 "
                f"manifest) = {per_run:,} objects a run, keep_last = 1 deletes "
                f"{(backups - 1) * len(NODES) * (DATA_FILES + 1):,}; SeaweedFS at "
                f"{s3.endpoint}",
                flush=True,
            )
            if backups < ISSUE_BACKUPS:
                print(
                    f"  scaled down from the issue's {ISSUE_BACKUPS:,} backups, whose "
                    f"{2 * pairs} runs of {ISSUE_BACKUPS * len(NODES) * (DATA_FILES + 1):,} "
                    "objects (each seeded first) take too long on a 2-core machine: see the "
                    "estimate below; BENCH_PRUNE_BACKUPS=1000 runs the issue's size",
                    flush=True,
                )
            bench = Bench(work, s3, backups)
            mine, theirs = Runs("ours: cassy-scheduler prune"), Runs("deleting one by one")
            ours_runs: list[Timed] = []
            base_runs: list[Timed] = []
            for turn in range(pairs):
                for side, runs, timed in (
                    ("ours", mine, ours_runs),
                    ("one by one", theirs, base_runs),
                ):
                    result = bench.ours() if side == "ours" else bench.baseline()
                    runs.seconds.append(result.seconds)
                    timed.append(result)
                    print(
                        f"    pair {turn + 1} {side:<10} {result.seconds:7.2f} s  "
                        f"{result.objects / result.seconds:6.0f} objects/s  (seeded in "
                        f"{bench.seeding[-1]:.1f} s, untimed)",
                        flush=True,
                    )
            _estimate(bench, per_run, pairs, ours_runs, base_runs)
            report(
                f"prune of {backups - 1:,} of {backups:,} backups ({ours_runs[0].objects:,} "
                "objects) on SeaweedFS S3: total time",
                mine,
                theirs,
            )
            print(
                "  objects deleted per second (ours: prune start to exit; baseline: list + DELETEs)"
            )
            print(f"  {mine.name:<34} {_rates(ours_runs)}")
            print(f"  {theirs.name:<34} {_rates(base_runs)}")
            met = "met" if theirs.median / mine.median >= AIM else "NOT met"
            print(f"  aim: {AIM:.0f}{TIMES} faster than deleting one by one: {met}")
            dry = statistics.median(bench.dry_runs)
            print(
                f"  of ours, fixed costs: a dry run (process start, DescribeBackups of "
                f"{backups * len(NODES):,} rows, decisions) takes {dry:.2f} s "
                f"({min(bench.dry_runs):.2f} to {max(bench.dry_runs):.2f})"
            )
            print(
                f"  SeaweedFS CPU per 1,000 objects deleted: ours {_cpu_per_thousand(ours_runs)}"
                f", one by one {_cpu_per_thousand(base_runs)}; SeaweedFS busy (CPU / wall "
                f"time): ours {_busy(ours_runs)}, one by one {_busy(base_runs)}",
                flush=True,
            )
        finally:
            s3.stop()


if __name__ == "__main__":
    main()
