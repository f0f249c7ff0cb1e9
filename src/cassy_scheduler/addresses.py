"""Whether an address stays on this host: off loopback, plaintext gRPC is readable and, with
no identities configured, anyone who reaches the port may use the whole API."""

from __future__ import annotations

import ipaddress

_LOCAL_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; anything else (0.0.0.0, a name) is the network."""
    name = host.strip().strip("[]").lower()
    if name in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_of(address: str) -> str:
    """The host of HOST:PORT ('[::1]:20051' gives '::1')."""
    if address.startswith("["):
        return address[1 : address.find("]")] if "]" in address else address
    host, sep, _ = address.rpartition(":")
    return host if sep else address
