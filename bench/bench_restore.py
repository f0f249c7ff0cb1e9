"""Restore throughput against `cp -r` of the same stored files, on real SSTables.

Starts a 1-node local cluster, writes about BENCH_RESTORE_MB (default 1100) MB of
incompressible rows (bench_upload's loader), snapshots and uploads them with a manifest, stops
the node, then times in one process, twice each, alternating: `cp -r` of the stored node
prefix into an empty directory, and our restore of the same files into an empty data dir
(download into staging, SHA-256 and size of every file against the manifest, fsync, move
into place). The best run of each is compared; `cp -r` + `sync` and cp + `sha256sum` +
`sync` are printed too, as baselines with the restore's durability and checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path

from bench.bench_upload import KEYSPACE, _drop_caches_hint, _fill, _timed
from cassy_scheduler.node.datadir import snapshot_files
from cassy_scheduler.node.manifest import BackupIdentity, find_manifests
from cassy_scheduler.node.placement import NodeDirectories, plan_restore, restore_files
from cassy_scheduler.node.transfer import LocalFile, upload_files
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage import FilesystemStorage
from cassy_scheduler.storage.layout import node_backup_prefix
from tools.localcluster import LocalCluster

SNAPSHOT = "bench-restore"
ROUNDS = 2


def main() -> None:
    megabytes = int(os.environ.get("BENCH_RESTORE_MB", "1100"))
    with tempfile.TemporaryDirectory(prefix="bench-restore-") as tmp:
        work = Path(tmp)
        cluster = LocalCluster(work / "cluster", 1, cluster_name="bench", first_octet=151)
        address = cluster.addresses[0]
        storage = FilesystemStorage(work / "store")
        prefix = node_backup_prefix("bench", SNAPSHOT, address)
        cluster.start_all()
        try:
            print(f"writing {megabytes} MB of rows ...", flush=True)
            _fill(cluster, megabytes)
            cluster.nodetool(1, "snapshot", "-t", SNAPSHOT, KEYSPACE)
            files = snapshot_files(cluster.spec(1).data_dir, SNAPSHOT, [KEYSPACE])
            identity = BackupIdentity("bench", SNAPSHOT, address, BackupType.NODE_SNAPSHOT, 1)
            local = [LocalFile(f.path, f.relative) for f in files]
            upload_files(storage, prefix, local, identity)
        finally:
            cluster.stop_all(graceful=False)
            shutil.rmtree(work / "cluster", ignore_errors=True)

        plan = plan_restore(find_manifests(storage, prefix), SNAPSHOT, snapshot_only=False)
        source = storage.path_of(prefix.rstrip("/"))
        cp_runs: list[float] = []
        ours_runs: list[float] = []
        for round_number in range(ROUNDS):
            target = work / f"cp-{round_number}"
            _drop_caches_hint()
            copy = ["cp", "-r", str(source), str(target)]
            cp_runs.append(_timed(partial(subprocess.run, copy, check=True)))
            shutil.rmtree(target)
            dirs = NodeDirectories.beside(work / f"node-{round_number}" / "data")
            _drop_caches_hint()
            ours_runs.append(_timed(partial(restore_files, storage, plan, dirs, "bench")))
            shutil.rmtree(dirs.data_dir.parent)
        sync_s = _sync_cost(source, work / "cp-sync")
        checked_s = _checked_copy(source, work / "cp-checked")

    mb = plan.total_size / 1e6
    cp_s, ours_s = min(cp_runs), min(ours_runs)
    print(f"restore: {len(plan.files)} files, {mb:.0f} MB, best of {ROUNDS}")
    print(f"cp -r:          {cp_s:6.2f} s  {mb / cp_s:7.1f} MB/s")
    print(f"cp -r + sync:   {cp_s + sync_s:6.2f} s  {mb / (cp_s + sync_s):7.1f} MB/s")
    print(f"cp, sha256sum, sync: {checked_s:6.2f} s  {mb / checked_s:7.1f} MB/s")
    print(f"our restore:    {ours_s:6.2f} s  {mb / ours_s:7.1f} MB/s  (SHA-256, fsync, staging)")
    print(f"ratio vs cp -r:        {cp_s / ours_s:.2f}  (aim >= 0.8)")
    print(f"ratio vs cp -r + sync: {(cp_s + sync_s) / ours_s:.2f}")
    print(f"ratio vs cp -r, sha256sum, sync: {checked_s / ours_s:.2f}")


def _sync_cost(source: Path, target: Path) -> float:
    """What making a `cp -r` copy durable adds: one copy, then the time `sync` takes."""
    subprocess.run(["cp", "-r", str(source), str(target)], check=True)
    started = time.perf_counter()
    _drop_caches_hint()
    elapsed = time.perf_counter() - started
    shutil.rmtree(target)
    return elapsed


def _checked_copy(source: Path, target: Path) -> float:
    """The same guarantees by hand: copy, checksum every copied file, flush to disk."""
    started = time.perf_counter()
    subprocess.run(["cp", "-r", str(source), str(target)], check=True)
    files = [str(p) for p in sorted(target.rglob("*")) if p.is_file()]
    subprocess.run(["sha256sum", *files], check=True, stdout=subprocess.DEVNULL)
    _drop_caches_hint()
    elapsed = time.perf_counter() - started
    shutil.rmtree(target)
    return elapsed
