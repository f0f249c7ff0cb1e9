"""One run of the node program on a remote host: the request sent, its events read to the end.

Each operation opens its own channel on the host's SSH connection and runs
`cassy-scheduler node OP --protocol 2` there. The node program answers with progress events,
storage calls (answered from the server's storage when it has no direct route to storage)
and, last, one result or one error. A session that ends without either, or that stays silent
past the target's idle timeout (the program speaks at least every few seconds), fails its
node with the reason; the remote program sees its session end and stops by itself.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import paramiko

from cassy_scheduler import version as installed_version
from cassy_scheduler.node.executor import NodeError, NodetoolError
from cassy_scheduler.node.progress import Progress
from cassy_scheduler.node.ssh import SshConnections, SshError
from cassy_scheduler.node.sshtarget import SshTarget
from cassy_scheduler.node.storagechannel import serve_call
from cassy_scheduler.node.wire import PROTOCOL_VERSION, Message, PeerGoneError, Wire, WireError
from cassy_scheduler.storage.base import Storage

_log = logging.getLogger(__name__)

_POLL_S = 0.5
LAST_WORD_S = 4.0  # a cancelled program's own result or error, awaited this long
_STDERR_KEPT = 4000
_NOT_FOUND_EXIT = 127


class NodeProgramError(NodeError):
    """The node program reported that its work failed; the message is its reason."""


class SessionLostError(SshError):
    """The SSH session ended, or fell silent, before the node program said how it went."""


class RemoteCancelledError(NodeError):
    """The server stopped waiting (it is shutting down); the remote program was told to stop."""


def install_hint(target: SshTarget) -> str:
    return (
        f"install it there with `pip install 'cassy-scheduler=={installed_version()}'` (the "
        "server's version), or set program in [nodes.ssh] to its full path"
    )


def run_remote(
    connections: SshConnections,
    target: SshTarget,
    op: str,
    request: Message,
    *,
    storage: Storage | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    progress: Progress | None = None,
) -> Message:
    """Run `op` on the target's host and return its result message."""
    channel = connections.open_channel(target, ["node", op, "--protocol", str(PROTOCOL_VERSION)])
    session = _Session(channel, target, op, storage)
    try:
        try:
            session.wire.send(request)
        except PeerGoneError as exc:  # it may have refused before reading: say why
            raise session.refusal_or_lost(str(exc)) from None
        return session.wait(cancelled, progress)
    finally:
        session.close()


