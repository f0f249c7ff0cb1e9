"""The server's storage, reached by a node program through its SSH session.

With `file://` storage on the server's host, a node reached over SSH cannot write it
directly, so its program works against `ChannelStorage`: each storage call travels as a
message on the session, and the server answers it from its own storage (`serve_call`). A
file is sent as a stream of data messages, hashed on both ends; the server stores it only
when its own SHA-256 of the bytes it received equals the one the node computed from the
bytes it read, so nothing altered on the way is ever kept.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, Protocol

from cassy_scheduler.node.wire import Message, PeerGoneError, Wire, WireError
from cassy_scheduler.storage.base import ObjectInfo, Storage
from cassy_scheduler.storage.errors import (
    InvalidKeyError,
    ObjectNotFoundError,
    StorageError,
    WriteCancelledError,
)
from cassy_scheduler.storage.streams import DEFAULT_BUFFER_SIZE, open_source

_ERRORS: dict[str, type[StorageError]] = {
    "not_found": ObjectNotFoundError,
    "invalid_key": InvalidKeyError,
    "storage": StorageError,
}
"""Which error a refused call raises on the node, by the kind the server gives."""

Reply = tuple[Message, bytes | None]
_QUEUED_REPLIES = 16  # answers (chunks of up to 1 MiB) waiting to be taken


def _kind_of(exc: StorageError) -> str:
    if isinstance(exc, ObjectNotFoundError):
        return "not_found"
    if isinstance(exc, InvalidKeyError):
        return "invalid_key"
    return "storage"


def info_document(info: ObjectInfo) -> dict[str, Any]:
    return {
        "key": info.key,
        "size": info.size,
        "sha256": info.sha256,
        "etag": info.etag,
        "modified": info.modified,
    }


def info_of(document: dict[str, Any]) -> ObjectInfo:
    return ObjectInfo(
        key=str(document["key"]),
        size=int(document["size"]),
        sha256=document.get("sha256"),
        etag=document.get("etag"),
        modified=document.get("modified"),
    )


# --------------------------------------------------------------------------- node side


class ChannelStorage(Storage):
    """Storage calls sent to the server; one call at a time, each waits for its answer.

    `replies` yields the messages the server sent back (the program's reader thread puts
    them there); PeerGoneError when the session is gone.
    """

    def __init__(
        self,
        wire: Wire,
        replies: Callable[[], Reply],
        uri: str,
        sealed_with: str | None = None,
    ) -> None:
        self._wire = wire
        self._replies = replies
        self._uri = uri
        self._sealed_with = sealed_with
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return self._uri

    @property
    def sealed_with(self) -> str | None:
        """The server seals what it stores for us: its key's id, for the manifest."""
        return self._sealed_with

    def _call(self, op: str, **arguments: Any) -> Reply:
        with self._lock:
            self._wire.send({"storage": op, **arguments})
            return self._answer()

    def _answer(self) -> Reply:
        message, data = self._replies()
        error = message.get("error")
        if error is not None:
            raise _ERRORS.get(error.get("kind"), StorageError)(str(error.get("message")))
        return message, data

    def put_file(
        self,
        key: str,
        local_path: Path,
        *,
        sync: bool = True,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> ObjectInfo:
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray(DEFAULT_BUFFER_SIZE)
        view = memoryview(buffer)
        with self._lock, open_source(key, local_path) as source:
            self._wire.send({"storage": "put", "key": key, "sync": sync})
            while True:
                if cancelled():
                    self._abort()
                    raise WriteCancelledError(f"upload of {key!r} was cancelled")
                try:
                    count = source.readinto(buffer)
                except OSError:
                    self._abort()  # the server must not wait for the rest
                    raise
                if not count:
                    break
                chunk = view[:count]
                digest.update(chunk)
                self._wire.send({"storage": "chunk"}, chunk)
                size += count
            self._wire.send({"storage": "end", "size": size, "sha256": digest.hexdigest()})
            message, _ = self._answer()
        return info_of(message["info"])

    def _abort(self) -> None:
        """End a `put` without storing it: the server drops what it got and answers."""
        self._wire.send({"storage": "abort"})
        with suppress(StorageError):
            self._answer()

    def get_file(self, key: str, local_path: Path, *, sync: bool = True) -> ObjectInfo:
        digest = hashlib.sha256()
        size = 0
        with self._lock:
            self._wire.send({"storage": "get", "key": key})
            self._answer()  # the object exists: its chunks follow
            try:
                out = open(local_path, "wb")  # noqa: SIM115 (closed below, or on error)
            except OSError:
                self._skip_to_end()
                raise
            with out:
                while True:
                    message, data = self._answer()
                    if message.get("end"):
                        break
                    chunk = data or b""
                    digest.update(chunk)
                    try:
                        out.write(chunk)
                    except OSError:
                        self._skip_to_end()  # the next call must not read these chunks
                        raise
                    size += len(chunk)
                out.flush()
                if sync:
                    os.fsync(out.fileno())
        return ObjectInfo(key=key, size=size, sha256=digest.hexdigest())

    def _skip_to_end(self) -> None:
        """Read a download's remaining answers up to its end (or the server's error)."""
        while True:
            message, _ = self._replies()
            if message.get("end") or "error" in message:
                return

    def stat(self, key: str) -> ObjectInfo | None:
        message, _ = self._call("stat", key=key)
        found = message.get("info")
        return None if found is None else info_of(found)

    def sha256(self, key: str) -> str:
        message, _ = self._call("sha256", key=key)
        return str(message["sha256"])

    def sealed_by(self, key: str) -> str | None:
        if self._sealed_with is None:
            return None  # the server's store seals nothing
        message, _ = self._call("sealed_by", key=key)
        found = message.get("key_id")
        return None if found is None else str(found)

    def chunks(self, key: str) -> Iterator[bytes]:
        yield self.get_bytes(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        message, _ = self._call("list", prefix=prefix)
        yield from (info_of(item) for item in message["items"])

    def delete(self, key: str) -> None:
        self._call("delete", key=key)

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        with self._lock:
            self._wire.send({"storage": "put_bytes", "key": key}, data)
            message, _ = self._answer()
        return info_of(message["info"])

    def get_bytes(self, key: str) -> bytes:
        _, data = self._call("get_bytes", key=key)
        return data or b""

    def sync(self, keys: Sequence[str]) -> None:
        self._call("sync", keys=list(keys))

    def copy(self, source_key: str, target_key: str) -> ObjectInfo | None:
        message, _ = self._call("copy", source=source_key, target=target_key)
        copied = message.get("info")
        return None if copied is None else info_of(copied)


def reply_queue() -> tuple[Callable[[Reply], None], Callable[[], Reply]]:
    """A hand-over from the program's reader thread to ChannelStorage: put, and take (which
    raises PeerGoneError once the reader saw the end of the session)."""
    # Bounded: a download arrives no faster than it is written, by SSH's flow control.
    replies: queue.Queue[Reply | None] = queue.Queue(maxsize=_QUEUED_REPLIES)

    def put(reply: Reply | None) -> None:
        replies.put(reply)

    def take() -> Reply:
        reply = replies.get()
        if reply is None:
            replies.put(None)  # every later call sees the end too
            raise PeerGoneError("the server closed the session")
        return reply

    return put, take


# ------------------------------------------------------------------------- server side


class _ChunkSource:
    """The bytes of one `put`, read from the session message by message; it raises when the
    node aborts, or when the bytes differ from the node's count or SHA-256 at the end."""

    def __init__(self, key: str, receive: Callable[[], Reply]) -> None:
        self._key = key
        self._receive = receive
        self._digest = hashlib.sha256()
        self._size = 0
        self._pending = memoryview(b"")
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    def readinto(self, buffer: bytearray, /) -> int:
        while not self._pending:
            if self._ended:
                return 0
            message, data = self._receive()
            op = message.get("storage")
            if op == "chunk":
                self._pending = memoryview(data or b"")
                self._digest.update(self._pending)
                self._size += len(self._pending)
            elif op == "end":
                self._ended = True
                self._check_end(message)
            elif op == "abort":
                self._ended = True
                raise WriteCancelledError(f"the node stopped sending {self._key!r}")
            else:
                raise WireError(f"unexpected {op!r} in the middle of sending {self._key!r}")
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def _check_end(self, message: Message) -> None:
        if message.get("size") != self._size or message.get("sha256") != self._digest.hexdigest():
            raise StorageError(
                f"{self._key!r} arrived as {self._size} bytes with SHA-256 "
                f"{self._digest.hexdigest()}, but the node read {message.get('size')} bytes "
                f"with SHA-256 {message.get('sha256')}: not stored; run the backup again"
            )


class Sender(Protocol):
    def send(self, message: Message, data: bytes | memoryview | None = None) -> None: ...


def serve_call(
    storage: Storage,
    message: Message,
    data: bytes | None,
    wire: Sender,
    receive: Callable[[], Reply],
) -> None:
    """Answer one storage call of a node program from `storage`; a refusal is its answer."""
    op = message["storage"]
    try:
        _serve(storage, op, message, data, wire, receive)
    except StorageError as exc:
        wire.send({"error": {"kind": _kind_of(exc), "message": str(exc)}})
    except OSError as exc:  # the server's disk, read outside the backend's own checks
        wire.send({"error": {"kind": "storage", "message": f"{exc.strerror or exc}: {op}"}})


def _serve(  # noqa: PLR0917 (one call's parts)
    storage: Storage,
    op: str,
    message: Message,
    data: bytes | None,
    wire: Sender,
    receive: Callable[[], Reply],
) -> None:
    if op == "put":
        source = _ChunkSource(message["key"], receive)
        try:
            info = storage.put_stream(message["key"], source, sync=bool(message.get("sync")))
        except (StorageError, OSError):
            while not source.ended:  # the node sends to the end before it reads the answer
                try:
                    source.readinto(bytearray(DEFAULT_BUFFER_SIZE))
                except StorageError:
                    break
            raise
        wire.send({"info": info_document(info)})
    elif op == "get":
        chunks = storage.chunks(message["key"])
        first = next(chunks, None)
        wire.send({"ok": True})
        if first is not None:
            wire.send({}, first)
            for chunk in chunks:
                wire.send({}, chunk)
        wire.send({"end": True})
    elif op == "stat":
        found = storage.stat(message["key"])
        wire.send({"info": None if found is None else info_document(found)})
    elif op == "sha256":
        wire.send({"sha256": storage.sha256(message["key"])})
    elif op == "sealed_by":
        wire.send({"key_id": storage.sealed_by(message["key"])})
    elif op == "list":
        wire.send({"items": [info_document(i) for i in storage.list(message.get("prefix", ""))]})
    elif op == "delete":
        storage.delete(message["key"])
        wire.send({"ok": True})
    elif op == "put_bytes":
        wire.send({"info": info_document(storage.put_bytes(message["key"], data or b""))})
    elif op == "get_bytes":
        wire.send({"ok": True}, storage.get_bytes(message["key"]))
    elif op == "sync":
        storage.sync(list(message["keys"]))
        wire.send({"ok": True})
    elif op == "copy":
        copied = storage.copy(message["source"], message["target"])
        wire.send({"info": None if copied is None else info_document(copied)})
    else:
        raise StorageError(f"unknown storage call {op!r}: the node program is of another version")
