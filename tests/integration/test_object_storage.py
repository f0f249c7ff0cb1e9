"""Backups in object storage, end to end: the real server process stores a real node's
snapshot and incremental in moto's S3 server and in Azurite, `verify` reads them back from
there, and a wiped node is restored from them with every row. Bad storage stops `serve`
at start with the provider's reason; throttling and resets are retried; a multipart upload
that fails or is cancelled leaves no parts behind."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import grpc
import pytest
from cassandra.cluster import Session
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cassy_scheduler.client import CassyClient, CassyError
from cassy_scheduler.protocol.types import BackupType, RestoreType
from cassy_scheduler.server.settings import load_server_settings
from cassy_scheduler.storage import StorageError, open_storage
from cassy_scheduler.storage.errors import WriteCancelledError
from cassy_scheduler.storage.objectstore import ObjectStorage
from cassy_scheduler.storage.options import StorageOptions
from tests.faultproxy import FaultProxy
from tests.integration.conftest import CREDENTIALS
from tests.integration.test_restore_helpers import (
    checksum_on,
    restore_keys,
    table_checksum,
    wait_for_session,
    wait_restore,
    wait_until,
    wipe,
    write_rows,
)
from tests.integration.test_restore_node import Backup, make_backup, restore_and_start
from tests.integration.test_scheduler_helpers import cli
from tests.serverproc import ServerProcess, server_toml
from tests.tcpproxy import TcpProxy
from tools.localcluster import LocalCluster
from tools.peers.objectservers import (
    AZURITE_KEY,
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    ObjectServer,
    azure_container,
    gcs_create_bucket,
    gcs_upload,
    s3_client,
    start_azurite,
    start_fake_gcs,
)

pytestmark = [pytest.mark.object_storage, pytest.mark.usefixtures("s3_credentials")]


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectServer]:
    server = start_azurite(tmp_path_factory.mktemp("azurite"))
    try:
        azure_container(server, "backups")
        yield server
    finally:
        server.stop()


def storage_table(provider: str, server: ObjectServer, **extra: str) -> str:
    if provider == "s3":
        table = {
            "uri": "s3://backups/cassandra",
            "endpoint": server.endpoint,
            "region": "us-east-1",
            "access_key_id_env": "CASSY_TEST_S3_KEY",
            "secret_access_key_env": "CASSY_TEST_S3_SECRET",
            "part_size": "5MiB",  # so the node's larger files go as multipart uploads
        }
    else:
        table = {
            "uri": "az://backups/cassandra",
            "endpoint": server.endpoint,
            "account": "devstoreaccount1",
            "account_key_env": "CASSY_TEST_AZ_KEY",
            "part_size": "5MiB",
        }
    table.update(extra)
    return "[storage]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items())


def options_of(provider: str, server: ObjectServer, **extra: str) -> StorageOptions:
    """The same terms, as the server reads them."""
    credentials = (
        {"access_key_id": S3_ACCESS_KEY, "secret_access_key": S3_SECRET_KEY}
        if provider == "s3"
        else {"account_key": AZURITE_KEY}
    )
    base: dict[str, object] = {
        "uri": f"{'s3' if provider == 's3' else 'az'}://backups/cassandra",
        "endpoint": server.endpoint,
        "part_size": 5 << 20,
        "credentials": MappingProxyType(credentials),
    }
    if provider == "s3":
        base["region"] = "us-east-1"
    else:
        base["account"] = "devstoreaccount1"
    base.update(extra)
    return StorageOptions(**base)  # type: ignore[arg-type]


@pytest.fixture(params=["s3", "az"])
def provider(request: pytest.FixtureRequest) -> tuple[str, ObjectServer]:
    name: str = request.param
    return name, request.getfixturevalue("moto" if name == "s3" else "azurite")


@pytest.mark.cassandra
def test_a_node_backed_up_to_object_storage_is_verified_and_for_s3_restored_from_it(
    tmp_path: Path,
    cluster1: LocalCluster,
    session1: Session,
    provider: tuple[str, ObjectServer],
) -> None:
    name, store = provider
    proxy = TcpProxy(_address(store))  # held to keep a restore running
    _, _, path = store.endpoint.removeprefix("http://").partition("/")
    endpoint = f"http://127.0.0.1:{proxy.port}/{path}".rstrip("/")
    storage = storage_table(name, store, endpoint=endpoint)
    config = server_toml(tmp_path, [cluster1], storage=storage, resident=True)
    server = ServerProcess(config, tmp_path / "server.log").start()
    keyspace = f"objects_{name}_{os.getpid()}"
    session1.execute(
        f"CREATE KEYSPACE {keyspace} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    spec = cluster1.spec(1)
    try:
        with CassyClient(server.address, timeout_s=120) as client:
            backup = make_backup(client, cluster1, session1, keyspace)
            storage = open_storage(options_of(name, store))
            keys = [info.key for info in storage.list("node-backup/")]
            prefix = f"node-backup/{backup.cluster_id}/{backup.snapshot_id}/{spec.address}/"
            assert any(key.startswith(prefix + "upload-manifests/") for key in keys)
            assert any(key.startswith(prefix + keyspace + "/") for key in keys)

            verified = cli(
                "verify",
                backup.snapshot_id,
                "--server",
                server.address,
                "--server-config",
                str(config),
                "--json",
            )
            assert verified.returncode == 0, verified.stdout + verified.stderr
            assert json.loads(verified.stdout)["ok"] is True

            if name == "s3":  # restores read through the same obstore code for every store
                cluster1.stop(1)
                try:
                    wipe(spec)
                    proxy.hold()  # the restore starts, then waits on the store
                    statuses = restore_and_start(
                        client,
                        cluster1,
                        session1,
                        backup,
                        snapshot_only=False,
                        while_running=lambda: _delete_refused(client, backup, proxy),
                    )
                finally:
                    if not cluster1.running()[spec.name]:
                        cluster1.start(1)
                        wait_for_session(session1)
                assert statuses == {spec.address: "COMPLETED"}
                assert checksum_on(spec.address, keyspace) == backup.at_incremental
        log = server.output()
        for secret in CREDENTIALS.values():
            assert secret not in log
    finally:
        proxy.release()
        server.stop()
        proxy.close()
        wait_for_session(session1)
        session1.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


def _delete_refused(client: CassyClient, backup: Backup, proxy: TcpProxy) -> None:
    """While a restore reads the snapshot, no deletion of it starts, not even a dry run,
    and the server says the restore is why; then the store answers again."""
    try:
        stored = client.describe_backups(backup.cluster_id)
        assert {b.restoring for b in stored if b.snapshot_id == backup.snapshot_id} == {True}
        for dry_run in (True, False):
            with pytest.raises(CassyError) as err:
                client.delete_backup(backup.cluster_id, backup.snapshot_id, dry_run=dry_run)
            assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION, err.value
            assert "a restore from snapshot" in err.value.details
    finally:
        proxy.release()


def test_every_object_carries_its_sha256_and_multipart_ones_are_bound_by_etag(
    tmp_path: Path, moto: ObjectServer
) -> None:
    storage = open_storage(options_of("s3", moto, uri="s3://backups/digests"))
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(os.urandom(100_000))
    large.write_bytes(os.urandom(12 << 20))  # three parts
    stored = {path.name: storage.put_file(f"x/{path.name}", path) for path in (small, large)}
    for path in (small, large):
        info = stored[path.name]
        assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert info.etag == storage.stat(f"x/{path.name}").etag  # type: ignore[union-attr]
        back = storage.get_file(f"x/{path.name}", tmp_path / f"{path.name}.back")
        assert back.sha256 == info.sha256
        assert (tmp_path / f"{path.name}.back").read_bytes() == path.read_bytes()
        # One ranged read for the first bytes (an envelope's header), clamped to the object.
        assert storage.head(f"x/{path.name}", 87) == path.read_bytes()[:87]
    assert storage.head("x/small", 1 << 20) == small.read_bytes()
    head = s3_client(moto).head_object(Bucket="backups", Key="digests/x/small")
    assert head["Metadata"]["sha256"] == stored["small"].sha256
    assert storage.stat("x/large").sha256 is None  # type: ignore[union-attr]


def test_serve_refuses_a_missing_bucket_and_refused_credentials_at_start(
    tmp_path: Path, moto: ObjectServer, azurite: ObjectServer
) -> None:
    (tmp_path / "missing").mkdir()
    (tmp_path / "refused").mkdir()
    missing = server_toml(
        tmp_path / "missing",
        [],
        storage=storage_table("s3", moto, uri="s3://no-such-bucket/x"),
    )
    started = cli("serve", "--config", str(missing))
    assert started.returncode == 1
    assert "NoSuchBucket" in started.stderr
    assert "create the bucket" in started.stderr

    wrong_key = "d3Jvbmcta2V5LW5vdC1henVyaXRlcw=="
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CASSY_TEST_AZ_KEY", wrong_key)
        refused = server_toml(tmp_path / "refused", [], storage=storage_table("az", azurite))
        started = cli("serve", "--config", str(refused))
    assert started.returncode == 1
    assert "403" in started.stderr
    assert "check the credentials" in started.stderr
    assert wrong_key not in started.stderr + started.stdout

    checked = cli(
        "check",
        "-c",
        str(tmp_path / "none.toml"),
        "--offline",
        "--server-config",
        str(missing),
        "--json",
    )
    assert checked.returncode == 2
    assert "NoSuchBucket" in checked.stdout


def test_throttling_and_resets_are_retried_per_request(tmp_path: Path, moto: ObjectServer) -> None:
    proxy = FaultProxy(_address(moto), slow_down=0.2, reset=0.1)
    try:
        storage = open_storage(
            options_of("s3", moto, uri="s3://backups/faults", endpoint=proxy.endpoint)
        )
        files = []
        for index in range(6):
            path = tmp_path / f"f{index}"
            path.write_bytes(os.urandom((index + 1) * (2 << 20)))  # 2 to 12 MiB: both kinds
            files.append(path)
        for path in files:
            info = storage.put_file(f"f/{path.name}", path)
            back = storage.get_file(f"f/{path.name}", tmp_path / f"{path.name}.back")
            assert back.sha256 == info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert proxy.counts["slow_down"] > 0 and proxy.counts["reset"] > 0
    finally:
        proxy.close()


def test_a_multipart_upload_that_fails_or_is_cancelled_leaves_no_parts(
    tmp_path: Path, moto: ObjectServer
) -> None:
    client = s3_client(moto)
    proxy = FaultProxy(_address(moto))
    large = tmp_path / "large"
    large.write_bytes(os.urandom(24 << 20))
    try:
        storage = open_storage(
            options_of("s3", moto, uri="s3://backups/aborts", endpoint=proxy.endpoint)
        )
        assert isinstance(storage, ObjectStorage)
        sent = 0

        def cancel_after_two_chunks() -> bool:
            nonlocal sent
            sent += 1
            return sent > 12  # past the first part: the upload exists

        with pytest.raises(WriteCancelledError):
            storage.put_file("a/cancelled", large, cancelled=cancel_after_two_chunks)

        calls = 0

        def fail_midway() -> bool:
            nonlocal calls
            calls += 1
            if calls == 12:
                proxy.refuse_puts = True  # every later part is throttled: retries run out
            return False

        quick = open_storage(
            options_of(
                "s3", moto, uri="s3://backups/aborts", endpoint=proxy.endpoint, retry_timeout_s=3
            )
        )
        with pytest.raises(StorageError, match=r"storing 'a/failed' in s3://\S+ failed: "):
            quick.put_file("a/failed", large, cancelled=fail_midway)
        proxy.refuse_puts = False
        uploads = client.list_multipart_uploads(Bucket="backups", Prefix="aborts/")
        assert uploads.get("Uploads", []) == []
        assert storage.stat("a/cancelled") is None and storage.stat("a/failed") is None
    finally:
        proxy.close()


def _address(server: ObjectServer) -> tuple[str, int]:
    host, port = server.endpoint.removeprefix("http://").split("/")[0].split(":")
    return host, int(port)


@pytest.mark.cassandra
def test_backups_written_in_cassys_layout_are_imported_verified_and_restored(
    tmp_path: Path, cluster1: LocalCluster, session1: Session, moto: ObjectServer
) -> None:
    """A bucket as Scalar's Cassy leaves it: a real node snapshot and incremental files in
    its key layout, no manifests; plus a node whose Data.db was cut short."""
    spec = cluster1.spec(1)
    keyspace = f"fromcassy{os.getpid()}"
    session1.execute(
        f"CREATE KEYSPACE {keyspace} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    client = s3_client(moto)
    cluster_id = f"{cluster1.cluster_name}-{uuid.uuid4()}"
    snapshot_id = str(uuid.uuid4())
    try:
        expected = _write_as_cassy(client, cluster1, session1, keyspace, cluster_id, snapshot_id)
        config = server_toml(
            tmp_path, [cluster1], storage=storage_table("s3", moto, uri="s3://backups/cassy")
        )
        imported = cli("import", "--server-config", str(config))
        assert imported.returncode == 1, imported.stdout + imported.stderr  # the damaged node
        lines = imported.stdout.splitlines()
        assert any(line.startswith("imported") and spec.address in line for line in lines)
        assert any(line.startswith("refused") and "127.0.0.250" in line for line in lines)
        again = cli("import", "--server-config", str(config), "--cluster-id", cluster_id)
        assert any(line.startswith("already ours") for line in again.stdout.splitlines())

        server = ServerProcess(config, tmp_path / "server.log").start()
        try:
            with CassyClient(server.address, timeout_s=120) as cassy:
                rows = cassy.list_backups(cluster_id=cluster_id, target_ip=spec.address)
                assert {(r.backup_type.name, r.status.name) for r in rows} == {
                    ("NODE_SNAPSHOT", "COMPLETED"),
                    ("NODE_INCREMENTAL", "COMPLETED"),
                }
                verified = cli(
                    "verify", snapshot_id, "--server", server.address,
                    "--server-config", str(config), "--json",
                )  # fmt: skip
                nodes = {n["node_ip"]: n for n in json.loads(verified.stdout)["nodes"]}
                assert nodes[spec.address]["problems"] == []
                cluster1.stop(1)
                try:
                    wipe(spec)
                    # The damaged node is one of the cluster's nodes; this one is restored.
                    cluster = cassy.list_clusters(cluster_id)[0]
                    assert sorted(cluster.target_ips) == sorted([spec.address, "127.0.0.250"])
                    before = restore_keys(cassy, cluster_id, snapshot_id)
                    cassy.restore_backup(
                        cluster_id, snapshot_id, RestoreType.NODE, target_ips=[spec.address]
                    )
                    statuses = wait_restore(cassy, cluster_id, snapshot_id, before)
                    cluster1.start(1)
                    wait_for_session(session1)
                finally:
                    if not cluster1.running()[spec.name]:
                        cluster1.start(1)
                        wait_for_session(session1)
            assert statuses == {spec.address: "COMPLETED"}
            assert checksum_on(spec.address, keyspace) == expected
        finally:
            server.stop()
    finally:
        wait_for_session(session1)
        session1.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


def _write_as_cassy(  # noqa: PLR0917 (the bucket's facts)
    client: Any,
    cluster1: LocalCluster,
    session1: Session,
    keyspace: str,
    cluster_id: str,
    snapshot_id: str,
) -> tuple[int, str]:
    """A node snapshot (all keyspaces) and an incremental, uploaded in Cassy's layout with
    no manifest, and a second node whose Data.db is cut short; the rows' checksum at the
    incremental."""
    spec = cluster1.spec(1)
    write_rows(session1, keyspace, 0, 200)
    cluster1.nodetool(1, "snapshot", "-t", snapshot_id)
    for backups in spec.data_dir.glob(f"{keyspace}/*/backups"):
        for path in backups.iterdir():  # Cassy removes them: the snapshot covers them
            path.unlink()
    write_rows(session1, keyspace, 200, 100)
    cluster1.nodetool(1, "flush", keyspace)
    expected = table_checksum(session1, keyspace)
    write_rows(session1, keyspace, 300, 50)  # after the last backup: must not come back

    node_prefix = f"cassy/node-backup/{cluster_id}/{snapshot_id}/{spec.address}/"
    sent = [
        *spec.data_dir.glob(f"*/*/snapshots/{snapshot_id}/**/*"),
        *spec.data_dir.glob(f"{keyspace}/*/backups/*"),
    ]
    for path in sent:
        if path.is_file():
            key = node_prefix + path.relative_to(spec.data_dir).as_posix()
            client.upload_file(str(path), "backups", key)
    data = next(p for p in sent if p.name.endswith("Data.db") and keyspace in str(p))
    damaged = f"cassy/node-backup/{cluster_id}/{snapshot_id}/127.0.0.250/"
    for path in data.parent.iterdir():
        if path.is_file() and path.name.startswith(data.name.removesuffix("Data.db")):
            body = path.read_bytes()
            body = body[: len(body) // 2] if path == data else body
            relative = path.relative_to(spec.data_dir).as_posix()
            client.put_object(Bucket="backups", Key=damaged + relative, Body=body)
    return expected


@pytest.mark.cassandra
def test_a_server_stopped_or_killed_mid_upload_leaves_no_completed_row_nor_manifest(
    tmp_path: Path, cluster1: LocalCluster, session1: Session, moto: ObjectServer
) -> None:
    """Uploads slowed to 1 MB/s by the server's own max_bandwidth, so that a node's large
    Data.db is still being sent, part by part, when SIGTERM (and then SIGKILL) comes."""
    keyspace = f"midupload{os.getpid()}"
    session1.execute(
        f"CREATE KEYSPACE {keyspace} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    session1.execute(
        f"CREATE TABLE {keyspace}.blobs (k int PRIMARY KEY, v blob) "
        "WITH compression = {'enabled': false}"
    )
    insert = session1.prepare(f"INSERT INTO {keyspace}.blobs (k, v) VALUES (?, ?)")
    for k in range(750):
        session1.execute(insert, (k, os.urandom(16_000)))  # 12 MB: three parts
    client = s3_client(moto)
    table = storage_table("s3", moto, uri="s3://backups/midupload", max_bandwidth="1MB/s")
    config = server_toml(tmp_path, [cluster1], storage=table, resident=True)
    # No grace: a stop cancels the upload at the next part, before the last one can be sent.
    config.write_text(config.read_text().replace('shutdown_grace = "5s"', 'shutdown_grace = "0s"'))
    server = ServerProcess(config, tmp_path / "server.log").start()
    try:
        for stop in ("SIGTERM", "SIGKILL"):
            with CassyClient(server.address, timeout_s=120) as cassy:
                registered = cassy.register_cluster(cluster1.addresses[0])
                ack = cassy.take_backup(registered.cluster_id, BackupType.NODE_SNAPSHOT)
            wait_until(
                lambda: bool(
                    client.list_multipart_uploads(Bucket="backups", Prefix="midupload/").get(
                        "Uploads"
                    )
                ),
                "a multipart upload in progress",
                timeout_s=120,
            )
            if stop == "SIGTERM":
                assert server.stop() == 0  # cancelled between parts
                left = client.list_multipart_uploads(Bucket="backups", Prefix="midupload/")
                assert left.get("Uploads", []) == []  # aborted, not left billing
            else:
                server.kill()
            server.start()
            with CassyClient(server.address, timeout_s=120) as cassy:
                rows = [
                    r
                    for r in cassy.list_backups(snapshot_id=ack.snapshot_id)
                    if r.created_at_ms == ack.created_at_ms
                ]
            assert rows and {r.status.name for r in rows} == {"FAILED"}, rows
            manifests = [
                item["Key"]
                for item in client.list_objects_v2(Bucket="backups", Prefix="midupload/").get(
                    "Contents", []
                )
                if ack.snapshot_id in item["Key"] and "/upload-manifests/" in item["Key"]
            ]
            assert manifests == []
        for upload in client.list_multipart_uploads(Bucket="backups", Prefix="midupload/").get(
            "Uploads", []
        ):  # the killed server's: the bucket's lifecycle rule removes these (docs/storage.md)
            client.abort_multipart_upload(
                Bucket="backups", Key=upload["Key"], UploadId=upload["UploadId"]
            )
    finally:
        server.stop()
        session1.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


@pytest.fixture(scope="module")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectServer]:
    server = start_fake_gcs(tmp_path_factory.mktemp("fake-gcs"))
    try:
        gcs_create_bucket(server, "backups")
        yield server
    finally:
        server.stop()


def test_google_cloud_storage_is_read_with_a_service_account_key(
    tmp_path: Path, fake_gcs: ObjectServer
) -> None:
    """fake-gcs-server takes no XML API writes, so objects go in through its JSON API and
    everything a restore and `verify` do is done through gs://: list, stat, fetch, hash,
    delete, with a service account's key from service_account_file (obstore signs its own
    JWT with it: no token endpoint is asked)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = tmp_path / "gcs-key.json"
    account.write_text(
        json.dumps(
            {
                "type": "service_account",
                "private_key_id": "test",
                "private_key": pem,
                "client_email": "backups@test.iam.gserviceaccount.com",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    table = (
        '[storage]\nuri = "gs://backups/cassandra"\n'
        f'endpoint = "{fake_gcs.endpoint}"\nservice_account_file = "{account}"\n'
    )
    config = server_toml(tmp_path, [], storage=table)
    storage = open_storage(load_server_settings(config).storage)
    data = {
        f"node-backup/c/s/127.0.0.1/ks/t/nb-{n}-big-Data.db": os.urandom(n << 20)
        for n in (1, 9, 20)
    }
    for name, body in data.items():
        gcs_upload(fake_gcs, "backups", f"cassandra/{name}", body)
    listed = {info.key: info for info in storage.list("node-backup/c/")}
    assert {key: info.size for key, info in listed.items()} == {k: len(v) for k, v in data.items()}
    for name, body in data.items():
        digest = hashlib.sha256(body).hexdigest()
        assert storage.stat(name).etag == listed[name].etag  # type: ignore[union-attr]
        fetched = storage.get_file(name, tmp_path / "fetched")  # 20 MiB: ranged GETs
        assert fetched.sha256 == digest == storage.sha256(name)
        assert (tmp_path / "fetched").read_bytes() == body
    storage.delete(next(iter(data)))
    assert storage.stat(next(iter(data))) is None
