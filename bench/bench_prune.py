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

Then the same comparison with a round trip: every timed S3 request (the server's that ours
runs, and the one-by-one listing and deletes) goes through DelayProxy, a loopback TCP relay
that waits BENCH_PRUNE_LATENCY_MS (default 10) before passing on each chunk the client sends,
a model of a cloud store's round trip (a body spanning several chunks is delayed once per
chunk, which only penalizes ours). One by one pays the delay on every object, so this case
runs at BENCH_PRUNE_LATENCY_BACKUPS (default 20) backups.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

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
LATENCY_BACKUPS = 20  # the latency case's scale: one by one pays a delay per object
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
    chunks: int = 0  # what the delay proxy held back over the timed span, if there is one


class DelayProxy:
    """A threaded TCP relay from a free loopback port to `upstream` that waits `delay`
    seconds before passing on each chunk (one recv) the client sends; replies pass at once.
    A model of a cloud store's round trip; a request whose body spans several chunks is
    delayed once per chunk."""

    def __init__(self, upstream: str, delay: float) -> None:
        url = urlsplit(upstream)
        self.upstream = (url.hostname or "127.0.0.1", url.port or 80)
        self.delay = delay
        self.chunks = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)  # so that the accept loop sees `close`
        self._closed = False
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            server = socket.create_connection(self.upstream)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            running = [2]  # pumps of this connection; the last to end closes its sockets
            with self._lock:
                self._sockets |= {client, server}
            self._spawn(self._pump, client, server, True, running)
            self._spawn(self._pump, server, client, False, running)

    def _pump(
        self, source: socket.socket, sink: socket.socket, delayed: bool, running: list[int]
    ) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(1 << 20):
                if delayed:
                    time.sleep(self.delay)
                    with self._lock:
                        self.chunks += 1
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)  # the other way stays open until it ends too
        with self._lock:
            running[0] -= 1
            last = running[0] == 0 and source in self._sockets  # else `close` closes them
            if last:
                self._sockets -= {source, sink}
        if last:
            source.close()
            sink.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a pump blocked in recv
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)


class Bench:
    """With a `proxy`, every timed request (the server's, the one-by-one deletes and their
    listing) goes through it; seeding and the checks afterwards go to SeaweedFS directly."""

    def __init__(
        self, work: Path, s3: ObjectServer, backups: int, proxy: DelayProxy | None = None
    ) -> None:
        self.work = work
        self.s3 = s3
        self.backups = backups
        self.proxy = proxy
        self.via = proxy.endpoint if proxy else s3.endpoint
        self.tag = "latency-" if proxy else ""  # keeps each case's prefixes its own
        self.turn = 0
        self.dry_runs: list[float] = []
        self.dry_chunks: list[int] = []
        self.seeding: list[float] = []

    def _seed(self, prefix: str, metadata_path: Path | None) -> Seeded:
        started = time.perf_counter()
        seeded = _seed(self.s3.endpoint, prefix, self.backups, metadata_path)
        self.seeding.append(time.perf_counter() - started)
        return seeded

    def _chunks(self) -> int:
        return self.proxy.chunks if self.proxy else 0

    def ours(self) -> Timed:
        """A fresh server and database, a dry run (untimed), then the prune, timed."""
        self.turn += 1
        work = self.work / f"ours-{self.turn}"
        work.mkdir(parents=True)
        prefix = f"{self.tag}ours-{self.turn}"
        seeded = self._seed(prefix, work / "metadata.db")
        storage = (
            f'[storage]\nuri = "s3://{BUCKET}/{prefix}"\nendpoint = "{self.via}"\n'
            'region = "us-east-1"\naccess_key_id_env = "BENCH_S3_KEY"\n'
            'secret_access_key_env = "BENCH_S3_SECRET"\n'
        )
        (work / "server.toml").write_text(server_head(storage), encoding="utf-8")
        server = ServerProcess(work / "server.toml", work / "server.log")
        try:
            server.start()
            config = _scheduler_toml(work / "sched", server.address)
            chunks = self._chunks()
            dry, preview = _cli("prune", "-c", str(config), "--json", "--dry-run")
            self.dry_chunks.append(self._chunks() - chunks)
            if preview.returncode != 0:
                raise RuntimeError(f"dry run exited {preview.returncode}:\n{preview.stderr}")
            self.dry_runs.append(dry)
            cpu, chunks = _cpu(self.s3.process.pid), self._chunks()
            seconds, done = _cli("prune", "-c", str(config), "--json")
            cpu, chunks = _cpu(self.s3.process.pid) - cpu, self._chunks() - chunks
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
        return Timed(seconds, objects, cpu, chunks)

    def baseline(self) -> Timed:
        """The same objects, one DELETE each, from the listing to the last delete."""
        prefix = f"{self.tag}one-by-one-{self.turn}"
        seeded = self._seed(prefix, None)
        storage = open_storage(_options(self.via, prefix))
        cpu, chunks = _cpu(self.s3.process.pid), self._chunks()
        started = time.perf_counter()
        doomed = [key for key in _left(storage, seeded) if not key.startswith(seeded.kept_prefix)]
        for key in doomed:
            storage.delete(key)
        seconds = time.perf_counter() - started
        cpu, chunks = _cpu(self.s3.process.pid) - cpu, self._chunks() - chunks
        if len(doomed) != seeded.doomed_objects:
            raise RuntimeError(f"listed {len(doomed)} objects, not {seeded.doomed_objects}")
        _check_left(open_storage(_options(self.s3.endpoint, prefix)), seeded, "one by one")
        return Timed(seconds, len(doomed), cpu, chunks)


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
        f"for {pairs} pair{'s' if pairs != 1 else ''}",
        flush=True,
    )


