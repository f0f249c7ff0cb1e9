"""[nodes.ssh] and [nodes.hosts."IP".ssh]: which nodes go over SSH, a host's keys over the
defaults, paths relative to the file and checked now, and each mistake named by its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cassy_scheduler.configfile.errors import ConfigError
from cassy_scheduler.server.settings import ServerSettings, load_server_settings


def load(tmp_path: Path, nodes: str) -> ServerSettings:
    (tmp_path / "id_ed25519").write_text("key")
    (tmp_path / "known_hosts").write_text("")
    path = tmp_path / "server.toml"
    path.write_text('[storage]\nuri = "s3://backups/cassandra"\n\n' + nodes)
    return load_server_settings(path)


def test_every_node_goes_over_ssh_with_the_defaults_and_its_own_keys_win(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        '[nodes]\nexecutor = "ssh"\n\n[nodes.ssh]\nport = 2222\nuser = "cassy"\n'
        'key_file = "id_ed25519"\nknown_hosts = "known_hosts"\nsudo_user = "cassandra"\n'
        'idle_timeout = "1m"\n\n[nodes.hosts."10.0.0.2".ssh]\nhost = "node2.example"\n'
        'max_bandwidth = "50MB/s"\n',
    )
    first = settings.endpoint("10.0.0.1").ssh
    assert first is not None and first.host == "10.0.0.1" and first.port == 2222
    assert first.key_file == tmp_path / "id_ed25519" and first.idle_timeout_s == 60
    assert first.sudo_user == "cassandra" and first.max_bandwidth is None
    second = settings.endpoint("10.0.0.2").ssh
    assert second is not None and second.host == "node2.example" and second.user == "cassy"
    assert second.max_bandwidth == 50_000_000 and second.port == 2222
    assert settings.uses_ssh


def test_a_host_can_be_the_only_one_over_ssh(tmp_path: Path) -> None:
    settings = load(tmp_path, '[nodes.hosts."10.0.0.9".ssh]\nuser = "ops"\n')
    assert settings.endpoint("10.0.0.1").ssh is None
    remote = settings.endpoint("10.0.0.9").ssh
    assert remote is not None and remote.user == "ops" and remote.program == ("cassy-scheduler",)


def test_no_ssh_unless_asked(tmp_path: Path) -> None:
    assert not load(tmp_path, "[nodes]\n").uses_ssh


def test_an_unreadable_key_file_is_named_by_its_key_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, '[nodes]\nexecutor = "ssh"\n\n[nodes.ssh]\nkey_file = "nope"\n')
    text = str(refused.value)
    assert "nodes.ssh.key_file" in text and "server.toml:8" in text and "not a readable" in text


def test_a_mistyped_key_gets_the_close_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, '[nodes]\nexecutor = "ssh"\n\n[nodes.ssh]\nknownhosts = "x"\n')
    assert 'did you mean "known_hosts"' in str(refused.value)


def test_a_hosts_jmx_settings_win_over_every_nodes_environment(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        '[nodes]\nexecutor = "ssh"\njmx_port = 7299\n\n[nodes.ssh]\n'
        'environment = { CASSY_NODE_NODETOOL = "/opt/c/bin/nodetool", '
        'CASSY_NODE_JMX_PORT = "7100" }\n\n[nodes.hosts."10.0.0.2"]\njmx_port = 7399\n',
    )
    first, second = settings.endpoint("10.0.0.1").ssh, settings.endpoint("10.0.0.2").ssh
    assert first is not None and second is not None
    # [nodes] jmx_port is the local nodes' default: a remote host is not told it.
    assert dict(first.environment) == {
        "CASSY_NODE_JMX_PORT": "7100",
        "CASSY_NODE_NODETOOL": "/opt/c/bin/nodetool",
    }
    assert dict(second.environment)["CASSY_NODE_JMX_PORT"] == "7399"


def test_a_jmx_port_that_is_not_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a port"):
        load(
            tmp_path,
            '[nodes]\nexecutor = "ssh"\n\n[nodes.ssh]\n'
            'environment = { CASSY_NODE_JMX_PORT = "abc" }\n',
        )


def test_unknown_settings_one_host_for_all_and_pacing_a_directory_are_refused(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as refused:
        load(
            tmp_path,
            '[nodes]\nexecutor = "ssh"\n\n[nodes.ssh]\nhost = "one"\n'
            'environment = { PATH = "/tmp" }\n',
        )
    text = str(refused.value)
    assert "nodes.ssh.host" in text and "every node to one host" in text
    assert "not a node setting: PATH" in text
    path = tmp_path / "file.toml"
    path.write_text(
        '[storage]\nuri = "file:///var/backups"\n\n[nodes.hosts."10.0.0.1".ssh]\n'
        'max_bandwidth = "1MB/s"\n'
    )
    with pytest.raises(ConfigError, match="paces object storage only"):
        load_server_settings(path)
