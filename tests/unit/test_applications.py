"""Finding application instances: SRV records from a DNS responder on loopback, or a list."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from cassy_scheduler.server.applications import (
    AppInstance,
    ApplicationFinder,
    ApplicationsConfig,
    ApplicationsError,
    ApplicationsNotConfiguredError,
    ApplicationsNotFoundError,
)
from cassy_scheduler.server.dns import DnsServer
from tests.srvresponder import SrvResponder, Zone

SRV = "_admin._tcp.app.test"


@pytest.fixture
def zone() -> Zone:
    return Zone(
        srv={SRV: [(10, 5, 20052, "app1.test"), (10, 5, 20053, "app2.test")]},
        a={"app1.test": "127.0.0.201", "app2.test": "127.0.0.202"},
    )


@pytest.fixture
def responder(zone: Zone) -> Iterator[SrvResponder]:
    with SrvResponder(zone) as running:
        yield running


def finder_for(responder: SrvResponder, name: str = SRV) -> ApplicationFinder:
    server = DnsServer.parse(responder.address)
    return ApplicationFinder(ApplicationsConfig(srv_name=name, dns_server=server, dns_timeout_s=2))


EXPECTED = (AppInstance("127.0.0.201", 20052), AppInstance("127.0.0.202", 20053))


def test_srv_record_with_addresses_sent_along(responder: SrvResponder) -> None:
    assert finder_for(responder).find() == EXPECTED
    assert [q for q in responder.zone.queries if q[1] == 1] == []  # no A query needed


def test_srv_targets_without_addresses_are_asked_for(responder: SrvResponder) -> None:
    responder.zone.include_additional = False
    assert finder_for(responder).find() == EXPECTED
    assert ("app1.test", 1) in responder.zone.queries


def test_truncated_udp_answer_is_asked_again_over_tcp(responder: SrvResponder) -> None:
    responder.zone.truncate_udp = True
    assert finder_for(responder).find() == EXPECTED


def test_srv_target_that_is_an_ip_literal(responder: SrvResponder) -> None:
    responder.zone.srv[SRV] = [(0, 0, 20052, "127.0.0.203")]
    assert finder_for(responder).find() == (AppInstance("127.0.0.203", 20052),)


def test_missing_srv_record_is_a_clear_error(responder: SrvResponder) -> None:
    with pytest.raises(ApplicationsNotFoundError) as caught:
        finder_for(responder, "_missing._tcp.app.test").find()
    message = str(caught.value)
    assert "_missing._tcp.app.test" in message
    assert responder.address in message
    assert "Nothing was paused" in message


def test_name_with_no_srv_data_is_not_found(responder: SrvResponder) -> None:
    with pytest.raises(ApplicationsNotFoundError, match="no SRV record"):
        finder_for(responder, "app1.test").find()


def test_srv_target_without_address_is_refused(responder: SrvResponder) -> None:
    responder.zone.srv[SRV] = [(0, 0, 20052, "ghost.test")]
    with pytest.raises(ApplicationsError, match=r"ghost\.test\. has no address"):
        finder_for(responder).find()


def test_dns_server_that_does_not_answer_is_named() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        finder = ApplicationFinder(
            ApplicationsConfig(srv_name=SRV, dns_server=DnsServer.parse(address), dns_timeout_s=0.3)
        )
        with pytest.raises(ApplicationsError) as caught:
            finder.find()
    assert address in str(caught.value)
    assert "did not answer" in str(caught.value)


def test_static_list_is_used_as_given_without_duplicates() -> None:
    config = ApplicationsConfig(
        instances=(
            AppInstance.parse("127.0.0.202:20052"),
            AppInstance.parse("127.0.0.201:20052"),
            AppInstance.parse("127.0.0.202:20052"),
        )
    )
    assert ApplicationFinder(config).find() == (
        AppInstance("127.0.0.201", 20052),
        AppInstance("127.0.0.202", 20052),
    )


def test_nothing_configured_says_what_to_set() -> None:
    with pytest.raises(ApplicationsNotConfiguredError, match="srv_name or instances"):
        ApplicationFinder(ApplicationsConfig()).find()


def test_without_dns_server_the_system_resolves(responder: SrvResponder) -> None:
    responder.zone.include_additional = False
    by_os = {"app1.test.": "127.0.0.211", "app2.test.": "127.0.0.212"}
    finder = ApplicationFinder(
        ApplicationsConfig(srv_name=SRV, dns_timeout_s=2),
        system_server=lambda: DnsServer.parse(responder.address),
        system_address=by_os.__getitem__,
    )
    assert finder.find() == (
        AppInstance("127.0.0.211", 20052),
        AppInstance("127.0.0.212", 20053),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.201:20052", AppInstance("127.0.0.201", 20052)),
        ("app.example.com:1", AppInstance("app.example.com", 1)),
        ("[::1]:20052", AppInstance("::1", 20052)),
    ],
)
def test_instance_parsing(text: str, expected: AppInstance) -> None:
    assert AppInstance.parse(text) == expected
    assert AppInstance.parse(str(expected)) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", "host:", ":20052", "host:0", "host:x"])
def test_instance_parsing_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        AppInstance.parse(text)


def test_dns_server_parsing() -> None:
    assert DnsServer.parse("127.0.0.1:5353") == DnsServer("127.0.0.1", 5353)
    assert DnsServer.parse("127.0.0.1") == DnsServer("127.0.0.1", 53)
    with pytest.raises(ValueError, match="host:port"):
        DnsServer.parse("127.0.0.1:x")