def _in_turns(bench: Bench, pairs: int) -> tuple[Runs, Runs, list[Timed], list[Timed]]:
    """Ours then one by one, `pairs` times, each run printed as it ends."""
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
    return mine, theirs, ours_runs, base_runs


def _latency_case(work: Path, s3: ObjectServer, pairs: int) -> None:
    """The same comparison with every timed S3 request through a DelayProxy."""
    delay_ms = float(os.environ.get("BENCH_PRUNE_LATENCY_MS", "10"))
    backups = int(os.environ.get("BENCH_PRUNE_LATENCY_BACKUPS", str(LATENCY_BACKUPS)))
    if backups < 2:
        raise SystemExit("BENCH_PRUNE_LATENCY_BACKUPS must be 2 or more")
    per_run = backups * len(NODES) * (DATA_FILES + 1)
    doomed = (backups - 1) * len(NODES) * (DATA_FILES + 1)
    proxy = DelayProxy(s3.endpoint, delay_ms / 1000)
    try:
        print(
            f"\nwith a round trip: every timed S3 request through a loopback TCP proxy at "
            f"{proxy.endpoint} that waits {delay_ms:g} ms before passing on each chunk the "
            "client sends to SeaweedFS (replies pass at once), a model of a cloud object "
            "store's round trip (BENCH_PRUNE_LATENCY_MS sets it). Both the server that ours "
            "runs and the one-by-one deletes (and their listing) go through it; seeding and "
            "the checks afterwards do not. A request whose body spans several chunks is "
            "delayed once per chunk, which only penalizes ours (its DeleteObjects bodies "
            "name up to 1,000 keys).",
            flush=True,
        )
        print(
            f"scale: {backups:,} backups {TIMES} {len(NODES)} nodes {TIMES} "
            f"{DATA_FILES + 1} objects = {per_run:,} objects a run, keep_last = 1 deletes "
            f"{doomed:,}: smaller than above because one by one pays the delay on every "
            f"object (some {delay_ms + 1.2:.0f} ms each, {doomed * (delay_ms + 1.2) / 1000:.0f}"
            " s a run); BENCH_PRUNE_LATENCY_BACKUPS sets it",
            flush=True,
        )
        bench = Bench(work, s3, backups, proxy)
        mine, theirs, ours_runs, base_runs = _in_turns(bench, pairs)
    finally:
        proxy.close()
    report(
        f"prune of {backups - 1:,} of {backups:,} backups ({ours_runs[0].objects:,} objects) "
        f"on SeaweedFS S3 behind a {delay_ms:g} ms proxy: total time",
        mine,
        theirs,
    )
    print("  objects deleted per second (ours: prune start to exit; baseline: list + DELETEs)")
    print(f"  {mine.name:<34} {_rates(ours_runs)}")
    print(f"  {theirs.name:<34} {_rates(base_runs)}")
    met = "met" if theirs.median / mine.median >= AIM else "NOT met"
    print(f"  aim: {AIM:.0f}{TIMES} faster than deleting one by one: {met}")
    chunks = {
        name: statistics.median(run.chunks for run in runs)
        for name, runs in (("ours", ours_runs), ("one by one", base_runs))
    }
    print(
        "  chunks the proxy delayed per run (median): "
        + ", ".join(
            f"{name} {count:,.0f} ({count * delay_ms / 1000:.1f} s of delay)"
            for name, count in chunks.items()
        )
    )
    dry = statistics.median(bench.dry_runs)
    print(
        f"  of ours, fixed costs: a dry run (process start, DescribeBackups, decisions) "
        f"takes {dry:.2f} s ({min(bench.dry_runs):.2f} to {max(bench.dry_runs):.2f}), "
        f"{statistics.median(bench.dry_chunks):,.0f} chunks through the proxy",
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
            mine, theirs, ours_runs, base_runs = _in_turns(bench, pairs)
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
            _latency_case(work / "latency", s3, pairs)
        finally:
            s3.stop()


if __name__ == "__main__":
    main()
