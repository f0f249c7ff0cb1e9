"""A minimal DNS client for SRV lookups, over UDP (TCP when the answer is truncated).

Cluster-wide snapshots find the application instances to pause through a DNS SRV record, as
Cassy does. The standard library resolves only addresses, so this module builds the query and
reads the answer itself (RFC 1035 wire format, RFC 2782 SRV data). It asks one configured DNS
server, or the first `nameserver` of /etc/resolv.conf.
"""

from __future__ import annotations

import random
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

DNS_PORT = 53
TYPE_A = 1
TYPE_SRV = 33
CLASS_IN = 1
_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")
_SRV_FIXED = struct.Struct("!HHH")
_FLAG_QR = 0x8000
_FLAG_TC = 0x0200
_FLAG_RD = 0x0100
_RCODE_NXDOMAIN = 3
_RCODE_NAMES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
_MAX_POINTERS = 32
_RESOLV_CONF = Path("/etc/resolv.conf")


class DnsError(Exception):
    """A DNS query could not be asked or answered; the message names the server and name."""


class DnsNameNotFoundError(DnsError):
    """The name has no record of the asked type (NXDOMAIN, or an empty answer)."""


@dataclass(frozen=True)
class DnsServer:
    """Where queries go: an address and a port (53 unless configured)."""

    host: str
    port: int = DNS_PORT

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> DnsServer:
        """'127.0.0.1:5353' or '127.0.0.1' (port 53)."""
        host, sep, port = text.strip().rpartition(":")
        if not sep:
            return cls(text.strip())
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r} is not host:port (e.g. 127.0.0.1:5353)")
        return cls(host, int(port))


@dataclass(frozen=True)
class SrvRecord:
    """One SRV answer: where an instance of the service listens."""

    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class SrvAnswer:
    """The SRV records of a name, plus the addresses the server sent along for their targets.

    `addresses` is keyed by `name_key` of each target.
    """

    records: tuple[SrvRecord, ...]
    addresses: dict[str, tuple[str, ...]]


def system_dns_server(resolv_conf: Path = _RESOLV_CONF) -> DnsServer:
    """The first nameserver of resolv.conf, as the C library would ask it."""
    try:
        lines = resolv_conf.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DnsError(
            f"cannot read {resolv_conf} to find a DNS server ({exc.strerror}): "
            'set dns_server in [applications], e.g. "127.0.0.1:53"'
        ) from None
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            return DnsServer(fields[1])
    raise DnsError(
        f'{resolv_conf} names no nameserver: set dns_server in [applications], e.g. "127.0.0.1:53"'
    )


def encode_query(query_id: int, name: str, qtype: int) -> bytes:
    """A recursive query for `name` of type `qtype`, class IN."""
    return (
        _HEADER.pack(query_id, _FLAG_RD, 1, 0, 0, 0)
        + encode_name(name)
        + struct.pack("!HH", qtype, CLASS_IN)
    )


def encode_name(name: str) -> bytes:
    """`name` as length-prefixed labels; a trailing dot is optional."""
    out = bytearray()
    for label in name.rstrip(".").split("."):
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if not 0 < len(raw) < 64:
            raise DnsError(f"{name!r} is not a valid DNS name: each label needs 1 to 63 bytes")
        out += bytes([len(raw)]) + raw
    return bytes(out + b"\x00")


