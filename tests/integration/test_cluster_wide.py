"""Cluster-wide snapshots on a real 3-node cluster, with the example application writing.

The application instances are found through a DNS SRV record served on loopback; each writes
pairs of rows in two partitions. The snapshot is read back through `nodetool import` into a
scratch keyspace, where no pair may be half written. Failing pauses, a missing record and a
server stopping mid-window must leave every instance unpaused and no snapshot behind.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cassandra.cluster import Session

from cassy_scheduler.client import (
    BackupAck,
    CassyClient,
    CassyFailedPrecondition,
    CassyInvalidArgument,
)
from cassy_scheduler.node.datadir import backup_files
from cassy_scheduler.protocol.types import BackupType, RestoreType
from examples.pausable_app.check import count_pairs
from examples.pausable_app.writer import create_table_cql
from tests.appproc import AppProcess
from tests.integration.test_server_backup import finish_all
from tests.serverproc import NODETOOL, ServerProcess, server_toml
from tests.srvresponder import SrvResponder, Zone
from tools.localcluster import LocalCluster
from tools.snapshotload import import_backup

pytestmark = [pytest.mark.cassandra, pytest.mark.three_nodes]

APP_KEYSPACE = "cw_app"
SCRATCH_KEYSPACE = "cw_scratch"
SRV_NAME = "_cassy-admin._tcp.apps.test"
DNS_HOST = "127.0.0.200"
APP1 = "127.0.0.201:20052"
APP2 = "127.0.0.202:20052"
SLOW_APP = "127.0.0.203:20052"
REFUSING_APP = "127.0.0.204:20052"


@pytest.fixture(scope="module")
def app_tables(session3: Session) -> Iterator[None]:
    for keyspace in (APP_KEYSPACE, SCRATCH_KEYSPACE):
        session3.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 3}"
        )
        session3.execute(create_table_cql(keyspace))
    yield
    for keyspace in (APP_KEYSPACE, SCRATCH_KEYSPACE):
        session3.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


@pytest.fixture(scope="module")
def dns() -> Iterator[SrvResponder]:
    zone = Zone(
        srv={SRV_NAME: [(10, 5, 20052, "app1.apps.test"), (10, 5, 20052, "app2.apps.test")]},
        a={"app1.apps.test": "127.0.0.201", "app2.apps.test": "127.0.0.202"},
    )
    with SrvResponder(zone, DNS_HOST) as responder:
        yield responder


def _app(
    factory: pytest.TempPathFactory, cluster: LocalCluster, listen: str, *extra: str
) -> AppProcess:
    work = factory.mktemp("app")
    return AppProcess(
        listen, cluster.addresses, APP_KEYSPACE, work / "app.log", extra=list(extra)
    ).start()


@pytest.fixture(scope="module")
def apps(
    tmp_path_factory: pytest.TempPathFactory, cluster3: LocalCluster, app_tables: None
) -> Iterator[list[AppProcess]]:
    """The two instances the SRV record names, writing all through the module."""
    started: list[AppProcess] = []
    try:
        for listen in (APP1, APP2):
            started.append(_app(tmp_path_factory, cluster3, listen))
        yield started
    finally:
        for app in started:
            app.stop()


def _server(
    factory: pytest.TempPathFactory,
    cluster: LocalCluster,
    applications: str,
    nodetool: Path | None = None,
) -> ServerProcess:
    """A server for `cluster` with the given [applications] keys (and another nodetool)."""
    work = factory.mktemp("cw-server")
    text = server_toml(work, [cluster]).read_text()
    if nodetool is not None:
        text = text.replace(f'nodetool = ["{NODETOOL}"]', f'nodetool = ["{nodetool}"]')
    # [applications] goes after the [nodes] keys, before the per-host tables.
    head, sep, hosts = text.partition("\n[nodes.hosts.")
    (work / "server.toml").write_text(f"{head}\n[applications]\n{applications}\n{sep}{hosts}")
    return ServerProcess(work / "server.toml", work / "server.log").start()


@pytest.fixture(scope="module")
def srv_server(
    tmp_path_factory: pytest.TempPathFactory, cluster3: LocalCluster, dns: SrvResponder
) -> Iterator[ServerProcess]:
    server = _server(
        tmp_path_factory,
        cluster3,
        f'srv_name = "{SRV_NAME}"\ndns_server = "{dns.address}"\npause_timeout = "30s"',
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster_id(srv_server: ServerProcess, cluster3: LocalCluster, apps: list[AppProcess]) -> str:
    with CassyClient(srv_server.address, timeout_s=120) as client:
        return client.register_cluster(cluster3.addresses[0]).cluster_id


def history(server: ServerProcess, snapshot_id: str) -> dict[str, tuple[int, str | None]]:
    """(status, reason) by node, straight from the server's metadata."""
    with sqlite3.connect(server.config.parent / "metadata.db") as db:
        rows = db.execute(
            "SELECT target_ip, status, reason FROM backup_history WHERE snapshot_id = ?",
            (snapshot_id,),
        ).fetchall()
    return {ip: (status, reason) for ip, status, reason in rows}


