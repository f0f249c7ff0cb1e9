"""[access] cluster_hosts: the Cassandra hosts RegisterCluster may contact, and the nodes a
cluster may report, so that a caller cannot make the server open connections to any host.

Entries are networks ("10.0.0.0/8", "127.0.0.1") or host names, exact or with shell wildcards
("cassandra-*.prod.example"). A name is admitted by a name entry, or when every address it
resolves to lies in a network entry; an address only by a network entry.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cassy_scheduler.server.errors import HostNotAllowedError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def resolve(host: str) -> list[str]:
    """Every address `host` resolves to (empty when it does not)."""
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in found})


@dataclass(frozen=True)
class HostAllowList:
    networks: tuple[Network, ...] = ()
    names: tuple[str, ...] = ()  # lower case

    @classmethod
    def parse(cls, entries: Sequence[str]) -> HostAllowList:
        """Raises ValueError naming the first entry that is neither a network nor a name."""
        networks: list[Network] = []
        names: list[str] = []
        for entry in entries:
            text = entry.strip()
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
                continue
            except ValueError:
                pass
            if not text or any(c in text for c in " /,:"):
                raise ValueError(f"{entry!r} is neither a network (10.0.0.0/8) nor a host name")
            names.append(text.lower())
        return cls(tuple(networks), tuple(names))

    def _in_networks(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def check_host(self, host: str, lookup: Callable[[str], list[str]] = resolve) -> None:
        """Refuses, before anything contacts it, a host the list does not admit."""
        name = host.strip().lower()
        if self._in_networks(name):
            return
        try:
            ipaddress.ip_address(name)
            is_address = True
        except ValueError:
            is_address = False
        if not is_address:
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.names):
                return
            addresses = lookup(name) if self.networks else []
            if addresses and all(self._in_networks(a) for a in addresses):
                return
        raise HostNotAllowedError(
            f"this server contacts only the Cassandra hosts its [access] cluster_hosts lists, "
            f"and {host!r} is not among them: name a listed host, or ask the server's "
            "operator to add it"
        )

    def check_nodes(self, nodes: Sequence[str]) -> None:
        """Refuses a cluster reporting nodes outside the networks listed (when any are: a
        list of names only says nothing of addresses)."""
        if not self.networks:
            return
        outside = [node for node in nodes if not self._in_networks(node)]
        if outside:
            raise HostNotAllowedError(
                f"the cluster reports nodes outside [access] cluster_hosts: "
                f"{', '.join(outside)}; nothing was registered: ask the server's operator "
                "to list their network"
            )
