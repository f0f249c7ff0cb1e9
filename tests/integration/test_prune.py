"""Pruning on the real server, to a directory and to moto's S3 server: a month of daily
snapshots (each with an incremental, some failed) is cut to what the policy keeps, with the
same decisions the dry run showed, and every backup left COMPLETED passes `verify`. A prune
whose server is SIGKILLed mid-deletion, twice, never leaves a backup listed COMPLETED with an
object missing, and the prune after finishes the work. The daemon prunes after a backup, and
the prune is a run in the history, notified like one. Behind a server that answers only
rpc.Cassy, as Scalar's does, prune deletes from the storage itself.

The month is made from one real backup of the test cluster (its test keyspace's files), copied
under dated snapshot ids with dated manifests and rows: the server cannot tell them from
backups taken on those days.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cassandra.cluster import Session

from cassy_scheduler.client import CassyClient, Cluster
from cassy_scheduler.clock import epoch_ms
from cassy_scheduler.node.manifest import Manifest, find_manifests
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.server.metadata import SqliteMetadataStore
from cassy_scheduler.storage import Storage, open_storage
from cassy_scheduler.storage.layout import backup_prefix, manifest_key
from cassy_scheduler.storage.options import StorageOptions
from cassy_scheduler.verify import verify_snapshot
from tests.cassyfront import CassyFront
from tests.integration.test_object_storage import _address, options_of, storage_table
from tests.integration.test_restore_node import make_backup
from tests.integration.test_scheduler_helpers import (
    DaemonProcess,
    cli,
    instant,
    runs,
    wait_for,
    write_config,
)
from tests.integration.test_server_backup import storage_root
from tests.serverproc import ServerProcess, server_toml
from tests.tcpproxy import TcpProxy
from tools.localcluster import LocalCluster
from tools.peers.objectservers import ObjectServer

pytestmark = [
    pytest.mark.cassandra,
    pytest.mark.retention,
    pytest.mark.usefixtures("s3_credentials"),
]

DAYS = 30
POLICY = "keep_daily = 7\nkeep_weekly = 4\n"


@dataclass(frozen=True)
class Source:
    """One real snapshot with one incremental, and the cluster they are of."""

    storage: Storage
    cluster: Cluster
    node: str
    snapshot: Manifest
    incremental: Manifest


@dataclass(frozen=True)
class Seeded:
    """One dated snapshot of the month: its id, when, and whether it completed."""

    snapshot_id: str
    taken: datetime
    good: bool


@pytest.fixture(scope="module")
def source(server1: ServerProcess, cluster1: LocalCluster, session1: Session) -> Iterator[Source]:
    keyspace = f"prune{os.getpid()}"
    session1.execute(
        f"CREATE KEYSPACE {keyspace} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    with CassyClient(server1.address, timeout_s=120) as client:
        backup = make_backup(client, cluster1, session1, keyspace)
        (cluster,) = client.list_clusters(backup.cluster_id)
    storage = open_storage(StorageOptions(uri=storage_root(server1).as_uri()))
    node = cluster1.addresses[0]
    prefix = backup_prefix(BackupType.NODE_SNAPSHOT, cluster.cluster_id, backup.snapshot_id, node)
    manifests = {  # the test keyspace's files only: a month of them copies fast
        m.identity.backup_type: replace(
            m, files=tuple(e for e in m.files if e.path.startswith(f"{keyspace}/"))
        )
        for m in find_manifests(storage, prefix)
    }
    yield Source(
        storage,
        cluster,
        node,
        manifests[BackupType.NODE_SNAPSHOT],
        manifests[BackupType.NODE_INCREMENTAL],
    )
    session1.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


def copy_upload(
    source: Source, target: Storage, manifest: Manifest, snapshot_id: str, taken: datetime
) -> None:
    """`manifest`'s files under `snapshot_id` (in their prefix and their snapshots/ name),
    then its manifest, dated `taken`."""
    new = backup_prefix(
        BackupType.NODE_SNAPSHOT, source.cluster.cluster_id, snapshot_id, source.node
    )
    files = []
    for entry in manifest.files:
        path = entry.path.replace(
            f"/snapshots/{manifest.identity.snapshot_id}/", f"/snapshots/{snapshot_id}/"
        )
        key = new + path
        stored = target.put_bytes(key, source.storage.get_bytes(entry.key))
        files.append(
            replace(entry, path=path, key=key, etag=stored.etag, mtime_ns=None, inode=None)
        )
    kind = manifest.identity.backup_type
    identity = replace(manifest.identity, snapshot_id=snapshot_id, created_at_ms=epoch_ms(taken))
    dated = Manifest(identity=identity, prefix=new, files=tuple(files))
    target.put_bytes(manifest_key(new, kind, epoch_ms(taken)), dated.to_json().encode())


def seed_month(source: Source, target: Storage, metadata_path: Path, now: datetime) -> list[Seeded]:
    """A snapshot a day for DAYS days (an hour before now, then a day apart), each extended
    by an incremental half an hour later; two snapshots failed (their files half there, no
    manifest), one well past failed_grace and one inside it; and a failed incremental on the
    first Sunday's snapshot a week back (which keep_weekly keeps)."""
    cluster = source.cluster
    metadata = SqliteMetadataStore(metadata_path)
    try:
        metadata.add_cluster(
            cluster_id=cluster.cluster_id,
            cluster_name=cluster.cluster_name,
            target_ips=list(cluster.target_ips),
            keyspaces=list(cluster.keyspaces),
            data_dir=cluster.data_dir,
        )
        seeded = []
        sunday = False

        def row(sid: str, kind: BackupType, taken: datetime, status: OperationStatus) -> None:
            metadata.insert_backups(
                cluster_id=cluster.cluster_id,
                target_ips=[source.node],
                snapshot_id=sid,
                backup_type=kind,
                created_at=epoch_ms(taken),
                status=status,
            )

        for day in range(DAYS):
            sid, taken = str(uuid.uuid4()), now - timedelta(days=day, hours=1)
            copy_upload(source, target, source.snapshot, sid, taken)
            row(sid, BackupType.NODE_SNAPSHOT, taken, OperationStatus.COMPLETED)
            later = taken + timedelta(minutes=30)
            copy_upload(source, target, source.incremental, sid, later)
            row(sid, BackupType.NODE_INCREMENTAL, later, OperationStatus.COMPLETED)
            if day >= 8 and taken.isoweekday() == 7 and not sunday:
                sunday = True  # kept by keep_weekly: its failed incremental's record goes
                failed_at = later + timedelta(hours=1)
                row(sid, BackupType.NODE_INCREMENTAL, failed_at, OperationStatus.FAILED)
            seeded.append(Seeded(sid, taken, True))
        for age in (timedelta(days=20, hours=3), timedelta(days=2, hours=3)):
            sid, taken = str(uuid.uuid4()), now - age
            prefix = backup_prefix(BackupType.NODE_SNAPSHOT, cluster.cluster_id, sid, source.node)
            for entry in source.snapshot.files[:3]:  # cut short: no manifest
                target.put_bytes(
                    prefix + entry.key[len(source.snapshot.prefix) :],
                    source.storage.get_bytes(entry.key),
                )
            row(sid, BackupType.NODE_SNAPSHOT, taken, OperationStatus.FAILED)
            seeded.append(Seeded(sid, taken, False))
    finally:
        metadata.close()
    return sorted(seeded, key=lambda s: s.taken, reverse=True)