def snapshot_tags(cluster: LocalCluster) -> str:
    return "\n".join(cluster.nodetool(spec.number, "listsnapshots") for spec in cluster.specs)


@dataclass(frozen=True)
class TakenBackup:
    ack: BackupAck
    statuses: dict[str, str]
    stats_before: dict[str, dict[str, Any]]
    stats_after: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def cut(srv_server: ServerProcess, apps: list[AppProcess], cluster_id: str) -> TakenBackup:
    """One cluster-wide backup taken while both instances write."""
    for app in apps:
        app.wait_for_pairs(200)
    before = {app.listen: app.stats() for app in apps}
    with CassyClient(srv_server.address, timeout_s=120) as client:
        ack = client.take_backup(cluster_id, BackupType.CLUSTER_SNAPSHOT)
        statuses = finish_all(client, ack)
    return TakenBackup(ack, statuses, before, {app.listen: app.stats() for app in apps})


def test_cluster_wide_snapshot_is_a_consistent_cut(
    srv_server: ServerProcess,
    cluster3: LocalCluster,
    session3: Session,
    apps: list[AppProcess],
    cut: TakenBackup,
) -> None:
    ack = cut.ack
    assert ack.backup_type is BackupType.CLUSTER_SNAPSHOT
    assert sorted(ack.target_ips) == sorted(cluster3.addresses)
    assert cut.statuses == dict.fromkeys(cluster3.addresses, "COMPLETED")
    for listen, stats in cut.stats_after.items():
        assert stats["paused"] is False
        assert stats["pauses"] == cut.stats_before[listen]["pauses"] + 1
        assert stats["unpauses"] == cut.stats_before[listen]["unpauses"] + 1
    for app in apps:  # writing again, queued writes included
        app.wait_for_pairs(cut.stats_after[app.listen]["pairs_written"] + 50)
    cluster_id = ack.cluster_id

    backup_dir = (
        srv_server.config.parent / "storage" / "cluster-backup" / cluster_id / ack.snapshot_id
    )
    for address in cluster3.addresses:
        manifests = list((backup_dir / address / "upload-manifests").glob("*.json"))
        assert len(manifests) == 1
        assert json.loads(manifests[0].read_text())["backup_type"] == 1
    report = json.loads((backup_dir / "pause.json").read_text())
    assert [i["instance"] for i in report["instances"]] == [APP1, APP2]
    assert all(i["paused"] and i["unpaused"] for i in report["instances"])
    assert all(i["paused_seconds"] > 0 for i in report["instances"])
    assert "paused_seconds=" in srv_server.output()

    session3.execute(f"TRUNCATE {SCRATCH_KEYSPACE}.pairs")
    imported = import_backup(
        cluster3,
        backup_dir,
        keyspace=APP_KEYSPACE,
        table="pairs",
        snapshot_id=ack.snapshot_id,
        scratch_keyspace=SCRATCH_KEYSPACE,
        work=srv_server.config.parent / "import",
    )
    assert all(imported.values()), imported
    counted = count_pairs(session3, SCRATCH_KEYSPACE)
    assert counted.complete >= 400
    assert counted.torn == 0, counted.torn_examples


