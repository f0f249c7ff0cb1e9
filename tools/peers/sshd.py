"""OpenSSH's sshd on loopback, serving local Cassandra nodes "as remote hosts", for tests,
the demo and benchmarks.

`SshHosts` makes one client key and, per node, an sshd of its own on the node's loopback
address with a throwaway host key and the environment the node program reads there (the
node's JMX port and nodetool). It writes the known_hosts file a server checks host keys
against. Debian's `openssh-server` is installed with apt-get when sshd is missing. Every
sshd runs in the foreground in its own session and is stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from tools.peers.objectservers import free_port
from tools.peers.processes import spawn, stop_group

SSHD = Path("/usr/sbin/sshd")
NODE_PROGRAM = Path(sys.executable).parent / "cassy-scheduler"
"""The node program the tests' sshd sessions run: this environment's own."""


def ensure_sshd() -> Path:
    """sshd from Debian's openssh-server, installed when absent."""
    if SSHD.exists():
        return SSHD
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError("sshd is missing and apt-get is not here: install openssh-server")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([apt, "update", "-q"], [apt, "install", "-y", "-q", "openssh-server"]):
        done = subprocess.run(
            command, check=False, env=env, capture_output=True, text=True, timeout=900
        )
        if done.returncode != 0 and command[1] == "install":
            raise RuntimeError(f"apt-get install openssh-server failed:\n{done.stderr[-2000:]}")
    if not SSHD.exists():
        raise RuntimeError("openssh-server installed but /usr/sbin/sshd is not there")
    return SSHD


def keygen(path: Path) -> Path:
    """A new ed25519 key pair without a passphrase at `path` and `path.pub`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cassy-test", "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path


@dataclass
class Sshd:
    """One sshd, listening on `address`:`port`."""

    address: str
    port: int
    host_key: Path
    process: subprocess.Popen[bytes]
    log: Path
    command: list[str] = field(default_factory=list)

    def known_hosts_line(self) -> str:
        key = self.host_key.with_suffix(".pub").read_text().split()
        return f"[{self.address}]:{self.port} {key[0]} {key[1]}\n"

    def sessions(self) -> list[int]:
        """PIDs of the sshd processes serving connections now (children of the listener)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.process.pid:
                    found.append(int(entry.name))
        return found

    def restart(self) -> None:
        """Start it again as it was (a host back from a reboot: same key, same port)."""
        self.stop()
        self.process = spawn(self.command, self.log)
        _wait_listening(self)

    def stop(self) -> None:
        stop_group(self.process)


def _wait_listening(server: Sshd) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"sshd exited at start:\n{server.log.read_text()[-2000:]}")
        try:
            with socket.create_connection((server.address, server.port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"sshd did not listen on {server.address}:{server.port}")


@dataclass
class SshHosts:
    """sshd per node address; one client key; a known_hosts file with every host key."""

    work: Path
    client_key: Path = field(init=False)
    known_hosts: Path = field(init=False)
    servers: dict[str, Sshd] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.client_key = keygen(self.work / "client_key")
        self.known_hosts = self.work / "known_hosts"
        self.known_hosts.write_text("")

    def start(self, address: str, environment: Mapping[str, str], port: int | None = None) -> Sshd:
        """sshd for the node at `address`; its sessions get `environment` (SetEnv)."""
        sshd = ensure_sshd()
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # its privilege separation dir
        home = self.work / address
        home.mkdir(exist_ok=True)
        host_key = keygen(home / "host_key")
        authorized = home / "authorized_keys"
        authorized.write_text(self.client_key.with_suffix(".pub").read_text())
        port = port or free_port(address)
        settings = " ".join(f'"{name}={value}"' for name, value in environment.items())
        config = home / "sshd_config"
        config.write_text(
            f"ListenAddress {address}:{port}\n"
            f"HostKey {host_key}\n"
            f"AuthorizedKeysFile {authorized}\n"
            f"PidFile {home / 'sshd.pid'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\nMaxSessions 64\nMaxStartups 64\n"
            "LogLevel INFO\n" + (f"SetEnv {settings}\n" if settings else "")
        )
        log = home / "sshd.log"
        command = [str(sshd), "-D", "-e", "-f", str(config)]
        server = Sshd(address, port, host_key, spawn(command, log), log, command)
        self.servers[address] = server
        _wait_listening(server)
        with self.known_hosts.open("a") as out:
            out.write(server.known_hosts_line())
        return server

    def nodes_toml(self, *, idle_timeout: str = "2m") -> str:
        """The server's [nodes] and [nodes.ssh] tables for these hosts: every node over SSH,
        logging in with the client key, host keys checked against known_hosts."""
        port = next(iter(self.servers.values())).port
        return (
            '[nodes]\nexecutor = "ssh"\nnodetool_timeout = "5m"\n\n[nodes.ssh]\n'
            f'port = {port}\nuser = "root"\nkey_file = "{self.client_key}"\n'
            f'known_hosts = "{self.known_hosts}"\nprogram = ["{NODE_PROGRAM}"]\n'
            f'idle_timeout = "{idle_timeout}"\n'
        )

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
