"""The node program's wire: JSON lines, each optionally followed by raw bytes.

`cassy-scheduler node` (node/program.py) and the server's side of an SSH session
(node/remote.py) speak it over the session's stdin and stdout. Every message is one JSON
object on one line; a message with a `"data": N` member is followed by exactly N raw bytes,
so file contents travel unencoded. Version 1 of the protocol is described in docs/ssh.md.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol

PROTOCOL_VERSION = 2  # 2: storage keys and seals (client-side encryption)
"""Bumped when a message changes meaning; a server refuses a node program of another one."""

MAX_LINE = 64 << 20
"""A request carries earlier manifests: large, but a line past this is a broken peer."""

Message = dict[str, Any]


class Input(Protocol):
    """A buffered binary stream read from (a pipe, an SSH channel's file)."""

    def readline(self, size: int = -1, /) -> bytes: ...

    def read(self, size: int = -1, /) -> bytes: ...


class Output(Protocol):
    """A binary stream written to."""

    def write(self, data: bytes | memoryview, /) -> object: ...

    def flush(self) -> object: ...


class WireError(Exception):
    """The peer sent something that is not this protocol, or went away mid-message."""


class PeerGoneError(WireError):
    """The stream ended: the other side exited or the connection was lost."""


class Wire:
    """Sends and receives messages over a pair of binary streams; sends are atomic."""

    def __init__(self, reader: Input, writer: Output) -> None:
        self._reader = reader
        self._writer = writer
        self._send_lock = threading.Lock()

    def send(self, message: Message, data: bytes | memoryview | None = None) -> None:
        header = dict(message)
        if data is not None:
            header["data"] = len(data)
        line = json.dumps(header, separators=(",", ":")).encode() + b"\n"
        with self._send_lock:
            try:
                self._writer.write(line)
                if data:
                    self._writer.write(data)
                self._writer.flush()
            except (BrokenPipeError, ConnectionError, OSError, ValueError) as exc:
                raise PeerGoneError(f"the other side stopped reading ({exc})") from exc

    def receive(self) -> tuple[Message, bytes | None]:
        """The next message and its bytes; PeerGoneError at the end of the stream."""
        try:
            line = self._reader.readline(MAX_LINE + 1)
        except (ConnectionError, OSError, ValueError) as exc:
            raise PeerGoneError(f"the connection was lost ({exc})") from exc
        if not line:
            raise PeerGoneError("the other side closed the stream")
        if not line.endswith(b"\n"):
            if len(line) > MAX_LINE:
                raise WireError(f"a message longer than {MAX_LINE} bytes: not this protocol")
            raise PeerGoneError("the stream ended in the middle of a message")
        try:
            message = json.loads(line)
        except ValueError:
            raise WireError(f"not a JSON line: {line[:120]!r}") from None
        if not isinstance(message, dict):
            raise WireError(f"not a JSON object: {line[:120]!r}")
        size = message.get("data")
        if size is None:
            return message, None
        if not isinstance(size, int) or size < 0:
            raise WireError(f"bad data length {size!r}")
        return message, self._read_exactly(size)

    def _read_exactly(self, size: int) -> bytes:
        parts: list[bytes] = []
        left = size
        while left:
            try:
                part = self._reader.read(left)
            except (ConnectionError, OSError, ValueError) as exc:
                raise PeerGoneError(f"the connection was lost ({exc})") from exc
            if not part:
                raise PeerGoneError(f"the stream ended {left} bytes before a message's data")
            parts.append(part)
            left -= len(part)
        return b"".join(parts)