def expected_kept(seeded: list[Seeded], now: datetime) -> set[str]:
    """keep_daily = 7 and keep_weekly = 4 as restic counts them (UTC), over good backups;
    failed ones younger than the 7-day grace stay, uncounted."""
    good = [s for s in seeded if s.good]
    kept: set[str] = set()
    for bucket, count in ((lambda t: t.date(), 7), (lambda t: t.isocalendar()[:2], 4)):
        seen: list[object] = []
        for s in good:  # newest first: the newest of each bucket
            if (b := bucket(s.taken)) not in seen and len(seen) < count:
                seen.append(b)
                kept.add(s.snapshot_id)
    kept.update(s.snapshot_id for s in seeded if not s.good and now - s.taken < timedelta(days=7))
    return kept


def scheduler_config(work: Path, address: str, cluster: Cluster) -> Path:
    work.mkdir(exist_ok=True)
    jobs = (
        f'[jobs.nightly]\ntype = "snapshot"\ncluster_name = "{cluster.cluster_name}"\n'
        f'schedule = "0 1 * * *"\ntimezone = "UTC"\n{POLICY}'
    )
    return write_config(work, address, jobs)


def prune(config: Path, *args: str) -> tuple[int, list[dict[str, object]], str]:
    done = cli("prune", "-c", str(config), "--json", *args)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        report = []
    return done.returncode, report, done.stdout + done.stderr


