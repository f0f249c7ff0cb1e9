"""Pure parts of tools/localcluster: tokens, generated config, nodetool output parsing."""

from __future__ import annotations

from pathlib import Path

from tools.localcluster.cluster import parse_status
from tools.localcluster.nodeconfig import NodeSpec, balanced_token


def test_tokens_are_spread_evenly_over_the_ring() -> None:
    assert [balanced_token(i, 3) for i in range(3)] == [
        -(2**63),
        -(2**63) + 2**64 // 3,
        -(2**63) + 2 * (2**64 // 3),
    ]
    assert balanced_token(0, 1) == -(2**63)


def test_node_config_has_the_settings_backups_rely_on(tmp_path: Path) -> None:
    spec = NodeSpec(2, 3, tmp_path, "demo")
    yaml = spec.cassandra_yaml()
    assert spec.address == "127.0.0.2"
    assert spec.jmx_port == 7200
    for line in (
        "incremental_backups: true",
        "auto_snapshot: false",
        "auto_bootstrap: false",
        "listen_address: 127.0.0.2",
        'seeds: "127.0.0.1:7000,127.0.0.2:7000,127.0.0.3:7000"',
        f"  - {tmp_path / 'node2' / 'data'}",
    ):
        assert line in yaml


def test_parse_status_reads_state_and_address() -> None:
    output = """Datacenter: datacenter1
=======================
Status=Up/Down
|/ State=Normal/Leaving/Joining/Moving
--  Address    Load       Tokens  Owns   Host ID   Rack
UN  127.0.0.1  96 KiB     1       33.3%  a1        rack1
DN  127.0.0.2  90 KiB     1       33.3%  b2        rack1
UJ  127.0.0.3  ?          1       33.3%  c3        rack1
"""
    rows = parse_status(output)
    assert [(r.address, r.state) for r in rows] == [
        ("127.0.0.1", "UN"),
        ("127.0.0.2", "DN"),
        ("127.0.0.3", "UJ"),
    ]
