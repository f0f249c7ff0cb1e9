"""A small authoritative DNS responder on loopback for tests: SRV and A records, UDP and TCP.

It answers only what it is given; any other name gets NXDOMAIN. `truncate_udp` makes every UDP
answer empty with the TC bit set, as a server does when an answer is too big, so that clients
must ask again over TCP. Runs in threads of the test process and stops on `close`.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from dataclasses import dataclass, field
from typing import Self

_HEADER = struct.Struct("!HHHHHH")
TYPE_A = 1
TYPE_SRV = 33


@dataclass
class Zone:
    """SRV records by service name and A records by host name (names without trailing dot)."""

    srv: dict[str, list[tuple[int, int, int, str]]] = field(default_factory=dict)
    a: dict[str, str] = field(default_factory=dict)
    include_additional: bool = True
    truncate_udp: bool = False
    queries: list[tuple[str, int]] = field(default_factory=list)


def _name(text: str) -> bytes:
    out = b""
    for label in text.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def _read_question(message: bytes) -> tuple[str, int, int]:
    offset = _HEADER.size
    labels = []
    while message[offset]:
        length = message[offset]
        labels.append(message[offset + 1 : offset + 1 + length].decode())
        offset += 1 + length
    qtype, _qclass = struct.unpack_from("!HH", message, offset + 1)
    return ".".join(labels), qtype, offset + 5


def _record(owner: str, rtype: int, data: bytes) -> bytes:
    return _name(owner) + struct.pack("!HHIH", rtype, 1, 60, len(data)) + data


def answer(zone: Zone, query: bytes, *, over_udp: bool) -> bytes:
    """The response to one query message."""
    ident = _HEADER.unpack_from(query)[0]
    qname, qtype, end = _read_question(query)
    zone.queries.append((qname.lower(), qtype))
    question = query[_HEADER.size : end]
    flags = 0x8400  # response, authoritative
    answers: list[bytes] = []
    additional: list[bytes] = []
    key = qname.lower()
    if qtype == TYPE_SRV and key in zone.srv:
        for priority, weight, port, target in zone.srv[key]:
            data = struct.pack("!HHH", priority, weight, port) + _name(target)
            answers.append(_record(qname, TYPE_SRV, data))
            if zone.include_additional and target.lower() in zone.a:
                additional.append(_record(target, TYPE_A, _a_data(zone.a[target.lower()])))
    elif qtype == TYPE_A and key in zone.a:
        answers.append(_record(qname, TYPE_A, _a_data(zone.a[key])))
    elif key not in zone.srv and key not in zone.a:
        flags |= 3  # NXDOMAIN
    if over_udp and zone.truncate_udp:
        return _HEADER.pack(ident, flags | 0x0200, 1, 0, 0, 0) + question
    header = _HEADER.pack(ident, flags, 1, len(answers), 0, len(additional))
    return header + question + b"".join(answers) + b"".join(additional)


def _a_data(address: str) -> bytes:
    return socket.inet_aton(address)


class _TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class SrvResponder:
    """Serves `zone` on host:port over UDP and TCP until closed."""

    def __init__(self, zone: Zone, host: str = "127.0.0.1", port: int = 0) -> None:
        self.zone = zone
        responder = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                sock.sendto(answer(responder.zone, data, over_udp=True), self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                length = struct.unpack("!H", self.request.recv(2))[0]
                data = b""
                while len(data) < length:
                    data += self.request.recv(length - len(data))
                reply = answer(responder.zone, data, over_udp=False)
                self.request.sendall(struct.pack("!H", len(reply)) + reply)

        # The UDP port the system picks may be taken for TCP by another process: pick again.
        for attempt in range(20):
            self._udp = socketserver.ThreadingUDPServer((host, port), Udp)
            bound_port = self._udp.server_address[1]
            try:
                self._tcp = _TcpServer((host, bound_port), Tcp)
                break
            except OSError:
                self._udp.server_close()
                if port or attempt == 19:
                    raise
        self.host = host
        self.port = bound_port
        self._threads = [
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
            for server in (self._udp, self._tcp)
        ]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def close(self) -> None:
        for server in (self._udp, self._tcp):
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()
