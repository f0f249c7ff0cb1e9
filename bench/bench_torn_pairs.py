"""Torn pairs in node-level versus cluster-wide snapshots, under the same write load.

Starts a 3-node local cluster, the built-in server and two instances of the example pausable
application (each logical write is two rows in two partitions, written one after the other).
Then, in turns, takes BENCH_TORN_ROUNDS (default 5) node snapshots (backup_type 2) and as many
cluster-wide snapshots (backup_type 1), loads each stored snapshot into a scratch keyspace with
`nodetool import`, and counts the pairs with one row and not the other. Prints the counts and
their ratio; a cluster-wide snapshot should show none. Also timed, in the same turns: each
backup from TakeBackup until every node is COMPLETED, cluster-wide against node-level (what
the pause costs). The server runs nodetool in its resident JVM.

BENCH_TORN_FIRST_OCTET (default 51) places the cluster on 127.0.0.<n>..<n+2>; BENCH_TORN_APPS
(default "127.0.0.201:20062,127.0.0.202:20062") is where the applications listen.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cassandra.cluster import Cluster, Session

from bench.compare import Runs, report
from cassy_scheduler.client import CassyClient
from cassy_scheduler.outcome import wait_for_backup
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.server.app import start_server
from cassy_scheduler.server.settings import load_server_settings
from examples.pausable_app.app import AppConfig, start_app
from examples.pausable_app.check import count_pairs
from examples.pausable_app.writer import WriterSettings, create_table_cql
from tools.localcluster import LocalCluster
from tools.localcluster.nodeconfig import nodetool_jvm_table
from tools.snapshotload import import_backup

KEYSPACE = "bench_app"
SCRATCH = "bench_scratch"
NODETOOL = Path(__file__).resolve().parents[1] / "tools" / "localcluster" / "nodetool"


@dataclass(frozen=True)
class RoundResult:
    backup_type: BackupType
    complete: int
    torn: int
    seconds: float  # TakeBackup until every node is COMPLETED


def _server_toml(work: Path, cluster: LocalCluster, apps: list[str]) -> Path:
    hosts = "".join(
        f'\n[nodes.hosts."{s.address}"]\njmx_host = "127.0.0.1"\njmx_port = {s.jmx_port}\n'
        f'data_dir = "{s.data_dir}"\n'
        for s in cluster.specs
    )
    path = work / "server.toml"
    instances = ", ".join(f'"{a}"' for a in apps)
    path.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = 0\n\n[metadata]\npath = "metadata.db"\n\n'
        f'[storage]\nuri = "{(work / "storage").as_uri()}"\n\n'
        f'[nodes]\nnodetool = ["{NODETOOL}"]\n{nodetool_jvm_table(cluster.java, cluster.jars)}\n'
        f'[applications]\ninstances = [{instances}]\npause_timeout = "30s"\n{hosts}'
    )
    return path


def _one_round(
    client: CassyClient,
    cluster: LocalCluster,
    session: Session,
    cluster_id: str,
    *,
    backup_type: BackupType,
    work: Path,
) -> RoundResult:
    started = time.perf_counter()
    ack = client.take_backup(cluster_id, backup_type)
    outcome = wait_for_backup(client, ack, timeout_s=600, poll_interval_s=0.25)
    seconds = time.perf_counter() - started
    if not outcome.succeeded:
        raise RuntimeError(f"{backup_type.name} failed: {outcome}")
    root = "cluster-backup" if backup_type is BackupType.CLUSTER_SNAPSHOT else "node-backup"
    backup_dir = work / "storage" / root / cluster_id / ack.snapshot_id
    session.execute(f"TRUNCATE {SCRATCH}.pairs")
    import_backup(
        cluster,
        backup_dir,
        keyspace=KEYSPACE,
        table="pairs",
        snapshot_id=ack.snapshot_id,
        scratch_keyspace=SCRATCH,
        work=work / "import",
    )
    counted = count_pairs(session, SCRATCH)
    print(
        f"  {backup_type.name:<16} complete pairs {counted.complete:6d}  torn {counted.torn:3d}"
        f"  {seconds:.1f} s",
        flush=True,
    )
    return RoundResult(backup_type, counted.complete, counted.torn, seconds)


def main() -> None:
    rounds = int(os.environ.get("BENCH_TORN_ROUNDS", "5"))
    octet = int(os.environ.get("BENCH_TORN_FIRST_OCTET", "51"))
    apps = os.environ.get("BENCH_TORN_APPS", "127.0.0.201:20062,127.0.0.202:20062").split(",")
    with tempfile.TemporaryDirectory(prefix="bench-torn-") as tmp:
        work = Path(tmp)
        cluster = LocalCluster(work / "cluster", 3, cluster_name="torn", first_octet=octet)
        cluster.start_all(timeout=420)
        running_apps = []
        server = None
        driver = Cluster(cluster.addresses, protocol_version=5)
        try:
            session = driver.connect()
            for keyspace in (KEYSPACE, SCRATCH):
                session.execute(
                    f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 3}"
                )
                session.execute(create_table_cql(keyspace))
            for listen in apps:
                writer = WriterSettings(instance_id=listen, keyspace=KEYSPACE)
                running_apps.append(start_app(AppConfig(listen, tuple(cluster.addresses), writer)))
            server = start_server(load_server_settings(_server_toml(work, cluster, apps)))
            results: list[RoundResult] = []
            with CassyClient(f"127.0.0.1:{server.port}", timeout_s=120) as client:
                cluster_id = client.register_cluster(cluster.addresses[0]).cluster_id
                time.sleep(5)  # let the load settle
                for number in range(1, rounds + 1):
                    print(f"round {number}/{rounds}", flush=True)
                    for backup_type in (BackupType.NODE_SNAPSHOT, BackupType.CLUSTER_SNAPSHOT):
                        results.append(
                            _one_round(
                                client,
                                cluster,
                                session,
                                cluster_id,
                                backup_type=backup_type,
                                work=work,
                            )
                        )
            stats = [app.writer.stats() for app in running_apps]
        finally:
            for app in running_apps:
                app.stop()
            if server is not None:
                server.stop()
            driver.shutdown()
            cluster.stop_all(graceful=False)
            shutil.rmtree(work / "cluster", ignore_errors=True)
    _report(results, stats)


def _report(results: list[RoundResult], stats: list[dict[str, object]]) -> None:
    node = [r for r in results if r.backup_type is BackupType.NODE_SNAPSHOT]
    wide = [r for r in results if r.backup_type is BackupType.CLUSTER_SNAPSHOT]
    node_torn = sum(r.torn for r in node)
    wide_torn = sum(r.torn for r in wide)
    print(
        f"node snapshots:         {sum(r.torn > 0 for r in node)}/{len(node)} with torn pairs, "
        f"{node_torn} torn pairs in all"
    )
    print(
        f"cluster-wide snapshots: {sum(r.torn > 0 for r in wide)}/{len(wide)} with torn pairs, "
        f"{wide_torn} torn pairs in all"
    )
    print(
        "ratio of torn pairs, node / cluster-wide: "
        + (
            f"{node_torn / wide_torn:.1f}"
            if wide_torn
            else f"{node_torn} / 0 (aim: 0 cluster-wide)"
        )
    )
    report(
        "TakeBackup until every node is COMPLETED, under the write load",
        Runs("cluster-wide snapshot", [r.seconds for r in wide]),
        Runs("node snapshot", [r.seconds for r in node]),
    )
    for stat in stats:
        print(
            f"application {stat['instance']}: pairs written {stat['pairs_written']}, "
            f"pauses {stat['pauses']}, paused {stat['paused_seconds_total']} s in all"
        )
