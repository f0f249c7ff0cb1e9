"""Client-side encryption's cost: a snapshot's worth of files (1 GiB in a node's SSTable sizes)
uploaded and then fetched back, sealed ([storage.client_encryption]) against plain, the
same code otherwise (upload_files as a node runs it: 4 files at once, SHA-256 while
streaming; the restore's get_file, 4 files at once), to a local SeaweedFS S3 server and to a
directory on this disk.

Each run is a child process (`python -m bench.bench_encryption SIDE ...`), so its CPU time
and peak memory are its own; BENCH_PAIRS (default 5) pairs run in turns, A B A B. The aim
is at most 15 % slower than plain.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from bench.bench_object_storage import BUCKET, clear, make_files, s3_options
from bench.child import print_usage, run_child
from bench.compare import PAIRS, Runs, ratio, report
from cassy_scheduler.node.manifest import BackupIdentity
from cassy_scheduler.node.transfer import LocalFile, upload_files
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage import open_storage
from cassy_scheduler.storage.options import StorageOptions
from tools.peers.objectservers import s3_create_bucket, start_seaweedfs

_KEY = os.urandom(32).hex()


def _child(argv: list[str]) -> None:
    """One side, one run: prints its seconds, CPU seconds and peak RSS as JSON."""
    side, where, directory, prefix, key = argv[:5]
    files = sorted(Path(directory).iterdir())
    options = (
        StorageOptions(uri=Path(where, prefix).as_uri())
        if where.startswith("/")
        else s3_options(where, f"s3://{BUCKET}/{prefix}")
    )
    if key != "-":
        options = replace(options, client_keys=(bytes.fromhex(key),))
    storage = open_storage(options)
    started = time.perf_counter()
    if side == "up":
        identity = BackupIdentity("c", prefix, "127.0.0.1", BackupType.NODE_SNAPSHOT, 1)
        upload_files(storage, "", [LocalFile(p, p.name) for p in files], identity)
    else:
        target = Path(argv[5])
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda p: storage.get_file(p.name, target / p.name), files))
    print_usage(started)


def _run(*args: str) -> dict[str, float]:
    result = run_child("bench.bench_encryption", *args)
    sealed = "sealed" if args[4] != "-" else "plain"
    print(f"    {args[0]:<5} {sealed:<7} {result['seconds']:6.2f} s", flush=True)
    return result


def _compare(
    where: str, files: Path, work: Path, clear: Callable[[str], object], gib: float
) -> None:
    up = {"sealed": Runs("sealed upload"), "plain": Runs("plain upload")}
    down = {"sealed": Runs("sealed fetch"), "plain": Runs("plain fetch")}
    cpu: dict[str, list[float]] = {
        k: [] for k in ("sealed-up", "plain-up", "sealed-down", "plain-down")
    }
    rss: dict[str, list[float]] = {k: [] for k in cpu}
    pairs = int(os.environ.get("BENCH_PAIRS", PAIRS))
    for turn in range(pairs):
        for name, key in (("sealed", _KEY), ("plain", "-")):
            prefix = f"{name}-{turn}"
            result = _run("up", where, str(files), prefix, key)
            up[name].seconds.append(result["seconds"])
            cpu[f"{name}-up"].append(result["cpu"])
            rss[f"{name}-up"].append(result["rss_mib"])
            target = work / "fetched"
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            result = _run("down", where, str(files), prefix, key, str(target))
            down[name].seconds.append(result["seconds"])
            cpu[f"{name}-down"].append(result["cpu"])
            rss[f"{name}-down"].append(result["rss_mib"])
            clear(prefix)
    report(f"upload of {gib:.2f} GiB to {where}", up["sealed"], up["plain"])
    report(f"fetch of {gib:.2f} GiB from {where}", down["sealed"], down["plain"])
    for name, values in cpu.items():
        median_cpu = sorted(values)[len(values) // 2]
        print(
            f"  CPU {name:<12} {median_cpu / gib:5.2f} s/GiB   peak RSS {max(rss[name]):6.0f} MiB"
        )
    print(f"  upload: sealed/plain {ratio(up['sealed'], up['plain'])}")
    print(f"  fetch:  sealed/plain {ratio(down['sealed'], down['plain'])}", flush=True)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-encryption-"))
    server = start_seaweedfs(work / "seaweedfs")
    try:
        time.sleep(3)  # its S3 gateway answers a little after the port opens
        s3_create_bucket(server, BUCKET)
        files = work / "files"
        made = make_files(files)
        total = sum(path.stat().st_size for path in made)
        gib = total / (1 << 30)
        print(f"{len(made)} files, {total / (1 << 20):.0f} MiB; key id of the run's key only")
        _compare(server.endpoint, files, work, lambda prefix: clear(server, prefix), gib)
        store = work / "store"
        store.mkdir()
        _compare(str(store), files, work, lambda prefix: shutil.rmtree(store / prefix), gib)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        _child(sys.argv[1:])
    else:
        main()
