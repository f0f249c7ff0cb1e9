"""A cluster whose nodes the server reaches only over SSH, end to end.

Each node of the local 3-node cluster gets its own OpenSSH sshd on its loopback address,
and the server's config names the nodes by SSH alone: no data directory, no JMX port. So
every nodetool call, every file read and every byte stored goes through `cassy-scheduler
node` on the node's "host". With S3 storage the data goes from each node straight to the
store (the server's own I/O stays under 1 % of the backup); with `file://` storage it comes
to the server through the SSH sessions. A session killed mid-upload fails that node alone
with the reason; a changed host key refuses the node; a missing program names the install.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent_with_args

from cassy_scheduler.client import CassyClient
from cassy_scheduler.protocol.types import BackupType, RestoreType
from cassy_scheduler.storage import open_storage
from cassy_scheduler.storage.envelope import MAGIC, key_id
from cassy_scheduler.verify import verify_snapshot
from tests.integration.conftest import CREDENTIALS
from tests.integration.test_object_storage import options_of, storage_table
from tests.integration.test_restore_helpers import (
    checksum_on,
    identity,
    restore_keys,
    staging_leftovers,
    wait_for_session,
    wait_restore,
    wait_until,
    wipe,
)
from tests.integration.test_restore_node import make_backup
from tests.integration.test_server_backup import finish_all
from tests.serverproc import NODETOOL, ServerProcess, server_head
from tools.localcluster import LocalCluster
from tools.peers.objectservers import ObjectServer, free_port, s3_client
from tools.peers.sshd import SshHosts, keygen

pytestmark = [
    pytest.mark.ssh,
    pytest.mark.three_nodes,
    pytest.mark.object_storage,
    pytest.mark.usefixtures("s3_credentials"),
]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory, cluster3: LocalCluster) -> Iterator[SshHosts]:
    """An sshd per node, on the node's address and one port, with the node's settings."""
    ssh = SshHosts(tmp_path_factory.mktemp("ssh"))
    port = free_port(cluster3.specs[0].address)
    try:
        for spec in cluster3.specs:
            ssh.start(
                spec.address,
                {
                    "CASSY_NODE_JMX_HOST": "127.0.0.1",
                    "CASSY_NODE_JMX_PORT": str(spec.jmx_port),
                    "CASSY_NODE_NODETOOL": str(NODETOOL),
                    "CASSY_NODE_CASSANDRA_YAML": str(spec.conf_dir / "cassandra.yaml"),
                },
                port=port,
            )
        yield ssh
    finally:
        ssh.stop()


def ssh_server_toml(work: Path, hosts: SshHosts, storage: str, *, extra: str = "") -> Path:
    """A server config naming no node: every node is reached over SSH ([nodes.ssh])."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "server.toml"
    path.write_text(server_head(storage) + "\n" + hosts.nodes_toml(idle_timeout="30s") + extra)
    return path


#: The S3 server's objects are sealed (client-side encryption) by the node programs, which
#: send them to the store themselves: the server's own I/O shows it never saw the bytes.
SEALING_KEY = os.urandom(32)


@pytest.fixture(scope="module")
def ssh_server(
    tmp_path_factory: pytest.TempPathFactory, hosts: SshHosts, moto: ObjectServer
) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("ssh-server")
    key = work / "backup.key"
    key.write_text(SEALING_KEY.hex())
    key.chmod(0o600)
    sealed = f'\n[storage.client_encryption]\nkey_file = "{key}"\n'
    config = ssh_server_toml(work, hosts, storage_table("s3", moto) + sealed)
    server = ServerProcess(config, work / "server.log").start()
    try:
        yield server
    finally:
        server.stop()


