"""Client-side encryption on a real node, to a directory and to S3 (moto's server): what is
stored is not the SSTables' bytes, a restore brings every row back, verify proves it and
finds a changed byte, and a server with the wrong key refuses the restore before a file
moves."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest
from cassandra.cluster import Session

from cassy_scheduler.client import CassyClient
from cassy_scheduler.node.manifest import ManifestEntry, find_manifests
from cassy_scheduler.protocol.types import RestoreType
from cassy_scheduler.storage import Storage, open_storage
from cassy_scheduler.storage.envelope import MAGIC, key_id
from cassy_scheduler.storage.options import StorageOptions
from tests.integration.test_object_storage import options_of, storage_table
from tests.integration.test_restore_helpers import (
    checksum_on,
    fingerprint,
    restore_keys,
    wait_for_session,
    wait_restore,
    wipe,
)
from tests.integration.test_restore_node import Backup, make_backup, restore_and_start
from tests.integration.test_scheduler_helpers import cli
from tests.serverproc import ServerProcess, server_toml
from tools.localcluster import LocalCluster
from tools.peers.objectservers import ObjectServer

pytestmark = [pytest.mark.cassandra, pytest.mark.encryption]

MARKER = "PLAINTEXT-THAT-MUST-NOT-BE-STORED-"


def _key(path: Path) -> bytes:
    key = os.urandom(32)
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    return key


def _storage(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[str, StorageOptions]:
    """The server's [storage] table (without its encryption) and the same store's terms."""
    if kind == "file":
        uri = (tmp_path / "storage").as_uri()
        return f'[storage]\nuri = "{uri}"\n', StorageOptions(uri=uri)
    request.getfixturevalue("s3_credentials")
    moto: ObjectServer = request.getfixturevalue("moto")
    uri = f"s3://backups/cassandra-sealed-{os.getpid()}"
    return storage_table("s3", moto, uri=uri), options_of("s3", moto, uri=uri)


def _seed(session: Session, keyspace: str) -> None:
    """A keyspace whose one table keeps MARKER in its Data.db as written (no compression)."""
    session.execute(
        f"CREATE KEYSPACE {keyspace} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    session.execute(
        f"CREATE TABLE {keyspace}.secrets (k int PRIMARY KEY, v text) "
        "WITH compression = {'enabled': false}"
    )
    for k in range(200):
        session.execute(f"INSERT INTO {keyspace}.secrets (k, v) VALUES ({k}, '{MARKER}{k}')")


def _assert_verified(server: ServerProcess, snapshot_id: str, config: Path, key: bytes) -> None:
    verified = _verify(server, snapshot_id, "--server-config", str(config))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    (node,) = json.loads(verified.stdout)["nodes"]
    assert node["key_ids"] == [key_id(key)]  # the key to keep while the backup is kept


def _verify(
    server: ServerProcess, snapshot_id: str, *where: str
) -> subprocess.CompletedProcess[str]:
    return cli("verify", snapshot_id, "--server", server.address, *where, "--json")


def _sealed_files(raw: Storage, keyed: Storage, prefix: str, key: bytes) -> list[ManifestEntry]:
    """What the store holds is ciphertext; through the key, manifests that name it."""
    stored = list(raw.list("node-backup/"))
    assert any(info.key.endswith("-Data.db") for info in stored)
    assert all(MARKER.encode() not in b"".join(raw.chunks(info.key)) for info in stored)
    assert all(raw.get_bytes(info.key).startswith(MAGIC) for info in stored[:50])
    manifests = find_manifests(keyed, prefix)
    assert manifests and {m.key_id for m in manifests} == {key_id(key)}
    secrets = [e for m in manifests for e in m.files if "/secrets-" in e.key]
    assert any(e.key.endswith("-Data.db") for e in secrets)  # the marker's table is in it
    return secrets


def _restore_with(server: ServerProcess, config: Path, key_file: str, backup: Backup) -> str:
    """Restart the server with another key file, ask for the restore; the rows' reasons."""
    server.stop()
    text = config.read_text()
    config.write_text(text.replace("backup.key", key_file))
    server.start()
    try:
        with CassyClient(server.address, timeout_s=120) as client:
            earlier = restore_keys(client, backup.cluster_id, backup.snapshot_id)
            client.restore_backup(backup.cluster_id, backup.snapshot_id, RestoreType.NODE)
            statuses = wait_restore(client, backup.cluster_id, backup.snapshot_id, earlier)
            assert set(statuses.values()) == {"FAILED"}, statuses
            rows = client.list_restore_statuses(backup.cluster_id, backup.snapshot_id)
    finally:
        server.stop()
        config.write_text(text)
        server.start()
    return " ".join(r.reason or "" for r in rows)


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_a_sealed_backup_stores_no_plaintext_and_restores_every_row(
    tmp_path: Path,
    cluster1: LocalCluster,
    session1: Session,
    request: pytest.FixtureRequest,
    kind: str,
) -> None:
    table, options = _storage(kind, tmp_path, request)
    raw = open_storage(options)  # what the store's owner sees
    key = _key(tmp_path / "backup.key")
    sealed = f'\n[storage.client_encryption]\nkey_file = "{tmp_path / "backup.key"}"\n'
    config = server_toml(tmp_path, [cluster1], storage=table + sealed, resident=True)
    server = ServerProcess(config, tmp_path / "server.log").start()
    keyspace = f"sealed_{kind}_{os.getpid()}"
    _seed(session1, keyspace)
    spec = cluster1.spec(1)
    try:
        with CassyClient(server.address, timeout_s=120) as client:
            backup = make_backup(client, cluster1, session1, keyspace)
        keyed = open_storage(dataclasses.replace(options, client_keys=(key,)))
        prefix = f"node-backup/{backup.cluster_id}/{backup.snapshot_id}/{spec.address}/"
        secrets = _sealed_files(raw, keyed, prefix, key)
        _assert_verified(server, backup.snapshot_id, config, key)
        if kind == "file":  # the store alone, without the key: says it is encrypted
            unkeyed = _verify(server, backup.snapshot_id, "--storage", raw.uri)
            assert unkeyed.returncode != 0 and "encrypted" in unkeyed.stdout + unkeyed.stderr

        cluster1.stop(1)
        try:
            wipe(spec)
            before = fingerprint(spec)
            _key(tmp_path / "wrong.key")
            reasons = _restore_with(server, config, "wrong.key", backup)
            assert "not configured" in reasons and key_id(key) in reasons, reasons
            assert fingerprint(spec) == before  # refused before a file moved
            with CassyClient(server.address, timeout_s=120) as client:
                statuses = restore_and_start(
                    client, cluster1, session1, backup, snapshot_only=False
                )
        finally:
            if not cluster1.running()[spec.name]:
                cluster1.start(1)
                wait_for_session(session1)
        assert statuses == {spec.address: "COMPLETED"}
        assert checksum_on(spec.address, keyspace) == backup.at_incremental

        # One byte changed in storage: verify names the file.
        target = next(e for e in secrets if e.key.endswith("-Data.db"))
        changed = bytearray(raw.get_bytes(target.key))
        changed[len(changed) // 2] ^= 0x01
        raw.put_bytes(target.key, bytes(changed))
        tampered = _verify(server, backup.snapshot_id, "--server-config", str(config))
        assert tampered.returncode == 1, tampered.stdout + tampered.stderr
        assert json.loads(tampered.stdout)["ok"] is False and target.path in tampered.stdout
    finally:
        server.stop()
        wait_for_session(session1)
        session1.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