def test_a_cut_leaves_the_incremental_files_a_node_snapshot_chain_needs(
    srv_server: ServerProcess,
    cluster3: LocalCluster,
    apps: list[AppProcess],
    cluster_id: str,
    cut: TakenBackup,
) -> None:
    """Nightly node snapshot, hourly incrementals and a weekly cut can share one cluster."""

    def incremental_files(flush: bool) -> dict[str, set[str]]:
        for spec in cluster3.specs if flush else ():
            cluster3.nodetool(spec.number, "flush", APP_KEYSPACE)
        return {
            spec.address: {f.relative for f in backup_files(spec.data_dir, [APP_KEYSPACE])}
            for spec in cluster3.specs
        }

    with CassyClient(srv_server.address, timeout_s=120) as client:
        base = client.take_backup(cluster_id, BackupType.NODE_SNAPSHOT)
        assert set(finish_all(client, base).values()) == {"COMPLETED"}
        for app in apps:
            app.wait_for_pairs(app.stats()["pairs_written"] + 40)
        before_cut = incremental_files(flush=True)
        assert all(before_cut.values()), before_cut
        wide = client.take_backup(cluster_id, BackupType.CLUSTER_SNAPSHOT)
        assert set(finish_all(client, wide).values()) == {"COMPLETED"}
        after_cut = incremental_files(flush=False)
        for node, files in before_cut.items():
            assert files <= after_cut[node], node
        extension = client.take_backup(cluster_id, BackupType.NODE_INCREMENTAL, base.snapshot_id)
        assert set(finish_all(client, extension).values()) == {"COMPLETED"}

    stored = srv_server.config.parent / "storage" / "node-backup" / cluster_id / base.snapshot_id
    for node, files in before_cut.items():
        assert all((stored / node / relative).is_file() for relative in files), node


def test_missing_srv_record_is_refused_and_nothing_paused(
    tmp_path_factory: pytest.TempPathFactory,
    cluster3: LocalCluster,
    dns: SrvResponder,
    apps: list[AppProcess],
) -> None:
    server = _server(
        tmp_path_factory,
        cluster3,
        f'srv_name = "_nothing._tcp.apps.test"\ndns_server = "{dns.address}"',
    )
    try:
        pauses = [app.stats()["pauses"] for app in apps]
        with CassyClient(server.address, timeout_s=60) as client:
            registered = client.register_cluster(cluster3.addresses[0])
            with pytest.raises(CassyFailedPrecondition) as caught:
                client.take_backup(registered.cluster_id, BackupType.CLUSTER_SNAPSHOT)
            assert client.list_backups(cluster_id=registered.cluster_id) == []
        message = str(caught.value)
        assert "_nothing._tcp.apps.test" in message
        assert dns.address in message
        assert "Nothing was paused" in message
        assert [app.stats()["pauses"] for app in apps] == pauses
    finally:
        server.stop()


def test_cluster_wide_snapshot_of_some_nodes_is_refused(
    srv_server: ServerProcess, cluster3: LocalCluster, cluster_id: str
) -> None:
    with (
        CassyClient(srv_server.address, timeout_s=60) as client,
        pytest.raises(CassyInvalidArgument, match="covers every node"),
    ):
        client.take_backup(
            cluster_id, BackupType.CLUSTER_SNAPSHOT, target_ips=cluster3.addresses[:1]
        )


@pytest.mark.parametrize(
    "fault",
    [
        (SLOW_APP, ["--pause-delay", "10"], "got no answer within 3s"),
        (REFUSING_APP, ["--refuse-pause"], "UNAVAILABLE: this instance refuses to pause"),
    ],
    ids=["pause-times-out", "pause-refused"],
)
def test_failed_pause_fails_the_backup_unpauses_all_and_snapshots_nothing(
    tmp_path_factory: pytest.TempPathFactory,
    cluster3: LocalCluster,
    apps: list[AppProcess],
    fault: tuple[str, list[str], str],
) -> None:
    faulty_listen, options, words = fault
    faulty = _app(tmp_path_factory, cluster3, faulty_listen, *options)
    server = _server(
        tmp_path_factory,
        cluster3,
        f'instances = ["{APP1}", "{faulty_listen}"]\npause_timeout = "3s"',
    )
    try:
        healthy = apps[0]
        unpauses = healthy.stats()["unpauses"]
        with CassyClient(server.address, timeout_s=60) as client:
            registered = client.register_cluster(cluster3.addresses[0])
            ack = client.take_backup(registered.cluster_id, BackupType.CLUSTER_SNAPSHOT)
            assert finish_all(client, ack) == dict.fromkeys(cluster3.addresses, "FAILED")
        for _status, reason in history(server, ack.snapshot_id).values():
            assert reason is not None
            assert f"application instance {faulty_listen} did not pause" in reason
            assert words in reason
        for app in (healthy, faulty):
            assert app.stats()["paused"] is False, app.stats()
            assert "INFO examples.pausable_app.admin unpaused" in app.output()
        assert healthy.stats()["unpauses"] == unpauses + 1
        assert ack.snapshot_id not in snapshot_tags(cluster3)
        storage = server.config.parent / "storage"
        assert not (storage / "cluster-backup").exists()
    finally:
        server.stop()
        faulty.stop()


