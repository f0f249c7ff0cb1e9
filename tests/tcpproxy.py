"""A TCP proxy on loopback in front of a real port, for tests that need a slow or a refusing
peer: each new connection waits `delay_s` before it is passed on, or is closed at once while
`refusing` is set. Connections already passed on are left alone, except that while `held`
is cleared no byte goes either way on any connection (a store that stops answering mid-call).
`hold_at` holds it at a chosen request, so that a test can stop a peer at an exact point."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress


class TcpProxy:
    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self.delay_s = 0.0
        self.refusing = False
        self.flowing = threading.Event()
        self.flowing.set()
        self.held = threading.Event()
        self._watch: tuple[Callable[[bytes], bool], int] | None = None
        self._seen = 0
        self._listener = socket.create_server((host, 0))
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def close(self) -> None:
        self._closed.set()
        with suppress(OSError):  # wakes accept(), which close() alone does not on Linux
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with suppress(OSError):
                    sock.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self.refusing:
            client.close()
            return
        time.sleep(self.delay_s)
        self._pass_on(client)

    def _pass_on(self, client: socket.socket, received: bytes = b"") -> None:
        """Connect `client` to the target, sending first what was `received` from it."""
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._open += [client, upstream]
        with suppress(OSError):
            upstream.sendall(received)
        for source, sink, outbound in ((client, upstream, True), (upstream, client, False)):
            threading.Thread(target=self._pipe, args=(source, sink, outbound), daemon=True).start()

    def hold(self) -> None:
        """Stop passing bytes on, in both directions, until `release`."""
        self.flowing.clear()

    def hold_at(self, is_request: Callable[[bytes], bool], nth: int) -> None:
        """Hold, as `hold` does, when the `nth` chunk sent to the target that `is_request`
        recognises arrives, before it is passed on; `held` is set then."""
        with self._lock:
            self._watch, self._seen = (is_request, nth), 0
            self.held.clear()

    def release(self) -> None:
        with self._lock:
            self._watch = None
        self.flowing.set()

    def _pipe(self, source: socket.socket, sink: socket.socket, outbound: bool) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                if outbound:
                    self._count(data)
                self.flowing.wait()
                sink.sendall(data)
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _count(self, data: bytes) -> None:
        with self._lock:
            if self._watch is None or not self._watch[0](data):
                return
            self._seen += 1
            if self._seen == self._watch[1]:
                self.flowing.clear()
                self.held.set()