def decisions(report: list[dict[str, object]]) -> dict[str, str]:
    (job,) = report
    backups = job["backups"]
    assert isinstance(backups, list)
    return {b["snapshot_id"]: b["decision"] for b in backups}


def assert_completed_are_whole(
    storage: Storage, metadata_path: Path, cluster_id: str, *, read: bool = True
) -> set[str]:
    """Every snapshot whose rows all say COMPLETED is whole: with `read`, `verify` passes
    (each object's SHA-256); without, its manifests are there and each object they name is
    listed at its size. Returns those snapshots."""
    metadata = SqliteMetadataStore(metadata_path)
    try:
        rows = metadata.list_backups(cluster_id=cluster_id)
    finally:
        metadata.close()
    by_snapshot: dict[str, set[OperationStatus]] = {}
    for r in rows:
        by_snapshot.setdefault(r.snapshot_id, set()).add(r.status)
    completed = {sid for sid, found in by_snapshot.items() if found == {OperationStatus.COMPLETED}}
    listed = {info.key: info.size for info in storage.list(f"node-backup/{cluster_id}/")}
    for sid in completed:
        if read:
            report = verify_snapshot(storage, cluster_id, sid)
            assert report.ok, (sid, [p.detail for n in report.nodes for p in n.problems][:5])
            continue
        prefix = f"node-backup/{cluster_id}/{sid}/"
        nodes = {key[len(prefix) :].split("/")[0] for key in listed if key.startswith(prefix)}
        manifests = [m for node in nodes for m in find_manifests(storage, f"{prefix}{node}/")]
        assert manifests, f"{sid} is listed COMPLETED without a manifest"
        for entry in (e for m in manifests for e in m.files):
            assert listed.get(entry.key) == entry.size, f"{sid} is COMPLETED, {entry.key} not"
    return completed


def stored_snapshots(storage: Storage, cluster_id: str) -> set[str]:
    return {info.key.split("/")[2] for info in storage.list(f"node-backup/{cluster_id}/")}


@pytest.mark.parametrize("kind", ["filesystem", "s3"])
def test_a_month_is_pruned_to_what_the_policy_keeps_and_every_kept_backup_verifies(
    tmp_path: Path, source: Source, kind: str, request: pytest.FixtureRequest
) -> None:
    if kind == "s3":
        moto: ObjectServer = request.getfixturevalue("moto")
        uri = f"s3://backups/month-{uuid.uuid4().hex[:8]}"
        table = storage_table("s3", moto, uri=uri)
        target = open_storage(options_of("s3", moto, uri=uri))
    else:
        table = f'[storage]\nuri = "{(tmp_path / "storage").as_uri()}"\n'
        target = open_storage(StorageOptions(uri=(tmp_path / "storage").as_uri()))
    now = datetime.now(UTC)
    seeded = seed_month(source, target, tmp_path / "metadata.db", now)
    server = ServerProcess(server_toml(tmp_path, [], storage=table), tmp_path / "server.log")
    server.start()
    try:
        config = scheduler_config(tmp_path / "sched", server.address, source.cluster)
        code, preview, output = prune(config, "--dry-run")
        assert code == 0, output
        planned = decisions(preview)
        keep = {sid for sid, verdict in planned.items() if verdict == "KEEP"}
        assert keep == expected_kept(seeded, now)
        assert stored_snapshots(target, source.cluster.cluster_id) == {
            s.snapshot_id for s in seeded
        }

        code, report, output = prune(config)
        assert code == 0, output
        assert decisions(report) == planned
        (job,) = report
        deleted = job["deleted"]
        assert isinstance(deleted, list)
        assert len(deleted) == len(planned) - len(keep) + 1  # and the Sunday's failed incremental
        assert stored_snapshots(target, source.cluster.cluster_id) == keep
        with CassyClient(server.address) as client:
            left = client.describe_backups(source.cluster.cluster_id)
        assert {b.snapshot_id for b in left} == keep
        assert not any(
            b.status is OperationStatus.FAILED and not b.backup_type.is_snapshot for b in left
        )
        verified = assert_completed_are_whole(
            target, tmp_path / "metadata.db", source.cluster.cluster_id
        )
        assert verified == {s.snapshot_id for s in seeded if s.good} & keep
        (run,) = runs(config)
        assert run.job_name == "nightly:prune" and run.outcome.value == "succeeded"
        listed = cli("backups", source.cluster.cluster_id, "-c", str(config), "--json")
        assert listed.returncode == 0, listed.stderr
        sizes = {
            (r["snapshot_id"], r["backup_type"]): r["bytes"] for r in json.loads(listed.stdout)
        }
        expected_bytes = sum(e.size for e in source.snapshot.files)
        assert {sizes[(sid, "NODE_SNAPSHOT")] for sid in verified} == {expected_bytes}

        code, again, output = prune(config)  # nothing more to do
        assert code == 0 and not again[0]["deleted"], output
    finally:
        server.stop()