def _held_nodetool(work: Path) -> tuple[Path, Path, Path]:
    """A nodetool that holds every `snapshot` while `hold` exists; with `cancel`, fails it."""
    hold, cancel = work / "hold", work / "cancel"
    script = work / "held-nodetool"
    script.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" snapshot "*)\n'
        f'  while [ -e "{hold}" ]; do sleep 0.2; done\n'
        f'  if [ -e "{cancel}" ]; then echo "cancelled by the test" >&2; exit 3; fi ;;\n'
        "esac\n"
        f'exec "{NODETOOL}" "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, hold, cancel


def test_server_stopping_mid_window_unpauses_every_instance(
    tmp_path_factory: pytest.TempPathFactory,
    cluster3: LocalCluster,
    apps: list[AppProcess],
) -> None:
    work = tmp_path_factory.mktemp("held")
    script, hold, cancel = _held_nodetool(work)
    hold.touch()
    server = _server(
        tmp_path_factory,
        cluster3,
        f'instances = ["{APP1}", "{APP2}"]\npause_timeout = "30s"',
        nodetool=script,
    )
    try:
        with CassyClient(server.address, timeout_s=60) as client:
            registered = client.register_cluster(cluster3.addresses[0])
            ack = client.take_backup(registered.cluster_id, BackupType.CLUSTER_SNAPSHOT)
        deadline = time.monotonic() + 120
        while not all(app.stats()["paused"] for app in apps):
            assert time.monotonic() < deadline, [app.stats() for app in apps]
            time.sleep(0.2)
        server.stop()
        assert [app.stats()["paused"] for app in apps] == [False, False]
        rows = history(server, ack.snapshot_id)
        assert {status for status, _ in rows.values()} == {4}  # FAILED
    finally:
        cancel.touch()
        hold.unlink()
        server.stop()


def _empty_node_directories(cluster: LocalCluster) -> None:
    """What a restore needs: every node's data, commit log, hints and caches empty."""
    for spec in cluster.specs:
        for directory in (spec.data_dir, spec.commitlog_dir, spec.hints_dir, spec.saved_caches_dir):
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)


def _final_restore_statuses(
    client: CassyClient, ack: BackupAck, timeout_s: float = 600
) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = client.list_restore_statuses(ack.cluster_id, ack.snapshot_id)
        if rows and all(r.status.is_final for r in rows):
            assert {r.restore_type for r in rows} == {RestoreType.CLUSTER}
            return {r.target_ip: r.status.name for r in rows}
        assert time.monotonic() < deadline, rows
        time.sleep(1)


def _session_works_again(session: Session, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            session.execute("SELECT release_version FROM system.local")
            return
        except Exception:
            assert time.monotonic() < deadline, "the session did not reconnect"
            time.sleep(1)


def test_cluster_restore_of_the_cut_holds_no_torn_pair(
    srv_server: ServerProcess,
    cluster3: LocalCluster,
    session3: Session,
    apps: list[AppProcess],
    cut: TakenBackup,
) -> None:
    """Runs last: it stops the applications and replaces every node's data with the cut."""
    assert cut.statuses == dict.fromkeys(cluster3.addresses, "COMPLETED")
    for app in apps:
        app.stop()
    for spec in cluster3.specs:
        cluster3.stop(spec.number)
    try:
        _empty_node_directories(cluster3)
        with CassyClient(srv_server.address, timeout_s=120) as client:
            ack = client.restore_backup(
                cut.ack.cluster_id, cut.ack.snapshot_id, RestoreType.CLUSTER
            )
            assert sorted(ack.target_ips) == sorted(cluster3.addresses)
            statuses = _final_restore_statuses(client, cut.ack)
    finally:
        cluster3.start_all(timeout=420)
        _session_works_again(session3)
    assert statuses == dict.fromkeys(cluster3.addresses, "COMPLETED")
    counted = count_pairs(session3, APP_KEYSPACE)
    assert counted.complete >= 400
    assert counted.torn == 0, counted.torn_examples
