"""The node program's protocol without SSH: its wire over real pipes, storage calls answered
from a real filesystem store, the program's refusals, orders as JSON, cassandra.yaml."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from cassy_scheduler.node import program
from cassy_scheduler.node.cassandrayaml import CassandraYamlError, node_directories
from cassy_scheduler.node.manifest import BackupIdentity, Manifest, ManifestEntry
from cassy_scheduler.node.placement import NodeDirectories, PlannedFile, RestorePlan
from cassy_scheduler.node.program import run_program
from cassy_scheduler.node.remote import run_remote
from cassy_scheduler.node.sshtarget import SshTarget
from cassy_scheduler.node.storagechannel import ChannelStorage, reply_queue, serve_call
from cassy_scheduler.node.wire import PROTOCOL_VERSION, PeerGoneError, Wire, WireError
from cassy_scheduler.node.work import BackupDone, BackupOrder, RestoreOrder
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage import FilesystemStorage, ObjectNotFoundError, StorageError


def _pipe() -> tuple[BinaryIO, BinaryIO]:
    read, write = os.pipe()
    return os.fdopen(read, "rb"), os.fdopen(write, "wb")


def test_messages_and_their_bytes_cross_a_pipe_whole() -> None:
    reader, writer = _pipe()
    wire_out, wire_in = Wire(io.BytesIO(), writer), Wire(reader, io.BytesIO())
    payload = os.urandom(200_000)  # larger than a pipe's buffer: read while it is written
    sender = threading.Thread(target=lambda: (wire_out.send({"a": 1}, payload), writer.close()))
    sender.start()
    assert wire_in.receive() == ({"a": 1, "data": len(payload)}, payload)
    with pytest.raises(PeerGoneError):
        wire_in.receive()
    sender.join()


def test_a_stream_cut_inside_a_message_or_not_json_is_refused() -> None:
    with pytest.raises(PeerGoneError, match="bytes before"):
        Wire(io.BytesIO(b'{"data": 10}\nabc'), io.BytesIO()).receive()
    with pytest.raises(WireError, match="not a JSON line"):
        Wire(io.BytesIO(b"hello\n"), io.BytesIO()).receive()
    with pytest.raises(WireError, match="not a JSON object"):
        Wire(io.BytesIO(b"[1]\n"), io.BytesIO()).receive()


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[tuple[ChannelStorage, FilesystemStorage]]:
    """A ChannelStorage on the 'node' end of two pipes, answered by a filesystem store."""
    store = FilesystemStorage(tmp_path / "store", durable=False)
    to_server_r, to_server_w = _pipe()
    to_node_r, to_node_w = _pipe()
    server_wire = Wire(to_server_r, to_node_w)
    node_wire = Wire(to_node_r, to_server_w)
    put, take = reply_queue()

    def serve() -> None:
        try:
            while True:
                message, data = server_wire.receive()
                serve_call(store, message, data, server_wire, server_wire.receive)
        except PeerGoneError:
            to_node_w.close()

    def listen() -> None:
        try:
            while True:
                put(node_wire.receive())
        except PeerGoneError:
            put(None)

    threads = [threading.Thread(target=serve), threading.Thread(target=listen)]
    for thread in threads:
        thread.start()
    yield ChannelStorage(node_wire, take, store.uri), store
    to_server_w.close()
    for thread in threads:
        thread.join(10)


def test_every_storage_call_is_answered_from_the_servers_store(
    channel: tuple[ChannelStorage, FilesystemStorage], tmp_path: Path
) -> None:
    remote, store = channel
    source = tmp_path / "Data.db"
    source.write_bytes(os.urandom(3 << 20))
    stored = remote.put_file("a/Data.db", source, sync=False)
    assert store.path_of("a/Data.db").read_bytes() == source.read_bytes()
    assert stored.sha256 == store.sha256("a/Data.db") and stored.size == 3 << 20
    assert remote.stat("a/Data.db") == store.stat("a/Data.db")
    assert remote.stat("a/none") is None
    remote.put_bytes("a/m.json", b"{}")
    assert remote.get_bytes("a/m.json") == b"{}"
    assert [i.key for i in remote.list("a/")] == ["a/Data.db", "a/m.json"]
    copied = remote.copy("a/Data.db", "b/Data.db")
    assert copied is not None and copied.size == 3 << 20
    remote.sync(["a/Data.db", "b/Data.db"])
    fetched = remote.get_file("b/Data.db", tmp_path / "back.db")
    assert (
        fetched.sha256 == stored.sha256
        and (tmp_path / "back.db").read_bytes() == source.read_bytes()
    )
    with pytest.raises(ObjectNotFoundError):
        remote.get_bytes("a/none")
    with pytest.raises(ObjectNotFoundError):
        remote.get_file("a/none", tmp_path / "none")
    assert remote.sha256("a/Data.db") == stored.sha256


def test_a_cancelled_send_leaves_nothing_and_the_channel_still_works(
    channel: tuple[ChannelStorage, FilesystemStorage], tmp_path: Path
) -> None:
    remote, store = channel
    source = tmp_path / "big.db"
    source.write_bytes(os.urandom(4 << 20))
    calls = iter([False, False, True])
    with pytest.raises(StorageError, match="cancelled"):
        remote.put_file("x/big.db", source, cancelled=lambda: next(calls, True))
    assert store.stat("x/big.db") is None
    assert [p.name for p in (tmp_path / "store").rglob("*") if p.is_file()] == []
    assert remote.put_bytes("x/ok", b"1").size == 1


def test_bytes_that_differ_from_what_the_node_read_are_not_stored(tmp_path: Path) -> None:
    store = FilesystemStorage(tmp_path / "store", durable=False)
    answers = io.BytesIO()
    frames = iter(
        [
            ({"storage": "chunk", "data": 3}, b"abc"),
            ({"storage": "end", "size": 3, "sha256": "0" * 64}, None),
        ]
    )
    serve_call(
        store,
        {"storage": "put", "key": "k"},
        None,
        Wire(io.BytesIO(), answers),
        lambda: next(frames),
    )
    answer = json.loads(answers.getvalue())
    assert answer["error"]["kind"] == "storage" and "not stored" in answer["error"]["message"]
    assert store.stat("k") is None


def _program(
    op: str, request: dict[str, object], protocol: int = PROTOCOL_VERSION
) -> tuple[int, list[dict[str, object]]]:
    out = io.BytesIO()
    code = run_program(op, protocol, io.BytesIO(json.dumps(request).encode() + b"\n"), out)
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


def test_the_program_says_its_version_and_refuses_another_protocol_or_operation() -> None:
    code, events = _program("hello", {})
    assert (
        code == 0 and events[-1]["event"] == "result" and events[-1]["protocol"] == PROTOCOL_VERSION
    )
    code, events = _program("hello", {}, protocol=PROTOCOL_VERSION + 1)
    assert (
        code == 1 and events[-1]["kind"] == "protocol" and "install" in str(events[-1]["message"])
    )
    code, events = _program("format-disk", {})
    assert code == 1 and "unknown operation" in str(events[-1]["message"])


def test_through_sudo_a_request_cannot_name_a_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "cassy")
    monkeypatch.setenv("CASSY_NODE_JMX_PORT", "7199")  # restored after: the program sets it
    code, events = _program("hello", {"environment": {"CASSY_NODE_NODETOOL": "/bin/sh -c id"}})
    assert code == 1 and "from its own host only" in str(events[-1]["message"])
    code, events = _program("hello", {"environment": {"CASSY_NODE_JMX_PORT": "7199"}})
    assert code == 0
    code, events = _program(
        "hello",
        {"environment": {"LD_PRELOAD": "x"}},
    )
    assert code == 1


def test_facts_of_a_missing_data_directory_are_an_error_with_the_fix(tmp_path: Path) -> None:
    code, events = _program("facts", {"data_dir": str(tmp_path / "nope"), "keyspaces": ["ks"]})
    assert code == 1 and "does not exist on the node" in str(events[-1]["message"])
    (tmp_path / "data" / "ks").mkdir(parents=True)
    code, events = _program(
        "facts", {"data_dir": str(tmp_path / "data"), "keyspaces": ["ks", "gone"]}
    )
    assert code == 0 and events[-1]["keyspaces"] == ["ks"]


def test_orders_and_results_survive_json() -> None:
    identity = BackupIdentity("c", "s", "10.0.0.1", BackupType.NODE_SNAPSHOT, 5)
    manifest = Manifest(identity, "p/", (ManifestEntry("a/b", "p/a/b", 3, "f" * 64, 1, 2, 3, "e"),))
    order = BackupOrder("snapshot", identity, "/d", ("ks",), ("old",), (manifest,), 2)
    assert BackupOrder.from_message(json.loads(json.dumps(order.to_message()))) == order
    plan = RestorePlan("s", (PlannedFile("k", "src", "t", 3, "f" * 64),), ("m",))
    restore = RestoreOrder(plan, NodeDirectories.beside(Path("/var/lib/c/data")), "tag", 3)
    assert RestoreOrder.from_message(json.loads(json.dumps(restore.to_message()))) == restore
    unplaced = RestoreOrder(plan, None, "tag")
    assert RestoreOrder.from_message(json.loads(json.dumps(unplaced.to_message()))) == unplaced
    done = BackupDone("m", 1, 2, 3, 4, 5, 6, 7, ("old",))
    assert BackupDone.from_message(json.loads(json.dumps(done.to_message()))) == done


def test_every_remote_word_is_quoted_as_one() -> None:
    target = SshTarget(
        "h", program=("/opt/cassy scheduler/bin/cassy", "--x=$(reboot)"), sudo_user="cas;sandra"
    )
    words = shlex.split(target.command_line(["node", "backup"]))
    assert words == [
        "sudo",
        "-n",
        "-u",
        "cas;sandra",
        "--",
        "/opt/cassy scheduler/bin/cassy",
        "--x=$(reboot)",
        "node",
        "backup",
    ]


def test_the_nodes_directories_come_from_its_cassandra_yaml(tmp_path: Path) -> None:
    path = tmp_path / "cassandra.yaml"
    path.write_text(
        "data_file_directories:\n  - /srv/c/data\ncommitlog_directory: /srv/c/cl\n"
        "hints_directory: /srv/c/hints\n"
    )
    dirs = node_directories(path)
    assert (dirs.data_dir, dirs.commitlog_dir, dirs.hints_dir) == (
        Path("/srv/c/data"),
        Path("/srv/c/cl"),
        Path("/srv/c/hints"),
    )
    assert dirs.saved_caches_dir == Path("/var/lib/cassandra/saved_caches") or os.environ.get(
        "CASSANDRA_HOME"
    )
    with pytest.raises(CassandraYamlError, match="CASSY_NODE_CASSANDRA_YAML"):
        node_directories(tmp_path / "missing.yaml")


class _PipeChannel:
    """An SSH channel stand-in made of two pipes, with the real node program on the far end
    (in a thread): what remote.py reads and writes is the program's own stdout and stdin."""

    def __init__(self, op: str) -> None:
        node_in, self._to_node = _pipe()
        self._from_node, node_out = _pipe()
        self.status: int | None = None
        self.closed = False

        def program() -> None:
            self.status = run_program(op, PROTOCOL_VERSION, node_in, node_out)
            node_out.close()

        threading.Thread(target=program, daemon=True).start()

    def makefile(self, mode: str) -> BinaryIO:
        return self._from_node

    def makefile_stdin(self, mode: str) -> BinaryIO:
        return self._to_node

    def recv_stderr(self, size: int) -> bytes:
        return b""

    def exit_status_ready(self) -> bool:
        return self.status is not None

    def recv_exit_status(self) -> int:
        return -1 if self.status is None else self.status

    def shutdown_write(self) -> None:
        self._to_node.close()

    def close(self) -> None:
        self.closed = True
        for stream in (self._to_node, self._from_node):
            with contextlib.suppress(OSError):
                stream.close()