class _Session:
    def __init__(
        self, channel: paramiko.Channel, target: SshTarget, op: str, storage: Storage | None
    ) -> None:
        self.channel = channel
        self.target = target
        self.op = op
        self.storage = storage
        self.wire = Wire(channel.makefile("rb"), channel.makefile_stdin("wb"))
        self.events: queue.Queue[Message] = queue.Queue()
        self.heard = time.monotonic()
        self.busy = False
        self.stderr = bytearray()
        self._reader = threading.Thread(target=self._read, name=f"ssh-{op}", daemon=True)
        self._errors = threading.Thread(target=self._read_stderr, name="ssh-stderr", daemon=True)
        self._reader.start()
        self._errors.start()

    def _receive(self) -> tuple[Message, bytes | None]:
        message, data = self.wire.receive()
        self.heard = time.monotonic()
        return message, data

    def _receive_storage(self) -> tuple[Message, bytes | None]:
        """The next message of a storage call in progress: the program's events (its
        heartbeat, progress of other files) may come between a file's chunks. Waiting for
        the node is not the server's own work: the idle timeout counts meanwhile."""
        while True:
            self.busy = False
            try:
                message, data = self._receive()
            finally:
                self.busy = True
            if "event" not in message:
                return message, data
            self.events.put(message)

    def _send_storage(self, message: Message, data: bytes | memoryview | None = None) -> None:
        """An answer to a storage call; a node that stops taking it is the node's silence."""
        self.busy = False
        try:
            self.wire.send(message, data)
        finally:
            self.heard = time.monotonic()
            self.busy = True

    def _read(self) -> None:
        try:
            while True:
                message, data = self._receive()
                if "storage" in message:
                    self._serve(message, data)
                else:
                    self.events.put(message)
        except (PeerGoneError, WireError) as exc:
            self.events.put({"event": "gone", "reason": str(exc)})
        except Exception as exc:  # a bug must end the wait, not leave it to the idle timeout
            _log.exception("reading the node program's messages failed")
            self.events.put({"event": "gone", "reason": f"{type(exc).__name__}: {exc}"})

    def _serve(self, message: Message, data: bytes | None) -> None:
        if self.storage is None:
            self.wire.send({"error": {"kind": "storage", "message": "no storage for this call"}})
            return
        self.busy = True  # the server is working for the node: its silence is ours
        try:
            serve_call(self.storage, message, data, _Answers(self), self._receive_storage)
        finally:
            self.heard = time.monotonic()
            self.busy = False

    def _read_stderr(self) -> None:
        while True:
            try:
                part = self.channel.recv_stderr(4096)
            except OSError:
                return
            if not part:
                return
            self.stderr += part
            del self.stderr[:-_STDERR_KEPT]

    def wait(self, cancelled: Callable[[], bool], progress: Progress | None) -> Message:
        """The program's result; when `cancelled`, its input is closed (it stops at its next
        step) and its own last word is still awaited a while, so a node that finished
        anyway is recorded as it ended."""
        stop_by: float | None = None
        stopped = RemoteCancelledError(
            f"{self.op} on {self.target.where} stopped: the server is stopping"
        )
        while True:
            try:
                event = self.events.get(timeout=_POLL_S)
            except queue.Empty:
                now = time.monotonic()
                if stop_by is None and cancelled():
                    with contextlib.suppress(PeerGoneError):
                        self.wire.send({"stop": True})  # it stops at its next step
                    stop_by = now + LAST_WORD_S
                if stop_by is not None and now > stop_by:
                    raise stopped from None
                busy = self.busy  # before `heard`: the reader sets `heard`, then clears busy
                silent = now - self.heard
                if not busy and silent > self.target.idle_timeout_s:
                    raise SessionLostError(
                        f"the node program on {self.target.where} said nothing for "
                        f"{silent:.0f} s during {self.op}: its host or the network is gone; "
                        "the node is failed (idle_timeout in [nodes.ssh] sets how long to wait)"
                    ) from None
                continue
            kind = event.get("event")
            if kind == "progress" and progress is not None:
                progress(int(event.get("files", 0)), int(event.get("bytes", 0)))
            elif kind == "result":
                return event
            elif kind == "error":
                raise self.failure(event)
            elif kind == "gone":
                raise stopped if stop_by is not None else self.lost(str(event.get("reason")))

    def failure(self, event: Message) -> NodeError:
        message = str(event.get("message") or "(no reason given)")
        if event.get("kind") == "nodetool":
            return NodetoolError(
                self.target.host,  # the program's own address is its JMX host: localhost
                tuple(event.get("args") or ()),
                event.get("exit_code"),
                str(event.get("output") or message),
            )
        return NodeProgramError(message)

    def refusal_or_lost(self, reason: str) -> NodeError:
        """The program's own error if it sent one before its input closed, else lost."""
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            if event.get("event") == "error":
                return self.failure(event)
            if event.get("event") == "gone":
                break
        return self.lost(reason)

    def lost(self, reason: str) -> NodeError:
        """Why the session ended without a result: the program missing, too old, or gone."""
        exit_status = self._exit_status()
        said = self.stderr.decode(errors="replace").strip()
        program = self.target.program[0]
        if exit_status == _NOT_FOUND_EXIT:
            return NodeProgramError(
                f"the node program {program!r} is not installed on {self.target.where} "
                f"({said or 'command not found'}): {install_hint(self.target)}"
            )
        if exit_status == 2 and "No such command" in said:
            return NodeProgramError(
                f"the cassy-scheduler on {self.target.where} has no `node` command (an older "
                f"version): {install_hint(self.target)}"
            )
        tail = f"; it said: {said[-600:]}" if said else ""
        status = f", exit status {exit_status}" if exit_status is not None else ""
        return SessionLostError(
            f"the SSH session to {self.target.where} ended during {self.op} before the node "
            f"program finished ({reason}{status}){tail}"
        )

    def _exit_status(self) -> int | None:
        deadline = time.monotonic() + 2.0
        while not self.channel.exit_status_ready():
            if time.monotonic() > deadline or self.channel.closed:
                break
            time.sleep(0.05)
        if self.channel.exit_status_ready():
            status = self.channel.recv_exit_status()
            return None if status == -1 else status
        return None

    def close(self) -> None:
        self.channel.close()
        self._reader.join(5.0)
        self._errors.join(1.0)


class _Answers:
    """The session's wire as serve_call sees it: sends timed as the node's, not ours."""

    def __init__(self, session: _Session) -> None:
        self._session = session

    def send(self, message: Message, data: bytes | memoryview | None = None) -> None:
        self._session._send_storage(message, data)


def result_field(result: Message, name: str) -> Any:
    """A field of a result message; its absence means a program of another version."""
    if name not in result:
        raise NodeProgramError(f"the node program's result has no {name!r}: another version?")
    return result[name]
