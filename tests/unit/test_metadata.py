"""The server's metadata store on real SQLite files: records, Cassy's filters, crash safety."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cassy_scheduler.clock import epoch_ms
from cassy_scheduler.protocol.types import BackupType, OperationStatus, RestoreType
from cassy_scheduler.server.auditlog import KeptAuditLog
from cassy_scheduler.server.metadata import SqliteMetadataStore
from cassy_scheduler.server.rows import (
    AuditRecord,
    DuplicateRecordError,
    HistoryKey,
    InvalidQueryError,
    MetadataError,
    MetadataStore,
    RecordNotFoundError,
)
from cassy_scheduler.server.sqltables import SCHEMA_VERSION
from tests.unit.fakes import FakeClock

NODES = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


class StepClock(FakeClock):
    """A clock that moves only when told to, read in Cassy's milliseconds."""

    def __init__(self, start_ms: int = 1_700_000_123_456) -> None:
        super().__init__(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=start_ms))

    @property
    def ms(self) -> int:
        return epoch_ms(self.now())

    def advance_ms(self, ms: int = 1000) -> int:
        self.advance(ms / 1000)
        return self.ms


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def store(tmp_path: Path, clock: StepClock) -> SqliteMetadataStore:
    return SqliteMetadataStore(tmp_path / "cassy.db", clock=clock)


def test_sqlite_store_satisfies_the_protocol(store: SqliteMetadataStore) -> None:
    typed: MetadataStore = store
    assert typed.list_clusters() == []


def test_clusters_are_stored_and_listed_newest_first(
    store: SqliteMetadataStore, clock: StepClock
) -> None:
    first = store.add_cluster(
        cluster_id="a-1",
        cluster_name="a",
        target_ips=NODES,
        keyspaces=["ks1", "ks2"],
        data_dir="/var/lib/cassandra/data",
    )
    clock.advance_ms()
    second = store.add_cluster(
        cluster_id="b-2", cluster_name="b", target_ips=NODES[:1], keyspaces=[], data_dir="/d"
    )

    assert first.created_at == first.updated_at == 1_700_000_123_456
    assert first.target_ips == NODES
    assert store.get_cluster("a-1") == first
    assert store.get_cluster("nope") is None
    assert store.list_clusters() == [second, first]
    assert store.list_clusters(limit=1) == [second]
    assert store.list_clusters(cluster_id="a-1") == [first]
    assert store.list_clusters(cluster_id="nope") == []
    with pytest.raises(DuplicateRecordError, match="a-1"):
        store.add_cluster(
            cluster_id="a-1", cluster_name="a", target_ips=[], keyspaces=[], data_dir="/d"
        )


def test_backup_rows_share_created_at_and_start_initialized(
    store: SqliteMetadataStore, clock: StepClock
) -> None:
    rows = store.insert_backups(
        cluster_id="c", target_ips=NODES, snapshot_id="s1", backup_type=BackupType.NODE_SNAPSHOT
    )

    assert {r.created_at for r in rows} == {clock.ms}
    assert {r.status for r in rows} == {OperationStatus.INITIALIZED}
    assert store.list_backups(cluster_id="c") == sorted(rows, key=lambda r: r.target_ip)


def test_update_backup_status_sets_updated_at_and_reason(
    store: SqliteMetadataStore, clock: StepClock
) -> None:
    (row,) = store.insert_backups(
        cluster_id="c", target_ips=NODES[:1], snapshot_id="s1", backup_type=BackupType.NODE_SNAPSHOT
    )
    later = clock.advance_ms(5000)

    failed = store.update_backup_status(row.key, OperationStatus.FAILED, "nodetool exited 2")

    assert failed.status is OperationStatus.FAILED
    assert failed.reason == "nodetool exited 2"
    assert failed.updated_at == later
    assert failed.created_at == row.created_at
    assert store.get_backup(row.key) == failed
    missing = HistoryKey("c", "127.0.0.9", "s1", row.created_at)
    with pytest.raises(RecordNotFoundError, match=r"127\.0\.0\.9"):
        store.update_backup_status(missing, OperationStatus.COMPLETED)
    assert store.get_backup(missing) is None