class _Connections:
    def open_channel(self, target: SshTarget, arguments: list[str]) -> _PipeChannel:
        return _PipeChannel(arguments[1])


def test_a_file_storage_upload_through_the_session_survives_heartbeats_between_its_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(program, "HEARTBEAT_S", 0.001)  # an event between every two chunks
    table = tmp_path / "data" / "ks" / ("t-" + "0" * 32) / "snapshots" / "s1"
    table.mkdir(parents=True)
    (table / "nb-1-big-Data.db").write_bytes(os.urandom(5 << 20))
    (table / "manifest.json").write_text("{}")
    identity = BackupIdentity("c", "s1", "10.0.0.1", BackupType.NODE_SNAPSHOT, 5)
    order = BackupOrder("upload", identity, str(tmp_path / "data"), ("ks",), workers=2)
    store = FilesystemStorage(tmp_path / "store", durable=False)
    heard: list[tuple[int, int]] = []
    result = run_remote(
        _Connections(),  # type: ignore[arg-type]
        SshTarget("10.0.0.1"),
        "backup",
        {"order": order.to_message(), "storage": {"channel": store.uri}},
        storage=store,
        progress=lambda files, done: heard.append((files, done)),
    )
    done = BackupDone.from_message(result)
    assert done.files_sent == 2 and done.bytes_sent == (5 << 20) + 2
    stored = store.get_bytes(done.manifest_key)
    assert b"nb-1-big-Data.db" in stored and heard
