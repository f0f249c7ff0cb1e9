"""Whether Cassandra runs on a node, asked of its ports: JMX and the native transport. A
connection refused on both means stopped; one accepted means running; anything else (a
timeout, an unreachable host) is unknown and raises, so that a caller refusing to touch a
running node never takes "unknown" for "stopped". A connect costs a millisecond where a
`nodetool version` costs a JVM."""

from __future__ import annotations

import socket
from collections.abc import Iterable


class LivenessUnknownError(Exception):
    """Neither answered nor refused: the message says which port and why."""


def cassandra_running(ports: Iterable[tuple[str, int]], timeout_s: float = 5.0) -> bool:
    """True when any of `ports` (host, port) accepts a connection; False when all refuse."""
    for host, port in ports:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return True
        except ConnectionRefusedError:
            continue
        except OSError as exc:
            raise LivenessUnknownError(
                f"cannot tell whether {host}:{port} listens ({exc.strerror or exc})"
            ) from exc
    return False
