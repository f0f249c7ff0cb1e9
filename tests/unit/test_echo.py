"""Values quoted in messages stay short, and say how long they really were."""

from __future__ import annotations

from cassy_scheduler.protocol.echo import ECHO_CHARS, echo, echo_list, echo_text
from cassy_scheduler.server.requests import is_host


def test_short_values_are_quoted_whole() -> None:
    assert echo("prod-1") == "'prod-1'"
    assert echo_text("short") == "short"


def test_long_values_are_cut_with_their_size() -> None:
    shown = echo("x" * 3_000_000)
    assert shown.startswith("'" + "x" * ECHO_CHARS + "'…")
    assert shown.endswith("(3000000 bytes)") and len(shown) < ECHO_CHARS + 30
    assert echo_text("y" * 5000).endswith("… (5000 bytes)")


def test_long_lists_say_how_many_more() -> None:
    assert echo_list(["10.0.0.1", "10.0.0.2"]) == "10.0.0.1, 10.0.0.2"
    shown = echo_list([f"10.0.{i // 256}.{i % 256}" for i in range(1000)])
    assert shown.endswith("and 990 more")
    assert "'\\x00'" in echo_list(["\x00"])


def test_hosts_are_names_or_addresses() -> None:
    good = ("10.0.0.1", "::1", "fe80::1%eth0", "cassandra-1.example.com", "localhost.")
    for host in (*good, "node_1.internal"):
        assert is_host(host), host
    bad = ("", "../../tmp/x", "a/b", "a\x00b", "a b", "-a.example.com", "h" * 300, "h:9042")
    for host in (*bad, "::1%\x00", "fe80::1%a b", "10.0.0.1%eth0", "::1%"):
        assert not is_host(host), host
