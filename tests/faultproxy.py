"""An HTTP fault injector on loopback in front of an object-store server: of the connections
it accepts, it answers a share with 503 SlowDown (S3's throttling reply), resets a share
after reading the request, and passes the rest through untouched. `refuse_puts` makes every
PUT fail (a part's upload, as a store under load refuses it, while the abort's DELETE still
gets through), for tests of what happens when retries run out. Decisions are drawn from a
seeded generator, so a run can be replayed."""

from __future__ import annotations

import random
import socket
from contextlib import suppress

from tests.tcpproxy import TcpProxy

_SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)
_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class FaultProxy(TcpProxy):
    def __init__(
        self,
        target: tuple[str, int],
        *,
        slow_down: float = 0.0,
        reset: float = 0.0,
        seed: int = 7,
    ) -> None:
        self.slow_down = slow_down
        self.reset = reset
        self.refuse_puts = False
        self.counts = {"passed": 0, "slow_down": 0, "reset": 0}
        self._random = random.Random(seed)
        super().__init__(target)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _choose(self, head: bytes) -> str:
        with self._lock:
            if self.refuse_puts and head.startswith(b"PUT "):
                fate = "slow_down"
            else:
                draw = self._random.random()
                fate = (
                    "slow_down"
                    if draw < self.slow_down
                    else "reset"
                    if draw < self.slow_down + self.reset
                    else "passed"
                )
            self.counts[fate] += 1
            return fate

    def _serve(self, client: socket.socket) -> None:
        head = _read_head(client)
        if head is None:
            client.close()
            return
        fate = self._choose(head)
        if fate == "slow_down":
            with suppress(OSError):
                client.sendall(_SLOW_DOWN % (len(_BODY), _BODY))
            client.close()
        elif fate == "reset":
            client.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            client.close()  # linger 0: the peer sees a reset, mid-request
        else:
            self._pass_on(client, head)


def _read_head(client: socket.socket) -> bytes | None:
    """The bytes up to the end of the first request's headers (what came with them too)."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = client.recv(65536)
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data
