"""Which application instances a cluster-wide snapshot pauses: a DNS SRV record or a list.

Cassy finds the applications through a DNS SRV record, so instances can come and go without
touching the backup server; a static list serves setups without such a record. The lookup runs
at every cluster-wide backup, so the set paused is the set registered at that moment.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from cassy_scheduler.server.dns import (
    DnsClient,
    DnsError,
    DnsNameNotFoundError,
    DnsServer,
    name_key,
    system_dns_server,
)

log = logging.getLogger(__name__)

DEFAULT_PAUSE_TIMEOUT_S = 60.0
DEFAULT_UNPAUSE_TIMEOUT_S = 10.0
DEFAULT_DNS_TIMEOUT_S = 5.0


class ApplicationsError(Exception):
    """Base of the errors about application instances: finding, pausing, unpausing them."""


class ApplicationsNotConfiguredError(ApplicationsError):
    """The server has no [applications] table, so it cannot take cluster-wide snapshots."""


class ApplicationsNotFoundError(ApplicationsError):
    """No application instance could be found (no SRV record, or an empty one)."""


@dataclass(frozen=True, order=True)
class AppInstance:
    """One application instance serving rpc.Admin."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> AppInstance:
        """'127.0.0.201:20052', 'app1.example.com:20052' or '[::1]:20052'."""
        host, sep, port = text.strip().rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r} is not host:port (e.g. 127.0.0.201:20052)")
        return cls(host, int(port))


@dataclass(frozen=True)
class ApplicationsConfig:
    """The [applications] table: where instances come from and how long to wait for them."""

    srv_name: str | None = None
    dns_server: DnsServer | None = None
    instances: tuple[AppInstance, ...] = ()
    pause_timeout_s: float = DEFAULT_PAUSE_TIMEOUT_S
    unpause_timeout_s: float = DEFAULT_UNPAUSE_TIMEOUT_S
    dns_timeout_s: float = DEFAULT_DNS_TIMEOUT_S

    @property
    def source(self) -> str:
        """Where instances come from, for messages."""
        if self.srv_name:
            asked = self.dns_server or "the system DNS server"
            return f"SRV record {self.srv_name} (asked {asked})"
        return "the [applications] instances list"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.rstrip("."))
    except ValueError:
        return False
    return True


def _system_address(name: str) -> str:
    """The first address of `name` as the C library resolves it (hosts file included)."""
    infos = socket.getaddrinfo(name.rstrip("."), None, type=socket.SOCK_STREAM)
    return str(infos[0][4][0])


class ApplicationFinder:
    """Finds the instances to pause, fresh for every backup."""

    def __init__(
        self,
        config: ApplicationsConfig,
        *,
        dns_client: Callable[[DnsServer, float], DnsClient] = DnsClient,
        system_server: Callable[[], DnsServer] = system_dns_server,
        system_address: Callable[[str], str] = _system_address,
    ) -> None:
        self._config = config
        self._dns_client = dns_client
        self._system_server = system_server
        self._system_address = system_address

    @property
    def config(self) -> ApplicationsConfig:
        return self._config

    def find(self) -> tuple[AppInstance, ...]:
        """Every instance, sorted; ApplicationsError says why none could be found."""
        if not self._config.srv_name:
            if not self._config.instances:
                raise ApplicationsNotConfiguredError(
                    "no application instances are configured: set srv_name or instances "
                    "in the server's [applications] table"
                )
            return tuple(sorted(set(self._config.instances)))
        return self._from_srv(self._config.srv_name)

    def _from_srv(self, srv_name: str) -> tuple[AppInstance, ...]:
        try:
            server = self._config.dns_server or self._system_server()
        except DnsError as exc:
            raise ApplicationsError(str(exc)) from None
        client = self._dns_client(server, self._config.dns_timeout_s)
        try:
            answer = client.srv(srv_name)
        except DnsNameNotFoundError as exc:
            raise ApplicationsNotFoundError(
                f"no application instance found: {exc} (asked DNS server {server}); add one "
                "SRV record per instance, or list them in [applications] instances. "
                "Nothing was paused"
            ) from None
        except DnsError as exc:
            raise ApplicationsError(
                f"cannot look up the application instances: {exc}. Nothing was paused"
            ) from None
        instances = set()
        for record in answer.records:
            host = self._address_of(client, record.target, answer.addresses)
            instances.add(AppInstance(host, record.port))
        found = tuple(sorted(instances))
        log.info(
            "application instances found srv_name=%s dns_server=%s instances=%s",
            srv_name,
            server,
            ",".join(map(str, found)),
        )
        return found

    def _address_of(
        self, client: DnsClient, target: str, sent_along: dict[str, tuple[str, ...]]
    ) -> str:
        """The target's address: sent along, an IP already, from the same server, or the OS."""
        if _is_ip(target):
            return target.rstrip(".")
        known = sent_along.get(name_key(target))
        if known:
            return known[0]
        try:
            if self._config.dns_server is not None:
                return client.addresses(target)[0]
            return self._system_address(target)
        except (DnsError, OSError) as exc:
            raise ApplicationsError(
                f"SRV target {target} has no address ({exc}): add an A record for it. "
                "Nothing was paused"
            ) from None