def _io(pid: int) -> int:
    """Bytes the process read and wrote through any file, pipe or socket (rchar + wchar)."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["rchar"]) + int(fields["wchar"])


def _agreed(session: Session) -> None:
    """Every node has the new schema: just after the cluster restarted, a coordinator may
    not have it yet when the DDL returns."""
    control = session.cluster.control_connection
    assert control is not None and control.wait_for_schema_agreement(wait_time=120)


def _blob_rows(session: Session, keyspace: str, count: int, size: int) -> None:
    session.execute(f"CREATE TABLE IF NOT EXISTS {keyspace}.blobs (k int PRIMARY KEY, v blob)")
    _agreed(session)
    insert = session.prepare(f"INSERT INTO {keyspace}.blobs (k, v) VALUES (?, ?)")
    rows = [(k, random.randbytes(size)) for k in range(count)]
    execute_concurrent_with_args(session, insert, rows, concurrency=32)


def _keyspace(session: Session, name: str) -> str:
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {name} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 3}"
    )
    _agreed(session)
    return name


def test_each_node_sends_its_backup_straight_to_s3_and_the_server_moves_under_one_percent(
    ssh_server: ServerProcess, session3: Session, cluster3: LocalCluster, moto: ObjectServer
) -> None:
    keyspace = _keyspace(session3, f"sshbulk{os.getpid()}")
    _blob_rows(session3, keyspace, 1500, 8192)  # 12 MB on each node (RF 3)
    assert ssh_server.proc is not None
    with CassyClient(ssh_server.address, timeout_s=120) as client:
        registered = client.register_cluster(cluster3.addresses[0])
        assert sorted(registered.target_ips) == sorted(cluster3.addresses)
        before = _io(ssh_server.proc.pid)
        ack = client.take_backup(registered.cluster_id, BackupType.NODE_SNAPSHOT)
        statuses = finish_all(client, ack)
        moved = _io(ssh_server.proc.pid) - before
        assert statuses == dict.fromkeys(cluster3.addresses, "COMPLETED"), statuses
        # Every file each manifest names is in the store, at its size (the object-storage
        # suite checks SHA-256s by reading back; here the bytes matter, not the reads).
        raw = open_storage(options_of("s3", moto))
        storage = open_storage(
            dataclasses.replace(options_of("s3", moto), client_keys=(SEALING_KEY,))
        )
        prefix = f"node-backup/{registered.cluster_id}/{ack.snapshot_id}/"
        assert all(raw.get_bytes(info.key).startswith(MAGIC) for info in raw.list(prefix))
        listed = {
            info.key: info.size
            for info in storage.list(f"node-backup/{registered.cluster_id}/{ack.snapshot_id}/")
        }
        manifests = [
            json.loads(storage.get_bytes(key)) for key in listed if "/upload-manifests/" in key
        ]
        assert len(manifests) == 3
        assert {m["encryption"]["key_id"] for m in manifests} == {key_id(SEALING_KEY)}
        for manifest in manifests:
            for entry in manifest["files"]:
                assert listed.get(entry["key"]) == entry["size"], entry
        stored = sum(listed.values())
        assert stored > 3 * 12_000_000
        print(f"server I/O {moved} bytes for {stored} stored ({moved / stored:.3%})")
        assert moved < stored / 100, (moved, stored)

        incremental = client.take_backup(
            registered.cluster_id, BackupType.NODE_INCREMENTAL, ack.snapshot_id
        )
        assert finish_all(client, incremental) == dict.fromkeys(cluster3.addresses, "COMPLETED")
    log = ssh_server.output()
    assert "files_sent=" in log
    for secret in CREDENTIALS.values():
        assert secret not in log
    session3.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


def _node_programs(hosts: SshHosts, address: str) -> list[int]:
    """PIDs of node programs running under the sshd of `address` (any depth)."""
    root = hosts.servers[address].process.pid
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(stat[1])
                commands[int(entry.name)] = (entry / "cmdline").read_bytes().decode()
            except OSError:
                continue

    def under(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == root:
                return True
        return False

    return [p for p, c in commands.items() if "node\0backup" in c and under(p)]


def _nothing_left_of(moto: ObjectServer, cluster_id: str, snapshot_id: str, node: str) -> None:
    """No manifest of the node's upload, and no multipart upload left open."""
    bucket = s3_client(moto)
    prefix = f"killed/node-backup/{cluster_id}/{snapshot_id}/{node}/upload-manifests/"
    assert bucket.list_objects_v2(Bucket="backups", Prefix=prefix).get("KeyCount", 0) == 0
    uploads = bucket.list_multipart_uploads(Bucket="backups", Prefix="killed/")
    assert uploads.get("Uploads", []) == []


