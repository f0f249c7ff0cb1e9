"""Where a node reached over SSH lives, and the command its host runs (quoted word by word)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SETTINGS = frozenset(
    {
        "CASSY_NODE_JMX_HOST",
        "CASSY_NODE_JMX_PORT",
        "CASSY_NODE_NODETOOL",
        "CASSY_NODE_CASSANDRA_YAML",
        "CASSANDRA_CONF",
        "CASSANDRA_HOME",
    }
)
"""The variables a server may set for its node programs ([nodes.ssh] environment): sent
with each request, they survive `sudo`, which drops the login's own environment."""
SUDO_SETTINGS = frozenset(
    {"CASSY_NODE_JMX_HOST", "CASSY_NODE_JMX_PORT", "CASSY_NODE_CASSANDRA_YAML"}
)
"""Those a program run through sudo takes from a request: none names a command to run, so
the sudoers rule keeps confining what the login may run as Cassandra's user."""


@dataclass(frozen=True)
class SshTarget:
    """How to reach one node's host and run its node program there."""

    host: str
    port: int = 22
    user: str | None = None  # None: the server's own user name
    key_file: Path | None = None  # None: the SSH agent, then ~/.ssh's default keys
    known_hosts: Path | None = None  # None: ~/.ssh/known_hosts
    connect_timeout_s: float = 10.0
    keepalive_s: float = 15.0
    idle_timeout_s: float = 120.0  # a node program silent this long is taken for lost
    sudo_user: str | None = None  # run the node program as this user (sudo -n -u)
    program: tuple[str, ...] = ("cassy-scheduler",)
    max_bandwidth: int | None = None  # bytes/s for this node's uploads; None: [storage]'s
    environment: tuple[tuple[str, str], ...] = ()  # node settings sent with each request

    @property
    def where(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}:{self.port}"

    def command_line(self, arguments: Sequence[str]) -> str:
        """The remote command: every word quoted, so the remote shell splits nothing."""
        words = list(self.program) + list(arguments)
        if self.sudo_user is not None:
            words = ["sudo", "-n", "-u", self.sudo_user, "--", *words]
        return " ".join(shlex.quote(word) for word in words)
