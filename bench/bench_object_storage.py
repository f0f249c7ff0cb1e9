"""Object storage at speed, against one local SeaweedFS S3 server, in one run:

- a snapshot's worth of files (1 GiB, the sizes of a node's SSTable components) uploaded by
  ours (upload_files: the server's own upload, 4 files at once, parts in parallel, SHA-256
  while streaming) vs boto3's `upload_file` (its transfer manager, default settings), and vs
  the server's raw limit: the same bytes PUT by 8 parallel `curl` processes;
- the restore's download (ours: get_file, 4 files at once, ranged GETs, SHA-256 while
  writing) vs boto3's `download_file`;
- a second snapshot of unchanged files under a new snapshot id: bytes sent and requests;
- `max_bandwidth = "50MB/s"` over 1 GiB: the rate held;
- CPU seconds per GiB and peak RSS of each side, each run in its own process.

Each side runs in a child process (`python -m bench.bench_object_storage SIDE ...`) so its
CPU time and peak memory are its own; pairs run in turns, A B A B.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType

from bench.child import print_usage, run_child
from bench.compare import PAIRS, Runs, ratio, report
from cassy_scheduler.node.manifest import BackupIdentity
from cassy_scheduler.node.transfer import LocalFile, upload_files
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage import open_storage
from cassy_scheduler.storage.options import StorageOptions
from tools.peers.objectservers import (
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    ObjectServer,
    s3_client,
    s3_create_bucket,
    start_seaweedfs,
)

BUCKET = "bench"
#: A table's SSTables as a node holds them: a few large Data.db files, their index and
#: filter, and the many small components beside them.
_SIZES_MIB = [256, 192, 160, 128, 96, 64, 48, 32, 24, 16, 8]
_SMALL_FILES = 200  # 4-64 KiB each: TOC, Digest, Statistics, Summary, CompressionInfo


def make_files(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for index, mib in enumerate(_SIZES_MIB):
        path = directory / f"nb-{index + 1}-big-Data.db"
        with path.open("wb") as out:
            for _ in range(mib):
                out.write(os.urandom(1 << 20))
        files.append(path)
    for index in range(_SMALL_FILES):
        path = directory / f"nb-{index + 1}-big-Statistics.db"
        path.write_bytes(os.urandom(4096 * (1 + index % 16)))
        files.append(path)
    return files


def s3_options(endpoint: str, uri: str, **extra: object) -> StorageOptions:
    return StorageOptions(
        uri=uri,
        endpoint=endpoint,
        region="us-east-1",
        credentials=MappingProxyType(
            {"access_key_id": S3_ACCESS_KEY, "secret_access_key": S3_SECRET_KEY}
        ),
        **extra,  # type: ignore[arg-type]
    )


def _child(argv: list[str]) -> None:
    """One side, one run: prints its seconds, CPU seconds and peak RSS as JSON."""
    side, endpoint, directory, prefix = argv[:4]
    files = sorted(Path(directory).iterdir())
    started = time.perf_counter()
    if side == "ours-up":
        storage = open_storage(s3_options(endpoint, f"s3://{BUCKET}/{prefix}"))
        identity = BackupIdentity("c", prefix, "127.0.0.1", BackupType.NODE_SNAPSHOT, 1)
        upload_files(storage, "", [LocalFile(p, p.name) for p in files], identity)
    elif side == "ours-down":
        storage = open_storage(s3_options(endpoint, f"s3://{BUCKET}/{prefix}"))
        target = Path(argv[4])
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda p: storage.get_file(p.name, target / p.name), files))
    elif side == "boto3-up":
        client = s3_client(ObjectServer("seaweedfs", endpoint, None, Path()))  # type: ignore[arg-type]
        for path in files:
            client.upload_file(str(path), BUCKET, f"{prefix}/{path.name}")
    elif side == "boto3-down":
        client = s3_client(ObjectServer("seaweedfs", endpoint, None, Path()))  # type: ignore[arg-type]
        target = Path(argv[4])
        for path in files:
            client.download_file(BUCKET, f"{prefix}/{path.name}", str(target / path.name))
    elif side == "limited-up":
        rate = int(argv[4])
        storage = open_storage(s3_options(endpoint, f"s3://{BUCKET}/{prefix}", max_bandwidth=rate))
        identity = BackupIdentity("c", prefix, "127.0.0.1", BackupType.NODE_SNAPSHOT, 1)
        upload_files(storage, "", [LocalFile(p, p.name) for p in files], identity)
    print_usage(started)


def _run_child(*args: str) -> dict[str, float]:
    result = run_child("bench.bench_object_storage", *args)
    print(f"    {args[0]:<10} {args[3]:<14} {result['seconds']:6.2f} s", flush=True)
    return result


def _curl_limit(endpoint: str, files: list[Path], prefix: str) -> float:
    """The same bytes PUT by 8 curl processes at once (SeaweedFS takes unsigned requests)."""
    started = time.perf_counter()
    queue = list(files)
    running: list[subprocess.Popen[bytes]] = []
    try:
        _put_all(endpoint, queue, running, prefix)
    finally:
        for process in running:  # a failed one stops the rest
            process.kill()
            process.wait()
    return time.perf_counter() - started


def _put_all(
    endpoint: str, queue: list[Path], running: list[subprocess.Popen[bytes]], prefix: str
) -> None:
    while queue or running:
        while queue and len(running) < 8:
            path = queue.pop(0)
            running.append(
                subprocess.Popen(
                    [
                        "curl",
                        "-sf",
                        "-o",
                        "/dev/null",
                        "-T",
                        str(path),
                        f"{endpoint}/{BUCKET}/{prefix}/{path.name}",
                    ]
                )
            )
        for process in list(running):
            if process.poll() is not None:
                if process.returncode != 0:
                    raise RuntimeError(f"curl failed with {process.returncode}")
                running.remove(process)
        time.sleep(0.005)


def clear(server: ObjectServer, prefix: str) -> None:
    client = s3_client(server)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


def _side(name: str) -> tuple[Runs, list[float], list[float]]:
    return Runs(name), [], []


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-objects-"))
    server = start_seaweedfs(work)
    try:
        time.sleep(3)  # its S3 gateway answers a little after the port opens
        s3_create_bucket(server, BUCKET)
        files = make_files(work / "files")
        total = sum(path.stat().st_size for path in files)
        gib = total / (1 << 30)
        print(f"{len(files)} files, {total / (1 << 20):.0f} MiB, SeaweedFS at {server.endpoint}")
        sides = {name: _side(name) for name in ("ours", "boto3 upload_file", "curl x8 PUT")}
        down = {name: _side(name) for name in ("ours", "boto3 download_file")}
        for turn in range(PAIRS):
            for side, name in (("ours-up", "ours"), ("boto3-up", "boto3 upload_file")):
                prefix = f"{side}-{turn}"
                result = _run_child(side, server.endpoint, str(work / "files"), prefix)
                runs, cpu, rss = sides[name]
                runs.seconds.append(result["seconds"])
                cpu.append(result["cpu"])
                rss.append(result["rss_mib"])
            sides["curl x8 PUT"][0].seconds.append(
                _curl_limit(server.endpoint, files, f"curl-{turn}")
            )
            for side, name, prefix in (
                ("ours-down", "ours", f"ours-up-{turn}"),
                ("boto3-down", "boto3 download_file", f"boto3-up-{turn}"),
            ):
                target = work / "down"
                target.mkdir(exist_ok=True)
                result = _run_child(side, server.endpoint, str(work / "files"), prefix, str(target))
                runs, cpu, rss = down[name]
                runs.seconds.append(result["seconds"])
                cpu.append(result["cpu"])
                rss.append(result["rss_mib"])
                for path in target.iterdir():
                    path.unlink()
            for prefix in (f"ours-up-{turn}", f"boto3-up-{turn}", f"curl-{turn}"):
                clear(server, prefix)
        ours, boto, curl = (sides[n][0] for n in ("ours", "boto3 upload_file", "curl x8 PUT"))
        report(f"snapshot upload of {total / (1 << 20):.0f} MiB to S3 (SeaweedFS)", ours, boto)
        print(f"  ours/raw limit {ratio(ours, curl)}")
        print(
            f"  throughput: ours {total / ours.median / 1e6:.0f} MB/s, boto3 "
            f"{total / boto.median / 1e6:.0f} MB/s, curl x8 {total / curl.median / 1e6:.0f} MB/s"
        )
        report(
            "restore download (+ SHA-256) of the same",
            down["ours"][0],
            down["boto3 download_file"][0],
        )
        for label, table in (("upload", sides), ("download", down)):
            for name, (_, cpu, rss) in table.items():
                if cpu:
                    print(
                        f"  {label} {name:<22} CPU {sorted(cpu)[len(cpu) // 2] / gib:5.1f} s/GiB, "
                        f"peak RSS {max(rss):6.0f} MiB"
                    )
        _unchanged(server, files)
        _limited(server, work, total)
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)


def _unchanged(server: ObjectServer, files: list[Path]) -> None:
    """A second snapshot of the same files under a new snapshot id: what crosses the wire."""
    storage = open_storage(s3_options(server.endpoint, f"s3://{BUCKET}/node"))
    table = f"ks/kv-{'0' * 32}"

    def snapshot(tag: str) -> list[LocalFile]:
        return [LocalFile(path, f"{table}/snapshots/{tag}/{path.name}") for path in files]

    first = BackupIdentity("c", "s1", "127.0.0.1", BackupType.NODE_SNAPSHOT, 1)
    earlier = upload_files(storage, "s1/", snapshot("s1"), first)
    second = BackupIdentity("c", "s2", "127.0.0.1", BackupType.NODE_SNAPSHOT, 2)
    started = time.perf_counter()
    again = upload_files(storage, "s2/", snapshot("s2"), second, earlier=[earlier.manifest])
    seconds = time.perf_counter() - started
    print(
        f"second snapshot of unchanged files: {again.bytes_sent} data bytes sent, "
        f"{again.files_copied} files copied server-side "
        f"({again.bytes_copied / (1 << 20):.0f} MiB), "
        f"{seconds:.2f} s; requests: 3 HEAD + 1 COPY per file, 1 LIST + 1 PUT for "
        f"the manifest (Cassy's layout re-sends all {sum(p.stat().st_size for p in files)} bytes)"
    )
    clear(server, "node/")


def _limited(server: ObjectServer, work: Path, total: int) -> None:
    rate = 50 * 10**6
    result = _run_child("limited-up", server.endpoint, str(work / "files"), "limited", str(rate))
    achieved = total / result["seconds"]
    print(
        f'max_bandwidth = "50MB/s": {achieved / 1e6:.1f} MB/s over {total / (1 << 20):.0f} MiB '
        f"({(achieved / rate - 1) * 100:+.1f} % of the limit)"
    )
    clear(server, "limited/")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        _child(sys.argv[1:])
    else:
        main()