def test_duplicate_backup_rows_are_refused_whole(store: SqliteMetadataStore) -> None:
    store.insert_backups(
        cluster_id="c", target_ips=NODES[:1], snapshot_id="s", backup_type=BackupType.NODE_SNAPSHOT
    )
    with pytest.raises(DuplicateRecordError):
        store.insert_backups(
            cluster_id="c", target_ips=NODES, snapshot_id="s", backup_type=BackupType.NODE_SNAPSHOT
        )
    assert len(store.list_backups(snapshot_id="s")) == 1  # the request's rows went in together


def _seed_backups(store: SqliteMetadataStore, clock: StepClock) -> None:
    """Cluster c: a snapshot s1 with two incrementals; cluster d: snapshot s2."""
    store.insert_backups(
        cluster_id="c", target_ips=NODES, snapshot_id="s1", backup_type=BackupType.NODE_SNAPSHOT
    )
    clock.advance_ms()
    store.insert_backups(
        cluster_id="d", target_ips=NODES[:2], snapshot_id="s2", backup_type=BackupType.NODE_SNAPSHOT
    )
    for _ in range(2):
        clock.advance_ms()
        store.insert_backups(
            cluster_id="c",
            target_ips=NODES,
            snapshot_id="s1",
            backup_type=BackupType.NODE_INCREMENTAL,
        )


def test_list_backups_follows_cassy_filter_precedence(
    store: SqliteMetadataStore, clock: StepClock
) -> None:
    _seed_backups(store, clock)

    node = store.list_backups(cluster_id="c", target_ip="127.0.0.2", snapshot_id="ignored")
    assert {(r.cluster_id, r.target_ip) for r in node} == {("c", "127.0.0.2")}
    assert len(node) == 3

    snapshot = store.list_backups(snapshot_id="s2", cluster_id="c")  # snapshot wins over cluster
    assert {r.snapshot_id for r in snapshot} == {"s2"}
    assert len(snapshot) == 2

    assert len(store.list_backups(snapshot_id="s1")) == 9  # snapshot and incrementals alike
    assert len(store.list_backups(cluster_id="c")) == 9
    assert {r.cluster_id for r in store.list_backups(cluster_id="d")} == {"d"}
    assert store.list_backups(target_ip="127.0.0.1", snapshot_id="s2")[0].snapshot_id == "s2"

    no_filters: list[tuple[str | None, str | None, str | None]] = [
        (None, None, None),
        (None, "127.0.0.1", None),  # a node without its cluster is not a filter
        ("", "", ""),  # proto3 sends unset strings as ""
    ]
    for cluster_id, target_ip, snapshot_id in no_filters:
        with pytest.raises(InvalidQueryError, match="cluster_id"):
            store.list_backups(cluster_id=cluster_id, target_ip=target_ip, snapshot_id=snapshot_id)


def test_list_backups_is_newest_first_and_limited(
    store: SqliteMetadataStore, clock: StepClock
) -> None:
    _seed_backups(store, clock)

    rows = store.list_backups(cluster_id="c")
    created = [r.created_at for r in rows]
    assert created == sorted(created, reverse=True)
    assert rows[0].backup_type is BackupType.NODE_INCREMENTAL
    assert rows[-1].backup_type is BackupType.NODE_SNAPSHOT
    assert store.list_backups(cluster_id="c", limit=4) == rows[:4]
    assert store.list_backups(cluster_id="c", limit=0) == rows
    assert store.list_backups(cluster_id="c", limit=-1) == rows  # as Cassy: no limit


def test_restores_keep_type_and_snapshot_only(store: SqliteMetadataStore, clock: StepClock) -> None:
    rows = store.insert_restores(
        cluster_id="c",
        target_ips=NODES[:2],
        snapshot_id="s1",
        restore_type=RestoreType.NODE,
        snapshot_only=True,
    )
    clock.advance_ms()
    store.insert_restores(
        cluster_id="c",
        target_ips=NODES[:1],
        snapshot_id="s9",
        restore_type=RestoreType.CLUSTER,
        snapshot_only=False,
    )

    assert all(r.snapshot_only and r.restore_type is RestoreType.NODE for r in rows)
    done = store.update_restore_status(rows[0].key, OperationStatus.COMPLETED)
    assert done.status is OperationStatus.COMPLETED
    assert done.updated_at == clock.ms
    assert store.get_restore(rows[0].key) == done
    assert [r.snapshot_id for r in store.list_restores(cluster_id="c")] == ["s9", "s1", "s1"]
    assert len(store.list_restores(snapshot_id="s1")) == 2
    assert [r.snapshot_id for r in store.list_restores(cluster_id="c", target_ip=NODES[0])] == [
        "s9",
        "s1",
    ]
    assert len(store.list_restores(cluster_id="c", limit=1)) == 1
    with pytest.raises(InvalidQueryError, match="restores"):
        store.list_restores()
    with pytest.raises(RecordNotFoundError):
        store.update_restore_status(HistoryKey("x", "127.0.0.1", "s", 0), OperationStatus.FAILED)


