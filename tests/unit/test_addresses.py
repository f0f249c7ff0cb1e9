"""Loopback or the network: plaintext off loopback is warned about, on both sides."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cassy_scheduler.addresses import host_of, is_loopback
from cassy_scheduler.config.checks import check_config
from cassy_scheduler.config.loader import load_config


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.42", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("cassy.example.com", False),
    ],
)
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_host_of_an_address() -> None:
    assert host_of("10.0.0.1:20051") == "10.0.0.1"
    assert host_of("[::1]:20051") == "::1"
    assert host_of("cassy.example.com") == "cassy.example.com"


@pytest.mark.parametrize(
    ("address", "tls", "warned"),
    [
        ("10.0.0.5:20051", "", True),
        ("10.0.0.5:20051", "[server.tls]\n", False),
        ("127.0.0.1:20051", "", False),
    ],
)
def test_check_warns_of_plaintext_over_the_network(
    tmp_path: Path, address: str, tls: str, warned: bool
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        f'[server]\naddress = "{address}"\n{tls}\n[jobs.a]\ntype = "snapshot"\n'
        'cluster_name = "prod"\nschedule = "@daily"\n'
    )
    problems = check_config(load_config(path), datetime(2026, 12, 1, tzinfo=UTC))
    assert any(p.field == "server.address" for p in problems) is warned