def test_a_lost_session_or_a_killed_server_fails_the_node_and_leaves_nothing(
    tmp_path: Path,
    hosts: SshHosts,
    moto: ObjectServer,
    cluster3: LocalCluster,
    session3: Session,
) -> None:
    """sshd's session processes killed mid-upload: that node FAILED with the reason, the
    others COMPLETED, its program stopped. Then the server itself SIGKILLed mid-upload: the
    node programs stop, and the restarted server records the rows FAILED."""
    keyspace = _keyspace(session3, f"sshkill{os.getpid()}")
    _blob_rows(session3, keyspace, 1000, 8192)
    slow = cluster3.specs[1].address
    config = ssh_server_toml(
        tmp_path,
        hosts,
        storage_table("s3", moto, uri="s3://backups/killed"),
        extra=f'\n[nodes.hosts."{slow}".ssh]\nmax_bandwidth = "1MB/s"\n',
    )
    server = ServerProcess(config, tmp_path / "server.log").start()
    try:
        with CassyClient(server.address, timeout_s=120) as client:
            registered = client.register_cluster(cluster3.addresses[0])
            ack = client.take_backup(registered.cluster_id, BackupType.NODE_SNAPSHOT)
            wait_until(lambda: bool(_node_programs(hosts, slow)), "the slow node's upload")
            time.sleep(3)  # well into its 8 MB at 1 MB/s
            for pid in hosts.servers[slow].sessions():
                os.kill(pid, signal.SIGKILL)
            statuses = finish_all(client, ack, timeout_s=120)
            rows = {r.target_ip: r for r in client.list_backups(snapshot_id=ack.snapshot_id)}
            assert statuses[slow] == "FAILED", statuses
            reason = rows[slow].reason
            assert "SSH session" in reason and slow in reason, reason
            assert [s for n, s in statuses.items() if n != slow] == ["COMPLETED", "COMPLETED"]
            wait_until(lambda: not _node_programs(hosts, slow), "the node program to stop", 60)
            _nothing_left_of(moto, registered.cluster_id, ack.snapshot_id, slow)

            again = client.take_backup(registered.cluster_id, BackupType.NODE_SNAPSHOT)
            wait_until(lambda: bool(_node_programs(hosts, slow)), "the slow node's upload")
            time.sleep(2)
        server.kill()
        wait_until(
            lambda: not any(_node_programs(hosts, a) for a in cluster3.addresses),
            "every node program to stop after the server died",
            60,
        )
        server = ServerProcess(config, tmp_path / "server.log").start()
        with CassyClient(server.address, timeout_s=120) as client:
            rows = {r.target_ip: r for r in client.list_backups(snapshot_id=again.snapshot_id)}
        assert rows[slow].status.name == "FAILED", rows[slow]
        assert all(r.status.is_final for r in rows.values()), rows
        _nothing_left_of(moto, registered.cluster_id, again.snapshot_id, slow)
    finally:
        server.stop()
        session3.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


def test_file_storage_gets_every_byte_through_the_ssh_sessions(
    tmp_path: Path, hosts: SshHosts, cluster3: LocalCluster, session3: Session
) -> None:
    keyspace = _keyspace(session3, f"sshfile{os.getpid()}")
    _blob_rows(session3, keyspace, 300, 4096)
    storage_dir = tmp_path / "storage"
    config = ssh_server_toml(tmp_path, hosts, f'[storage]\nuri = "{storage_dir.as_uri()}"\n')
    server = ServerProcess(config, tmp_path / "server.log").start()
    try:
        with CassyClient(server.address, timeout_s=120) as client:
            registered = client.register_cluster(cluster3.addresses[0])
            ack = client.take_backup(registered.cluster_id, BackupType.NODE_SNAPSHOT)
            assert finish_all(client, ack) == dict.fromkeys(cluster3.addresses, "COMPLETED")
        report = verify_snapshot(
            open_storage(storage_dir.as_uri()), registered.cluster_id, ack.snapshot_id
        )
        assert report.ok and len(report.nodes) == 3, report
    finally:
        server.stop()
        session3.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


