"""Snapshot upload throughput against `cp -r` of the same snapshot directory, on real SSTables.

Starts a 1-node local cluster, writes about BENCH_UPLOAD_MB (default 1100) MB of incompressible
rows, snapshots them, then times in one process: `cp -r` of the snapshot directory, and our
upload of the same files (SHA-256 of every file, atomic writes, fsync, manifest last). It also
prints the bytes an incremental with nothing new sends (aim: 0), and times a re-upload of the
same snapshot tree with nothing new (as each hourly incremental re-sends the day's `backups/`
files) against a SHA-256 read of the tree alone and of the tree plus its stored copy (what
skipping an unchanged file used to cost).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from cassandra.cluster import Cluster

from cassy_scheduler.node.datadir import backup_files, snapshot_files
from cassy_scheduler.node.manifest import BackupIdentity
from cassy_scheduler.node.transfer import LocalFile, UploadResult, upload_files
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage import open_storage
from tools.localcluster import LocalCluster

KEYSPACE = "bench"
ROW_BYTES = 256 * 1024


def _fill(cluster: LocalCluster, megabytes: int) -> None:
    driver = Cluster(cluster.addresses, protocol_version=5)
    session = driver.connect()
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    session.execute(
        f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.blobs (k int PRIMARY KEY, v blob) "
        "WITH compression = {'enabled': 'false'}"
    )
    insert = session.prepare(f"INSERT INTO {KEYSPACE}.blobs (k, v) VALUES (?, ?)")
    rows = megabytes * 1024 * 1024 // ROW_BYTES
    for k in range(0, rows, 8):
        batch = [
            session.execute_async(insert, (i, os.urandom(ROW_BYTES)))
            for i in range(k, min(k + 8, rows))
        ]
        for future in batch:
            future.result()
    driver.shutdown()
    cluster.nodetool(1, "flush", KEYSPACE)


def _timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def _hash_all(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb") as source:
            hashlib.file_digest(source, "sha256")


def _drop_caches_hint() -> None:
    subprocess.run(["sync"], check=False)


def main() -> None:
    megabytes = int(os.environ.get("BENCH_UPLOAD_MB", "1100"))
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        work = Path(tmp)
        cluster = LocalCluster(work / "cluster", 1, cluster_name="bench", first_octet=91)
        cluster.start_all()
        try:
            print(f"writing {megabytes} MB of rows ...", flush=True)
            _fill(cluster, megabytes)
            cluster.nodetool(1, "snapshot", "-t", "bench-snap", KEYSPACE)
            data_dir = cluster.spec(1).data_dir
            files = snapshot_files(data_dir, "bench-snap", [KEYSPACE])
            total = sum(f.size for f in files)
            (table_dir,) = (data_dir / KEYSPACE).glob("blobs-*")
            source = table_dir / "snapshots" / "bench-snap"

            _drop_caches_hint()
            cp_s = _timed(
                lambda: subprocess.run(["cp", "-r", str(source), str(work / "cp-copy")], check=True)
            )
            cp_sync_s = cp_s + _timed(_drop_caches_hint)

            storage = open_storage((work / "store").as_uri())
            identity = BackupIdentity(
                "bench", "bench-snap", "127.0.0.91", BackupType.NODE_SNAPSHOT, 1
            )
            local = [LocalFile(f.path, f.relative) for f in files]
            ours_s = _timed(lambda: upload_files(storage, "node-backup/b/s/n/", local, identity))

            stored_paths = [work / "store" / "node-backup/b/s/n" / f.relative for f in files]
            hash_local_s = _timed(lambda: _hash_all([f.path for f in files]))
            hash_both_s = hash_local_s + _timed(lambda: _hash_all(stored_paths))
            reupload_identity = BackupIdentity(
                "bench", "bench-snap", "127.0.0.91", BackupType.NODE_INCREMENTAL, 4
            )
            reupload: list[UploadResult] = []
            reupload_s = _timed(
                lambda: reupload.append(
                    upload_files(storage, "node-backup/b/s/n/", local, reupload_identity)
                )
            )

            incremental = [
                LocalFile(f.path, f.relative) for f in backup_files(data_dir, [KEYSPACE])
            ]
            inc_identity = BackupIdentity(
                "bench", "bench-snap", "127.0.0.91", BackupType.NODE_INCREMENTAL, 2
            )
            first = upload_files(storage, "node-backup/b/s/n/", incremental, inc_identity)
            again = upload_files(
                storage,
                "node-backup/b/s/n/",
                incremental,
                BackupIdentity("bench", "bench-snap", "127.0.0.91", BackupType.NODE_INCREMENTAL, 3),
            )
        finally:
            cluster.stop_all(graceful=False)
            shutil.rmtree(work / "cluster", ignore_errors=True)

    mb = total / 1e6
    print(f"snapshot: {len(files)} files, {mb:.0f} MB")
    print(f"cp -r:          {cp_s:6.2f} s  {mb / cp_s:7.1f} MB/s")
    print(f"cp -r + sync:   {cp_sync_s:6.2f} s  {mb / cp_sync_s:7.1f} MB/s")
    print(f"our upload:     {ours_s:6.2f} s  {mb / ours_s:7.1f} MB/s  (SHA-256, fsync, manifest)")
    print(f"ratio vs cp -r:        {cp_s / ours_s:.2f}  (aim >= 0.8)")
    print(f"ratio vs cp -r + sync: {cp_sync_s / ours_s:.2f}")
    print(f"incremental, first upload: {first.bytes_sent} bytes sent")
    print(f"incremental with nothing new: {again.bytes_sent} bytes sent (aim 0)")
    print(
        f"re-upload of the snapshot, nothing new: {reupload_s:6.3f} s, "
        f"{reupload[0].bytes_sent} bytes sent, {reupload[0].files_skipped} files skipped"
    )
    print(f"SHA-256 of the tree:                    {hash_local_s:6.2f} s")
    print(f"SHA-256 of the tree and its stored copy: {hash_both_s:6.2f} s  (the old skip)")
    print(f"ratio vs SHA-256 of the tree:           {hash_local_s / reupload_s:.0f}")
    print(f"ratio vs SHA-256 of tree + stored copy: {hash_both_s / reupload_s:.0f}")
    print(f"ratio vs the first upload:              {ours_s / reupload_s:.0f}")