def _is_delete_request(sent: bytes) -> bool:
    """S3's DeleteObjects (POST ?delete) or DeleteObject, as the proxy sees them go by."""
    line = sent.split(b"\r\n", 1)[0]
    return line.startswith(b"DELETE ") or (line.startswith(b"POST ") and b"?delete" in line)


def test_a_prune_killed_mid_deletion_twice_never_leaves_a_completed_backup_with_a_missing_object(
    tmp_path: Path, source: Source, moto: ObjectServer
) -> None:
    uri = f"s3://backups/killed-{uuid.uuid4().hex[:8]}"
    target = open_storage(options_of("s3", moto, uri=uri))
    now = datetime.now(UTC)
    seeded = seed_month(source, target, tmp_path / "metadata.db", now)
    proxy = TcpProxy(_address(moto))  # held at a delete request: the server stops mid-call
    table = storage_table("s3", moto, uri=uri, endpoint=f"http://127.0.0.1:{proxy.port}")
    server = ServerProcess(server_toml(tmp_path, [], storage=table), tmp_path / "server.log")
    cluster_id = source.cluster.cluster_id
    try:
        # The 3rd delete request to the store, then the 2nd of the next prune, then none: each
        # kill comes with some objects of a backup deleted and others not.
        for kill_at in (3, 2, None):
            server.start()
            config = scheduler_config(tmp_path / "sched", server.address, source.cluster)
            pruning = subprocess.Popen(
                [sys.executable, "-m", "cassy_scheduler", "prune", "-c", str(config), "--json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                if kill_at is not None:
                    proxy.hold_at(_is_delete_request, kill_at)
                    assert proxy.held.wait(120), "no delete request reached the store"
                    server.kill()
                    proxy.release()
                output, _ = pruning.communicate(timeout=300)
            finally:
                if pruning.poll() is None:
                    pruning.kill()
                    pruning.wait()
            if kill_at is not None:
                assert pruning.returncode == 5, output  # the server went away mid-prune
                assert_completed_are_whole(target, tmp_path / "metadata.db", cluster_id, read=False)
                assert stored_snapshots(target, cluster_id) - expected_kept(seeded, now), (
                    "the kill came after every deletion"
                )
            else:
                assert pruning.returncode == 0, output
                server.stop()
        history = runs(config)
        assert [r.outcome.value for r in history] == ["failed", "failed", "succeeded"]
        assert all(r.error for r in history[:2])
        assert stored_snapshots(target, cluster_id) == expected_kept(seeded, now)
        assert assert_completed_are_whole(target, tmp_path / "metadata.db", cluster_id) == {
            s.snapshot_id for s in seeded if s.good
        } & expected_kept(seeded, now)
    finally:
        proxy.release()
        server.stop()
        proxy.close()


def test_the_daemon_prunes_after_each_backup_and_records_and_notifies_the_prune(
    tmp_path: Path, source: Source, cluster1: LocalCluster
) -> None:
    storage = tmp_path / "storage"
    target = open_storage(StorageOptions(uri=storage.as_uri()))
    now = datetime.now(UTC)
    seed_month(source, target, tmp_path / "metadata.db", now)
    server = ServerProcess(
        server_toml(tmp_path, [cluster1], resident=True), tmp_path / "server.log"
    ).start()
    daemon: DaemonProcess | None = None
    try:
        seen = tmp_path / "notices.txt"
        hook = (
            "import os, sys; open(sys.argv[1], 'a').write("
            "os.environ['CASSY_JOB'] + ' ' + os.environ['CASSY_SUBJECT'] + chr(10))"
        )
        _, line = instant(7)
        (tmp_path / "sched").mkdir()
        command = [sys.executable, "-c", hook, str(seen)]
        config = write_config(
            tmp_path / "sched",
            server.address,
            f"""
            [jobs.nightly]
            type = "snapshot"
            cluster_name = "{source.cluster.cluster_name}"
            schedule = "{line}"
            keep_last = 3
            notify = ["hook"]

            [notify.hook]
            type = "command"
            command = {json.dumps(command)}
            when = "always"
            """,
        )
        daemon = DaemonProcess(config).start()
        wait_for(
            "the backup and its prune",
            lambda: [r.outcome.value != "running" for r in runs(config)] == [True, True],
            300,
        )
        backup, pruned = runs(config)[:2]
        assert backup.job_name == "nightly" and backup.outcome.value == "succeeded"
        assert pruned.job_name == "nightly:prune" and pruned.outcome.value == "succeeded"
        wait_for(
            "both notices", lambda: seen.exists() and len(seen.read_text().splitlines()) >= 2, 60
        )
        notices = seen.read_text().splitlines()
        assert notices[0].startswith("nightly OK snapshot"), notices
        assert notices[1].startswith("nightly:prune OK prune"), notices
        # 30 good seeded and the new one: keep_last 3, and the failed one inside its grace
        assert "4 kept, 29 deleted" in notices[1], notices
        assert daemon.stop() == 0, daemon.output()[-3000:]
    finally:
        if daemon is not None:
            daemon.stop()
        server.stop()
    left = stored_snapshots(target, source.cluster.cluster_id)
    assert len(left) == 3 + 1  # three good ones and the failed one inside its grace


def test_behind_scalars_cassy_prune_deletes_from_its_storage_and_its_rows_stay(
    tmp_path: Path, source: Source
) -> None:
    """A server that answers only rpc.Cassy (as Scalar's does) over a month in Cassy's
    layout (no manifests): `prune --storage` deletes what the policy does not keep from the
    storage itself; Cassy's ListBackups still lists every row, and the next prune counts
    the deleted backups for nothing."""
    storage = tmp_path / "storage"
    target = open_storage(StorageOptions(uri=storage.as_uri()))
    now = datetime.now(UTC)
    seeded = seed_month(source, target, tmp_path / "metadata.db", now)
    for manifest in [i.key for i in target.list("node-backup/") if "/upload-manifests/" in i.key]:
        target.delete(manifest)  # Cassy writes none
    server = ServerProcess(server_toml(tmp_path, []), tmp_path / "server.log").start()
    cluster_id = source.cluster.cluster_id
    front: CassyFront | None = None
    try:
        front = CassyFront(server.address)
        config = scheduler_config(tmp_path / "sched", front.address, source.cluster)
        code, _, output = prune(config)
        assert code == 2 and "is Scalar's Cassy" in output and "--storage URI" in output
        code, report, output = prune(config, "--storage", storage.as_uri())
        assert code == 0, output
        keep = expected_kept(seeded, now)
        assert {sid for sid, v in decisions(report).items() if v == "KEEP"} == keep
        assert stored_snapshots(target, cluster_id) == keep
        with CassyClient(front.address) as client:
            assert not client.is_builtin_server()
            listed = {r.snapshot_id for r in client.list_backups(cluster_id=cluster_id)}
        assert listed == {s.snapshot_id for s in seeded}  # Cassy's rows stay
        text = cli("prune", "-c", str(config), "--storage", storage.as_uri())
        assert text.returncode == 0, text.stdout + text.stderr
        assert "0 deleted" in text.stdout and "still lists the deleted backups" in text.stdout
    finally:
        if front is not None:
            front.close()
        server.stop()