def test_fail_unfinished_marks_only_rows_in_progress(
    store: SqliteMetadataStore, clock: StepClock
) -> None:
    backups = store.insert_backups(
        cluster_id="c", target_ips=NODES, snapshot_id="s1", backup_type=BackupType.NODE_SNAPSHOT
    )
    restores = store.insert_restores(
        cluster_id="c",
        target_ips=NODES[:1],
        snapshot_id="s1",
        restore_type=RestoreType.NODE,
        snapshot_only=False,
    )
    store.update_backup_status(backups[0].key, OperationStatus.COMPLETED)
    store.update_backup_status(backups[1].key, OperationStatus.STARTED)
    restart = clock.advance_ms(60_000)

    changed = store.fail_unfinished("server restarted while the operation ran")

    assert changed == 3  # backups[1] STARTED, backups[2] INITIALIZED, the restore
    after = {r.target_ip: r for r in store.list_backups(snapshot_id="s1")}
    assert after[NODES[0]].status is OperationStatus.COMPLETED
    assert after[NODES[0]].reason is None
    for ip in NODES[1:]:
        assert after[ip].status is OperationStatus.FAILED
        assert after[ip].reason == "server restarted while the operation ran"
        assert after[ip].updated_at == restart
    restore = store.get_restore(restores[0].key)
    assert restore is not None
    assert restore.status is OperationStatus.FAILED
    assert store.fail_unfinished("again") == 0


def test_records_survive_reopening(tmp_path: Path, clock: StepClock) -> None:
    path = tmp_path / "cassy.db"
    first = SqliteMetadataStore(path, clock=clock)
    rows = first.insert_backups(
        cluster_id="c", target_ips=NODES, snapshot_id="s", backup_type=BackupType.CLUSTER_SNAPSHOT
    )
    first.close()

    reopened = SqliteMetadataStore(path, clock=clock)

    assert reopened.list_backups(cluster_id="c") == rows
    journal_mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert journal_mode == "wal"


def test_schema_version_is_recorded_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "cassy.db"
    SqliteMetadataStore(path).close()
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT version FROM schema_version").fetchall() == [
        (SCHEMA_VERSION,)
    ]
    connection.execute("UPDATE schema_version SET version = 99")
    connection.commit()
    connection.close()

    with pytest.raises(MetadataError, match="schema version 99"):
        SqliteMetadataStore(path)


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE something (x)")
    connection.commit()
    connection.close()
    with pytest.raises(MetadataError, match="without our schema_version"):
        SqliteMetadataStore(path)


def test_unopenable_path_is_reported(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="cannot open metadata database"):
        SqliteMetadataStore(tmp_path / "no" / "such" / "dir" / "cassy.db")


def test_dump_sql_restores_an_equal_database(
    store: SqliteMetadataStore, clock: StepClock, tmp_path: Path
) -> None:
    store.add_cluster(
        cluster_id="c", cluster_name="c", target_ips=NODES, keyspaces=["ks"], data_dir="/d"
    )
    _seed_backups(store, clock)
    store.insert_restores(
        cluster_id="c",
        target_ips=NODES[:1],
        snapshot_id="s1",
        restore_type=RestoreType.NODE,
        snapshot_only=False,
    )

    dump = store.dump_sql()
    copy_path = tmp_path / "copy.db"
    connection = sqlite3.connect(copy_path)
    connection.executescript(dump)
    connection.close()
    copy = SqliteMetadataStore(copy_path, clock=clock)

    assert dump.startswith("BEGIN TRANSACTION;")
    assert copy.list_clusters() == store.list_clusters()
    assert copy.list_backups(cluster_id="c") == store.list_backups(cluster_id="c")
    assert copy.list_restores(cluster_id="c") == store.list_restores(cluster_id="c")


