"""What the restore tests share: known rows and their checksum, a node's identity, wiping and
fingerprinting a node's directories, and waiting for a restore's outcome. No tests live here."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from cassandra.query import SimpleStatement

from cassy_scheduler.client import CassyClient
from cassy_scheduler.node.placement import STAGING_PREFIX
from tests.conftest import cql_session
from tools.localcluster import LocalCluster
from tools.localcluster.nodeconfig import NodeSpec


def node_dirs(spec: NodeSpec) -> list[Path]:
    return [spec.data_dir, spec.commitlog_dir, spec.hints_dir, spec.saved_caches_dir]


def write_rows(session: Session, keyspace: str, start: int, count: int) -> None:
    """Rows k in [start, start+count) of keyspace.kv, acknowledged by every replica."""
    session.execute(f"CREATE TABLE IF NOT EXISTS {keyspace}.kv (k int PRIMARY KEY, v text)")
    insert = session.prepare(f"INSERT INTO {keyspace}.kv (k, v) VALUES (?, ?)")
    insert.consistency_level = ConsistencyLevel.ALL
    for k in range(start, start + count):
        session.execute(insert, (k, f"value-{k}-" * 10))


def table_checksum(session: Session, keyspace: str) -> tuple[int, str]:
    """(row count, SHA-256 over every row in key order), read at consistency ONE."""
    statement = SimpleStatement(
        f"SELECT k, v FROM {keyspace}.kv", consistency_level=ConsistencyLevel.ONE, fetch_size=500
    )
    rows = sorted((row.k, row.v) for row in session.execute(statement))
    digest = hashlib.sha256()
    for k, v in rows:
        digest.update(f"{k}\x00{v}\x01".encode())
    return len(rows), digest.hexdigest()


def checksum_on(address: str, keyspace: str) -> tuple[int, str]:
    """The checksum with `address` as the only coordinator, on a fresh connection."""
    driver, session = cql_session([address], only=address)
    try:
        return table_checksum(session, keyspace)
    finally:
        driver.shutdown()


def identity(cluster: LocalCluster, node: int) -> tuple[str, tuple[str, ...]]:
    """The node's host id and tokens, as `nodetool info -T` prints them."""
    host_id = ""
    tokens: list[str] = []
    for line in cluster.nodetool(node, "info", "-T").splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "ID":
            host_id = value.strip()
        elif name.strip() == "Token":
            tokens.append(value.strip())
    assert host_id and tokens, "nodetool info printed no ID or tokens"
    return host_id, tuple(tokens)


def wipe(spec: NodeSpec) -> None:
    """Empty the node's data, commit log, hints and saved caches directories."""
    for directory in node_dirs(spec):
        for entry in directory.iterdir() if directory.exists() else ():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def fingerprint(spec: NodeSpec) -> dict[str, tuple[int, int]]:
    """Every file and directory of the node's directories and staging area: (size, mtime)."""
    seen: dict[str, tuple[int, int]] = {}
    roots = [*node_dirs(spec), *spec.home.glob(f"{STAGING_PREFIX}*")]
    for root in roots:
        for directory, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames]:
                stat = (Path(directory) / name).lstat()
                seen[str(Path(directory) / name)] = (stat.st_size, stat.st_mtime_ns)
    return seen


def staging_leftovers(spec: NodeSpec) -> list[Path]:
    return sorted(spec.home.glob(f"{STAGING_PREFIX}*"))


def restore_keys(client: CassyClient, cluster_id: str, snapshot_id: str) -> set[tuple[str, int]]:
    return {
        (r.target_ip, r.created_at_ms)
        for r in client.list_restore_statuses(cluster_id, snapshot_id)
    }


def wait_restore(
    client: CassyClient,
    cluster_id: str,
    snapshot_id: str,
    before: set[tuple[str, int]],
    timeout_s: float = 600,
) -> dict[str, str]:
    """Every new row's final status by node, once all of them are final."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = [
            r
            for r in client.list_restore_statuses(cluster_id, snapshot_id)
            if (r.target_ip, r.created_at_ms) not in before
        ]
        if rows and all(r.status.is_final for r in rows):
            return {r.target_ip: r.status.name for r in rows}
        assert time.monotonic() < deadline, rows
        time.sleep(0.5)


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except Exception:  # the node or the driver is still coming back
            if time.monotonic() > deadline:
                raise
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout_s} s"
        time.sleep(1)


def wait_for_session(session: Session, timeout_s: float = 180) -> None:
    """A long-lived session works again after its nodes restarted (the driver reconnects)."""
    wait_until(
        lambda: session.execute("SELECT release_version FROM system.local").one() is not None,
        "the session reconnecting",
        timeout_s,
    )
