"""A node's directories as its own cassandra.yaml sets them, read on the node's host.

A restore onto a stopped node cannot ask Cassandra where its data goes, and nodes on other
hosts are not configured path by path in the server's file: the node program reads them from
the file Cassandra itself starts with.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from cassy_scheduler.node.placement import NodeDirectories

DEFAULT_YAML = Path("/etc/cassandra/cassandra.yaml")


class CassandraYamlError(Exception):
    """The node's cassandra.yaml is missing or does not say where its data is."""


def yaml_path() -> Path:
    """CASSY_NODE_CASSANDRA_YAML, else $CASSANDRA_CONF/cassandra.yaml, else the package's."""
    named = os.environ.get("CASSY_NODE_CASSANDRA_YAML")
    if named:
        return Path(named)
    conf = os.environ.get("CASSANDRA_CONF")
    return Path(conf) / "cassandra.yaml" if conf else DEFAULT_YAML


def node_directories(path: Path | None = None) -> NodeDirectories:
    """The data (first of data_file_directories), commit log, hints and saved caches
    directories; unset ones default to $CASSANDRA_HOME/data/..., else /var/lib/cassandra/..."""
    path = path or yaml_path()
    try:
        document: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CassandraYamlError(
            f"cannot read {path} ({exc.strerror or exc}) to find this node's directories: set "
            "CASSY_NODE_CASSANDRA_YAML for the node program, or data_dir for the node in the "
            "server's [nodes.hosts]"
        ) from exc
    except yaml.YAMLError as exc:
        raise CassandraYamlError(f"{path} is not valid YAML: {exc}") from exc
    settings = document if isinstance(document, dict) else {}
    cassandra_home = os.environ.get("CASSANDRA_HOME")
    home = Path(cassandra_home) / "data" if cassandra_home else Path("/var/lib/cassandra")
    data_dirs = settings.get("data_file_directories") or [home / "data"]
    if not isinstance(data_dirs, list) or not data_dirs:
        raise CassandraYamlError(f"data_file_directories in {path} is not a list of paths")

    def directory(key: str, default: Path) -> Path:
        value = settings.get(key)
        return Path(str(value)) if value else default

    data_dir = Path(str(data_dirs[0]))
    return NodeDirectories.beside(
        data_dir,
        commitlog_dir=directory("commitlog_directory", home / "commitlog"),
        hints_dir=directory("hints_directory", home / "hints"),
        saved_caches_dir=directory("saved_caches_directory", home / "saved_caches"),
    )