def test_many_threads_can_write_and_read_at_once(store: SqliteMetadataStore) -> None:
    threads_count, requests_each = 8, 25
    errors: list[BaseException] = []
    start = threading.Barrier(threads_count)

    def work(worker: int) -> None:
        try:
            start.wait()
            for request in range(requests_each):
                rows = store.insert_backups(
                    cluster_id="c",
                    target_ips=NODES,
                    snapshot_id=f"s-{worker}",
                    backup_type=BackupType.NODE_SNAPSHOT,
                    created_at=request,
                )
                for row in rows:
                    store.update_backup_status(row.key, OperationStatus.COMPLETED)
                store.list_backups(snapshot_id=f"s-{worker}", limit=3)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    rows = store.list_backups(cluster_id="c")
    assert len(rows) == threads_count * requests_each * len(NODES)
    assert {r.status for r in rows} == {OperationStatus.COMPLETED}


def test_a_version_1_database_is_migrated_in_place_through_each_version_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "metadata.db"
    store = SqliteMetadataStore(path)
    store.insert_backups(
        cluster_id="c",
        target_ips=["127.0.0.2"],
        snapshot_id="s",
        backup_type=BackupType.NODE_SNAPSHOT,
        created_at=1000,
        status=OperationStatus.COMPLETED,
    )
    store.close()
    with sqlite3.connect(path) as old:  # as a server of schema version 1 left it
        old.execute("DROP TABLE backup_sizes")
        old.execute("DROP TABLE backup_deletions")
        old.execute("DROP TABLE audit_log")
        old.execute("DELETE FROM schema_version")
        old.execute("INSERT INTO schema_version (version) VALUES (1)")
    old.close()
    store = SqliteMetadataStore(path)
    try:
        assert [r.snapshot_id for r in store.list_backups(cluster_id="c")] == ["s"]
        store.record_size(store.list_backups(cluster_id="c")[0].key, 3, 300)
        assert next(iter(store.sizes("c").values())).bytes == 300
        assert store.deletions("c") == set()
        assert store.audit(10) == []
    finally:
        store.close()
    with sqlite3.connect(path) as done:
        versions = [v for (v,) in done.execute("SELECT version FROM schema_version")]
    done.close()
    assert max(versions) == SCHEMA_VERSION == 3


def test_the_audit_log_lists_calls_newest_first_by_identity_and_page(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "metadata.db")
    try:
        for at, who in ((1000, "ops"), (2000, "admin"), (2000, "ops"), (3000, "ops")):
            store.record_call(
                AuditRecord(at, who, "ipv4:127.0.0.1:5", "/rpc.Cassy/TakeBackup", "{}", "OK", "")
            )
        assert [r.at for r in store.audit(10)] == [3000, 2000, 2000, 1000]
        assert [r.at for r in store.audit(10, identity="ops")] == [3000, 2000, 1000]
        # Pages by id: the second call of a millisecond is not lost between two pages.
        first = store.audit(2)
        assert [(r.at, r.identity) for r in first] == [(3000, "ops"), (2000, "ops")]
        rest = store.audit(10, before_id=first[-1].id)
        assert [(r.at, r.identity) for r in rest] == [(2000, "admin"), (1000, "ops")]
    finally:
        store.close()


def test_audit_rows_older_than_audit_keep_go_at_start_and_then_hourly(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "metadata.db")
    now = [1_000_000.0]  # seconds

    def row(at_s: float) -> AuditRecord:
        return AuditRecord(int(at_s * 1000), "ops", "ipv4:127.0.0.1:5", "/m", "{}", "OK", "")

    try:
        for age_days in (30, 10, 1):
            store.record_call(row(now[0] - age_days * 86_400))
        kept = KeptAuditLog(store, timedelta(days=7), clock=lambda: now[0])  # at start
        assert [r.at for r in store.audit(10)] == [int((now[0] - 86_400) * 1000)]
        now[0] += 7 * 86_400  # the one-day-old row is now eight days old
        kept.record_call(row(now[0]))  # due: the last prune was more than an hour ago
        assert [r.at for r in store.audit(10)] == [int(now[0] * 1000)]
        forever = KeptAuditLog(store, None, clock=lambda: now[0])
        now[0] += 1000 * 86_400
        forever.record_call(row(now[0]))
        assert len(store.audit(10)) == 2
    finally:
        store.close()
