"""`cassy-scheduler node OP`: the node side of a server that reaches its nodes over SSH.

It reads one request (a JSON line) on stdin, does the work on this host (nodetool against
the local JMX port, the data directory, uploads straight to object storage or through the
session to the server's storage, restores into place) and writes JSON lines on stdout:
`progress` events (at least every few seconds, so a silent session means a lost one), then
exactly one `result` or `error`. When its session ends (stdin closes) it stops at the next
file, aborting any upload in flight, and writes no manifest. The protocol is in docs/ssh.md.

Where the local Cassandra listens: the request's `environment` (the server's settings for
this node), else this host's own environment, else the defaults: CASSY_NODE_JMX_HOST
(127.0.0.1), CASSY_NODE_JMX_PORT (7199), CASSY_NODE_NODETOOL (`nodetool`). Run through sudo,
it takes from a request only settings that name no command (SUDO_SETTINGS).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, BinaryIO

from cassy_scheduler import version as installed_version
from cassy_scheduler.node.datadir import remove_snapshot
from cassy_scheduler.node.executor import LocalExecutor, NodeEndpoint, NodetoolError
from cassy_scheduler.node.nodetool import Nodetool
from cassy_scheduler.node.sshtarget import SETTINGS, SUDO_SETTINGS
from cassy_scheduler.node.storagechannel import ChannelStorage, reply_queue
from cassy_scheduler.node.wire import PROTOCOL_VERSION, Message, PeerGoneError, Wire, WireError
from cassy_scheduler.node.work import (
    BackupOrder,
    RestoreOrder,
    back_up,
    directories_of,
    node_facts,
    restore,
    restore_problems,
)
from cassy_scheduler.storage.base import Storage
from cassy_scheduler.storage.options import StorageOptions
from cassy_scheduler.storage.uri import open_storage

_log = logging.getLogger(__name__)

OPERATIONS = (
    "hello",
    "nodetool",
    "facts",
    "remove-snapshots",
    "backup",
    "restore-check",
    "restore",
)
HEARTBEAT_S = 5.0
_PROGRESS_EVERY_S = 1.0


class _Session:
    """The program's two streams: requests and storage answers in, events out."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO) -> None:
        self.wire = Wire(reader, writer)
        self.ended = threading.Event()  # the server went away: stop
        self._put, self.take = reply_queue()
        self._counts = (0, 0)
        self._sent_at = 0.0
        self._lock = threading.Lock()
        self._executors: list[LocalExecutor] = []

    def listen(self) -> None:
        """After the request: everything else that arrives is a storage answer."""
        threading.Thread(target=self._read, name="node-input", daemon=True).start()
        threading.Thread(target=self._beat, name="node-heartbeat", daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                message, data = self.wire.receive()
                if message.get("stop"):  # the server is stopping: end at the next step
                    self._stop()
                    continue
                self._put((message, data))
        except (PeerGoneError, WireError):
            pass
        self._stop()
        self._put(None)  # type: ignore[arg-type]

    def _stop(self) -> None:
        self.ended.set()
        with self._lock:
            executors = list(self._executors)
        for executor in executors:  # a nodetool on a hung JMX must not outlive the session
            executor.stop_running()

    def nodetool(self, timeout_s: float) -> Nodetool:
        """nodetool against this host's Cassandra, a process per command, killed when the
        session ends."""
        host, port = _local_jmx()
        executor = LocalExecutor(shlex.split(os.environ.get("CASSY_NODE_NODETOOL", "nodetool")))
        with self._lock:
            self._executors.append(executor)
        if self.ended.is_set():
            executor.stop_running()
        endpoint = NodeEndpoint(address=host, jmx_host=host, jmx_port=port)
        return Nodetool(executor, endpoint, timeout_s)

    def _beat(self) -> None:
        while not self.ended.wait(HEARTBEAT_S):
            self._send_progress(force=True)

    def progress(self, files: int, done: int) -> None:
        with self._lock:
            self._counts = (files, done)
        self._send_progress(force=False)

    def _send_progress(self, *, force: bool) -> None:
        with self._lock:
            now = time.monotonic()
            if not force and now - self._sent_at < _PROGRESS_EVERY_S:
                return
            self._sent_at = now
            files, done = self._counts
        try:
            self.wire.send({"event": "progress", "files": files, "bytes": done})
        except PeerGoneError:
            self.ended.set()

    def storage(self, spec: dict[str, Any]) -> Storage:
        if "channel" in spec:
            sealed = spec.get("sealed_with")
            return ChannelStorage(
                self.wire, self.take, str(spec["channel"]), str(sealed) if sealed else None
            )
        return open_storage(StorageOptions.from_document(spec["options"]))


def run_program(op: str, protocol: int, reader: BinaryIO, writer: BinaryIO) -> int:
    """Serve one operation; 0 when it succeeded, 1 when it failed (the error was sent)."""
    session = _Session(reader, writer)
    try:
        if protocol != PROTOCOL_VERSION:
            raise _RefusedError(
                "protocol",
                f"this node program ({installed_version()}) speaks protocol "
                f"{PROTOCOL_VERSION}, the server {protocol}: install the server's version here",
            )
        if op not in OPERATIONS:
            raise _RefusedError("protocol", f"unknown operation {op!r}: versions differ")
        request, _ = session.wire.receive()
        _take_settings(request.get("environment") or {})
        session.listen()
        result = _HANDLERS[op](session, request)
        session.wire.send({"event": "result", **result})
        return 0
    except PeerGoneError:
        return 1  # nobody is listening any more
    except _RefusedError as exc:
        return _send_error(session, {"kind": exc.kind, "message": exc.message})
    except NodetoolError as exc:
        return _send_error(
            session,
            {
                "kind": "nodetool",
                "message": str(exc),
                "address": exc.address,
                "args": list(exc.command),
                "exit_code": exc.exit_code,
                "output": exc.output,
            },
        )
    except Exception as exc:  # told to the server, if it still listens
        _log.debug("node operation failed", exc_info=True)
        return _send_error(session, {"kind": type(exc).__name__, "message": _reason(exc)})


def _take_settings(environment: dict[str, Any]) -> None:
    if os.environ.get("SUDO_USER") and set(environment) - SUDO_SETTINGS:
        refused = ", ".join(sorted(set(environment) - SUDO_SETTINGS))
        raise _RefusedError(
            "settings",
            f"run through sudo, this program takes {refused} from its own host only (sudoers "
            "env_keep, or nodetool on sudo's secure_path), not from the server's request",
        )
    unknown = sorted(set(environment) - SETTINGS)
    if unknown:
        raise _RefusedError(
            "settings",
            f"not a node setting: {', '.join(unknown)}; known: {', '.join(sorted(SETTINGS))}",
        )
    os.environ.update({name: str(value) for name, value in environment.items()})


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def _send_error(session: _Session, error: Message) -> int:
    with suppress(PeerGoneError):
        session.wire.send({"event": "error", **error})
    return 1


class _RefusedError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


# --------------------------------------------------------------------------- operations


def _local_jmx() -> tuple[str, int]:
    return (
        os.environ.get("CASSY_NODE_JMX_HOST", "127.0.0.1"),
        int(os.environ.get("CASSY_NODE_JMX_PORT", "7199")),
    )


def _hello(session: _Session, request: Message) -> Message:
    return {"protocol": PROTOCOL_VERSION, "version": installed_version()}


def _run_nodetool(session: _Session, request: Message) -> Message:
    timeout_s = float(request.get("timeout_s", 1800))
    return {"output": session.nodetool(timeout_s).run([str(a) for a in request["args"]])}


def _facts(session: _Session, request: Message) -> Message:
    facts = node_facts(Path(request["data_dir"]), [str(k) for k in request["keyspaces"]])
    return {
        "data_dir": facts.data_dir,
        "keyspaces": list(facts.keyspaces),
        "snapshot_tags": list(facts.snapshot_tags),
    }


def _remove_snapshots(session: _Session, request: Message) -> Message:
    data_dir = Path(request["data_dir"])
    return {"removed": sum(remove_snapshot(data_dir, str(tag)) for tag in request["tags"])}


def _backup(session: _Session, request: Message) -> Message:
    order = BackupOrder.from_message(request["order"])
    done = back_up(
        order,
        session.storage(request["storage"]),
        session.nodetool(float(request.get("nodetool_timeout_s", 1800))),
        cancelled=session.ended.is_set,
        progress=session.progress,
    )
    return done.to_message()


def _restore_check(session: _Session, request: Message) -> Message:
    jmx = _local_jmx()
    cql_host, cql_port = request["cql"]
    dirs = directories_of(request["dirs"])
    return {"problem": restore_problems(dirs, [jmx, (str(cql_host), int(cql_port))])}


def _restore(session: _Session, request: Message) -> Message:
    order = RestoreOrder.from_message(request["order"])
    placed, leftovers = restore(
        order,
        session.storage(request["storage"]),
        cancelled=session.ended.is_set,
        progress=session.progress,
    )
    return {
        "files": placed.files,
        "bytes": placed.bytes,
        "keyspaces": list(placed.keyspaces),
        "leftovers": [str(p) for p in leftovers],
    }


_HANDLERS: dict[str, Callable[[_Session, Message], Message]] = {
    "hello": _hello,
    "nodetool": _run_nodetool,
    "facts": _facts,
    "remove-snapshots": _remove_snapshots,
    "backup": _backup,
    "restore-check": _restore_check,
    "restore": _restore,
}


def main(op: str, protocol: int) -> int:
    """The entry point of `cassy-scheduler node`: stdout carries the protocol only."""
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    return run_program(op, protocol, sys.stdin.buffer, sys.stdout.buffer)