def test_a_changed_host_key_a_missing_program_or_a_host_down_fails_the_node_with_the_fix(
    tmp_path: Path, hosts: SshHosts, moto: ObjectServer, cluster3: LocalCluster
) -> None:
    first, second, third = cluster3.specs
    impostor = keygen(tmp_path / "impostor").with_suffix(".pub").read_text().split()
    port = hosts.servers[first.address].port
    known = tmp_path / "known_hosts"
    lines = hosts.known_hosts.read_text().splitlines()
    known.write_text(
        "\n".join(
            f"[{first.address}]:{port} {impostor[0]} {impostor[1]}"
            if line.startswith(f"[{first.address}]")
            else line
            for line in lines
        )
        + "\n"
    )
    config = ssh_server_toml(
        tmp_path,
        hosts,
        storage_table("s3", moto, uri="s3://backups/refused"),
        extra=(
            f'\n[nodes.hosts."{first.address}".ssh]\nknown_hosts = "{known}"\n'
            f'\n[nodes.hosts."{second.address}".ssh]\nprogram = ["/opt/none/cassy-scheduler"]\n'
        ),
    )
    server = ServerProcess(config, tmp_path / "server.log").start()
    try:
        with CassyClient(server.address, timeout_s=120) as client:
            registered = client.register_cluster(third.address)
            sessions = hosts.servers[third.address].sessions()  # before their parent goes
            hosts.servers[third.address].stop()  # and now its host is down
            for pid in sessions:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                ack = client.take_backup(registered.cluster_id, BackupType.NODE_SNAPSHOT)
                statuses = finish_all(client, ack)
            finally:
                hosts.servers[third.address].restart()
            rows = {r.target_ip: r for r in client.list_backups(snapshot_id=ack.snapshot_id)}
    finally:
        server.stop()
    changed = rows[first.address].reason
    assert statuses[first.address] == "FAILED" and "CHANGED" in changed, changed
    assert changed.count("SHA256:") == 2 and "ssh-keygen" in changed
    missing = rows[second.address].reason
    assert statuses[second.address] == "FAILED" and "not installed" in missing, missing
    assert "pip install" in missing
    down = rows[third.address].reason
    assert statuses[third.address] == "FAILED" and "cannot connect" in down, down
    assert "sshd listens" in down
    assert json.dumps(changed)  # a reason is plain text


def test_one_node_then_every_node_restored_over_ssh(
    ssh_server: ServerProcess, cluster3: LocalCluster, session3: Session
) -> None:
    """From the server's config alone (no paths): each node program reads its own
    cassandra.yaml, stages, checks and moves the files; rows and identities come back."""
    keyspace = _keyspace(session3, f"sshrestore{os.getpid()}")
    with CassyClient(ssh_server.address, timeout_s=120) as client:
        backup = make_backup(client, cluster3, session3, keyspace)
        numbers = [spec.number for spec in cluster3.specs]
        identities = {n: identity(cluster3, n) for n in numbers}

        one = cluster3.specs[0]
        for n in numbers:  # one stop for both restores: Cassandra's starts are the slow part
            cluster3.stop(n)
        try:
            for spec in cluster3.specs:
                wipe(spec)
            before = restore_keys(client, backup.cluster_id, backup.snapshot_id)
            client.restore_backup(
                backup.cluster_id, backup.snapshot_id, RestoreType.NODE, [one.address]
            )
            alone = wait_restore(client, backup.cluster_id, backup.snapshot_id, before)
            assert alone == {one.address: "COMPLETED"}
            assert any(one.data_dir.iterdir())
            wipe(one)  # and now every node at once
            before = restore_keys(client, backup.cluster_id, backup.snapshot_id)
            client.restore_backup(backup.cluster_id, backup.snapshot_id, RestoreType.NODE)
            statuses = wait_restore(client, backup.cluster_id, backup.snapshot_id, before)
        finally:
            cluster3.start_all(timeout=420)
            wait_for_session(session3)
    assert statuses == dict.fromkeys(cluster3.addresses, "COMPLETED")
    for spec in cluster3.specs:
        assert staging_leftovers(spec) == []
        assert checksum_on(spec.address, keyspace) == backup.at_incremental, spec.address
    assert {n: identity(cluster3, n) for n in numbers} == identities
    session3.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
