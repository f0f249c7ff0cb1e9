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
from cassy_scheduler.node.sshtarget import SshTarget
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
    own = None if address is None else nodes.hosts[address].ssh
    if own is None and nodes.executor != "ssh":
        return None, []
    defaults = nodes.ssh or SshTable()
    merged = defaults.model_copy(update=own.model_dump(exclude_unset=True) if own else {})
    where = ("nodes", "ssh") if own is None else ("nodes", "hosts", str(address), "ssh")
    problems: list[ConfigProblem] = []
    if nodes.ssh is not None and nodes.ssh.host is not None and address is None:
        problems.append(
            ConfigProblem(
                file,
                line_of(lines, ("nodes", "ssh", "host")),
                "nodes.ssh.host",
                "would send every node to one host",
                'set it per node: [nodes.hosts."10.0.0.1".ssh] host = "db1.internal"',
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
    )
    return target, problems
