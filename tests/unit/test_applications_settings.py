"""The server config's [applications] table: one source of instances, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from cassy_scheduler.configfile.errors import ConfigError
from cassy_scheduler.server.applications import AppInstance, ApplicationsConfig
from cassy_scheduler.server.dns import DnsServer
from cassy_scheduler.server.settings import load_server_settings


def load(tmp_path: Path, applications: str) -> ApplicationsConfig | None:
    path = tmp_path / "server.toml"
    storage = (tmp_path / "storage").as_uri()
    path.write_text(f'[storage]\nuri = "{storage}"\n{applications}')
    return load_server_settings(path).applications


def test_no_table_means_no_cluster_wide_snapshots(tmp_path: Path) -> None:
    assert load(tmp_path, "") is None


def test_srv_record_with_a_dns_server(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[applications]\nsrv_name = "_admin._tcp.app.test"\ndns_server = "127.0.0.1:5353"\n'
        'pause_timeout = "3s"\n',
    )
    assert config is not None
    assert config.srv_name == "_admin._tcp.app.test"
    assert config.dns_server == DnsServer("127.0.0.1", 5353)
    assert config.pause_timeout_s == 3.0


def test_static_list(tmp_path: Path) -> None:
    config = load(tmp_path, '[applications]\ninstances = ["127.0.0.201:20052"]\n')
    assert config is not None
    assert config.instances == (AppInstance("127.0.0.201", 20052),)


@pytest.mark.parametrize(
    ("table", "key", "words"),
    [
        ("[applications]\n", "applications", "exactly one of srv_name and instances"),
        (
            '[applications]\nsrv_name = "_a._tcp.x"\ninstances = ["127.0.0.1:1"]\n',
            "applications",
            "exactly one",
        ),
        (
            '[applications]\ninstances = ["127.0.0.1:1"]\ndns_server = "127.0.0.1"\n',
            "applications.dns_server",
            "only used with srv_name",
        ),
        (
            '[applications]\nsrv_name = "_a._tcp.x"\ndns_server = "127.0.0.1:x"\n',
            "applications.dns_server",
            "not host:port",
        ),
        ('[applications]\ninstances = ["127.0.0.1"]\n', "applications.instances", "host:port"),
        (
            '[applications]\ninstances = ["127.0.0.1:1"]\npause_timeout = 3\n',
            "applications.pause_timeout",
            "must be a quoted string",
        ),
    ],
)
def test_refusals_name_the_key(tmp_path: Path, table: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, table)
    assert key in str(caught.value)
    assert words in str(caught.value)
