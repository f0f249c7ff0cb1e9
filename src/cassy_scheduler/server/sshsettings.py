"""`[nodes.ssh]` and `[nodes.hosts."IP".ssh]` as the server uses them: one `SshTarget` per node.

A host's own table overrides the defaults key by key. Paths are relative to the config file,
and the key and known_hosts files must be readable now: a typo stops the start, with the key
to fix, instead of failing the first backup at 00:30.
"""

from __future__ import annotations

import os
from pathlib import Path

from cassy_scheduler.configfile.errors import ConfigProblem
from cassy_scheduler.configfile.locate import line_of
from cassy_scheduler.node.sshtarget import SETTINGS, SshTarget
from cassy_scheduler.server.settingsfile import NodesTable, SshTable


def ssh_target(
    nodes: NodesTable,
    address: str | None,
    base: Path,
    file: str,
    lines: dict[tuple[str, ...], int],
) -> tuple[SshTarget | None, list[ConfigProblem]]:
    """The node's target (`address` None: the defaults every unlisted node gets), or None
    when that node is not reached over SSH."""
    problems = _host_of_all(nodes, file, lines) if address is None else []
    own = None if address is None else nodes.hosts[address].ssh
    if own is None and nodes.executor != "ssh":
        return None, problems
    defaults = nodes.ssh or SshTable()
    merged = defaults.model_copy(update=own.model_dump(exclude_unset=True) if own else {})
    where = ("nodes", "ssh") if own is None else ("nodes", "hosts", str(address), "ssh")
    # Weakest first: every node's, the host's jmx_port / jmx_host, the host's own.
    environment = {**defaults.environment, **_jmx_settings(nodes, address)}
    if own is not None:
        environment.update(own.environment)
    port = environment.get("CASSY_NODE_JMX_PORT")
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        problems.append(
            ConfigProblem(
                file,
                line_of(lines, (*where, "environment")),
                ".".join((*where, "environment")),
                f"CASSY_NODE_JMX_PORT {port!r} is not a port",
                'write a number from 1 to 65535, e.g. CASSY_NODE_JMX_PORT = "7199"',
            )
        )
    unknown = sorted(set(environment) - SETTINGS)
    if unknown:
        mine = own is not None and bool(set(own.environment) & set(unknown))
        source = where if mine else ("nodes", "ssh")
        problems.append(
            ConfigProblem(
                file,
                line_of(lines, (*source, "environment")),
                ".".join((*source, "environment")),
                f"not a node setting: {', '.join(unknown)}",
                "known: " + ", ".join(sorted(SETTINGS)),
            )
        )

    def readable(key: str, value: str | None) -> Path | None:
        if value is None:
            return None
        path = (base / value).resolve()
        if not os.access(path, os.R_OK) or not path.is_file():
            source = where if own is None or key in own.model_fields_set else ("nodes", "ssh")
            problems.append(
                ConfigProblem(
                    file,
                    line_of(lines, (*source, key)),
                    ".".join((*source, key)),
                    f"{path} is not a readable file",
                    "give the path of the file (relative paths are relative to this config)",
                )
            )
        return path

    target = SshTarget(
        host=merged.host or address or "",
        port=merged.port,
        user=merged.user,
        key_file=readable("key_file", merged.key_file),
        known_hosts=readable("known_hosts", merged.known_hosts),
        connect_timeout_s=merged.connect_timeout.total_seconds(),
        keepalive_s=merged.keepalive.total_seconds(),
        idle_timeout_s=merged.idle_timeout.total_seconds(),
        sudo_user=merged.sudo_user,
        program=tuple(merged.program),
        max_bandwidth=merged.max_bandwidth,
        environment=tuple(sorted(environment.items())),
    )
    return target, problems


def _host_of_all(
    nodes: NodesTable, file: str, lines: dict[tuple[str, ...], int]
) -> list[ConfigProblem]:
    """`host` in [nodes.ssh] would send every node to one host."""
    if nodes.ssh is None or nodes.ssh.host is None:
        return []
    return [
        ConfigProblem(
            file,
            line_of(lines, ("nodes", "ssh", "host")),
            "nodes.ssh.host",
            "would send every node to one host",
            'set it per node: [nodes.hosts."10.0.0.1".ssh] host = "db1.internal"',
        )
    ]


def _jmx_settings(nodes: NodesTable, address: str | None) -> dict[str, str]:
    """The JMX address and port the node's own table sets, for its program. ([nodes]'
    jmx_port is the local nodes' default: a remote node's host decides its own.)"""
    host = None if address is None else nodes.hosts[address]
    settings = {}
    if host is not None and host.jmx_port is not None:
        settings["CASSY_NODE_JMX_PORT"] = str(host.jmx_port)
    if host is not None and host.jmx_host is not None:
        settings["CASSY_NODE_JMX_HOST"] = host.jmx_host
    return settings