def read_name(message: bytes, offset: int) -> tuple[str, int]:
    """The name at `offset` (following compression pointers) and the offset after it."""
    labels: list[str] = []
    end: int | None = None
    jumps = 0
    while True:
        if offset >= len(message):
            raise DnsError("DNS answer ends inside a name: it is truncated or malformed")
        length = message[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(message) or jumps >= _MAX_POINTERS:
                raise DnsError("DNS answer has a broken name pointer")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | message[offset + 1]
            jumps += 1
            continue
        if length == 0:
            return ".".join(labels) + ".", end if end is not None else offset + 1
        labels.append(message[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length


def name_key(name: str) -> str:
    """`name` in the one form answers are keyed by: lower case, with the trailing dot."""
    return name.rstrip(".").lower() + "."


def parse_response(message: bytes, query_id: int, name: str, qtype: int) -> SrvAnswer:
    """SRV records (type SRV) or addresses (type A) of `name` from a response message."""
    if len(message) < _HEADER.size:
        raise DnsError(f"DNS answer for {name} is too short ({len(message)} bytes)")
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(message)
    if ident != query_id or not flags & _FLAG_QR:
        raise DnsError(f"DNS answer for {name} does not match the query")
    rcode = flags & 0x000F
    if rcode == _RCODE_NXDOMAIN:
        raise DnsNameNotFoundError(f"{name} does not exist (NXDOMAIN)")
    if rcode:
        raise DnsError(f"DNS server refused {name}: {_RCODE_NAMES.get(rcode, f'rcode {rcode}')}")
    offset = _HEADER.size
    for _ in range(qdcount):
        _, offset = read_name(message, offset)
        offset += 4
    records: list[SrvRecord] = []
    addresses: dict[str, list[str]] = {}
    for index in range(ancount + nscount + arcount):
        owner, offset = read_name(message, offset)
        if offset + _RR_FIXED.size > len(message):
            raise DnsError(f"DNS answer for {name} is truncated")
        rtype, rclass, _ttl, length = _RR_FIXED.unpack_from(message, offset)
        offset += _RR_FIXED.size
        data_at = offset
        offset += length
        if offset > len(message) or rclass != CLASS_IN:
            continue
        if rtype == TYPE_SRV and index < ancount and name_key(owner) == name_key(name):
            priority, weight, port = _SRV_FIXED.unpack_from(message, data_at)
            target, _ = read_name(message, data_at + _SRV_FIXED.size)
            records.append(SrvRecord(priority, weight, port, target))
        elif rtype == TYPE_A and length == 4:
            address = socket.inet_ntoa(message[data_at : data_at + 4])
            addresses.setdefault(name_key(owner), []).append(address)
    return SrvAnswer(tuple(records), {k: tuple(v) for k, v in addresses.items()})


class DnsClient:
    """Asks one DNS server; every failure is a DnsError naming the server and the name."""

    def __init__(self, server: DnsServer, timeout_s: float = 5.0) -> None:
        self._server = server
        self._timeout_s = timeout_s

    @property
    def server(self) -> DnsServer:
        return self._server

    def srv(self, name: str) -> SrvAnswer:
        """The SRV records of `name`; DnsNameNotFoundError when it has none."""
        answer = self._ask(name, TYPE_SRV)
        usable = tuple(r for r in answer.records if r.target != ".")
        if not usable:
            raise DnsNameNotFoundError(f"{name} has no SRV record")
        return SrvAnswer(usable, answer.addresses)

    def addresses(self, name: str) -> tuple[str, ...]:
        """The IPv4 addresses (A records) of `name`."""
        found = self._ask(name, TYPE_A).addresses.get(name_key(name))
        if not found:
            raise DnsNameNotFoundError(f"{name} has no A record")
        return found

    def _ask(self, name: str, qtype: int) -> SrvAnswer:
        query_id = random.randrange(1 << 16)
        query = encode_query(query_id, name, qtype)
        try:
            message = self._udp(query, query_id)
            if _HEADER.unpack_from(message)[1] & _FLAG_TC:
                message = self._tcp(query)
        except OSError as exc:
            reason = "no answer in time" if isinstance(exc, TimeoutError) else str(exc)
            raise DnsError(
                f"DNS server {self._server} did not answer for {name} ({reason}): check "
                "dns_server in [applications] and that the server runs"
            ) from None
        try:
            return parse_response(message, query_id, name, qtype)
        except DnsError as exc:
            raise type(exc)(f"{exc} (asked {self._server})") from None

    def _udp(self, query: bytes, query_id: int) -> bytes:
        family = socket.AF_INET6 if ":" in self._server.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(self._timeout_s)
            sock.connect((self._server.host, self._server.port))
            sock.send(query)
            while True:
                message = sock.recv(65535)
                if len(message) >= _HEADER.size and _HEADER.unpack_from(message)[0] == query_id:
                    return message

    def _tcp(self, query: bytes) -> bytes:
        address = (self._server.host, self._server.port)
        with socket.create_connection(address, timeout=self._timeout_s) as sock:
            sock.sendall(struct.pack("!H", len(query)) + query)
            length = struct.unpack("!H", _recv_exactly(sock, 2))[0]
            return _recv_exactly(sock, length)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the DNS server closed the connection mid-answer")
        data += chunk
    return bytes(data)
