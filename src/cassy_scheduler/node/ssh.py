"""SSH sessions to the hosts of remote nodes, on Paramiko: one connection per host, reused.

Host keys are checked strictly against a known_hosts file: an unknown key or a changed one
refuses the host with both fingerprints and the fix, never a silent accept. Each remote
command is sent as one string in which every argument is quoted as one word (shlex.quote),
so no value from a config or a request is ever read by the remote shell as syntax.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import threading
from collections.abc import Sequence
from pathlib import Path

import paramiko

from cassy_scheduler.node.executor import NodeError
from cassy_scheduler.node.sshtarget import SshTarget

_log = logging.getLogger(__name__)


class SshError(NodeError):
    """A node's host could not be reached over SSH, or refused us; the message says why."""


class HostKeyError(SshError):
    """The host's key is not the one known_hosts holds for it (or none is held)."""


def fingerprint(key: paramiko.PKey) -> str:
    """The key's SHA-256 fingerprint as OpenSSH prints it (ssh-keygen -lf)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _known_name(target: SshTarget) -> str:
    return target.host if target.port == 22 else f"[{target.host}]:{target.port}"


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    def __init__(self, target: SshTarget, known_hosts: Path) -> None:
        self._target = target
        self._known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        name = _known_name(self._target)
        raise HostKeyError(
            f"host key of {self._target.where} is unknown: it offers {key.get_name()} "
            f"{fingerprint(key)}, and {self._known_hosts} has no key for {name}; check that "
            f"fingerprint with the host's owner, then add it: ssh-keyscan -p "
            f"{self._target.port} {self._target.host} >> {self._known_hosts}"
        )


class SshConnections:
    """Open connections by host, port and user; a dropped one is opened again when next
    needed. Thread-safe: nodes of one host share its connection, each call its own channel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, int, str | None], paramiko.SSHClient] = {}
        self._connecting: dict[tuple[str, int, str | None], threading.Lock] = {}
        self._closed = False

    def open_channel(self, target: SshTarget, arguments: Sequence[str]) -> paramiko.Channel:
        """A channel running `program arguments...` on the target's host."""
        client = self._client(target)
        transport = client.get_transport()
        try:
            if transport is None:
                raise paramiko.SSHException("no transport")
            channel = transport.open_session(timeout=target.connect_timeout_s)
            channel.exec_command(target.command_line(arguments))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if transport is None or not transport.is_active():
                self.forget(target)  # only a dead connection: others may share a live one
            raise SshError(
                f"cannot start the node program on {target.where}: {exc or type(exc).__name__}"
            ) from exc
        return channel

    def forget(self, target: SshTarget) -> None:
        """Close the target's connection, so the next call opens a new one."""
        with self._lock:
            client = self._clients.pop((target.host, target.port, target.user), None)
        if client is not None:
            client.close()

    def close(self) -> int:
        """Close every connection (their channels end, so remote programs see the end)."""
        with self._lock:
            self._closed = True
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.close()
        return len(clients)

    def _client(self, target: SshTarget) -> paramiko.SSHClient:
        """The host's open connection, else a new one (hosts connect side by side)."""
        key = (target.host, target.port, target.user)
        with self._lock:
            self._refuse_if_closed(target)
            connecting = self._connecting.setdefault(key, threading.Lock())
        with connecting:
            with self._lock:
                client = self._clients.get(key)
            transport = None if client is None else client.get_transport()
            if client is not None and transport is not None and transport.is_active():
                return client
            if client is not None:
                client.close()
            client = _connect(target)
            with self._lock:
                if self._closed:
                    client.close()
                self._refuse_if_closed(target)
                self._clients[key] = client
            return client

    def _refuse_if_closed(self, target: SshTarget) -> None:
        if self._closed:
            raise SshError(f"not connecting to {target.where}: the server is stopping")


def _connect(target: SshTarget) -> paramiko.SSHClient:
    known_hosts = target.known_hosts or Path.home() / ".ssh" / "known_hosts"
    client = paramiko.SSHClient()
    try:
        client.load_host_keys(str(known_hosts))
    except OSError as exc:
        raise HostKeyError(
            f"cannot read known_hosts {known_hosts} ({exc.strerror or exc}) to check "
            f"{target.where}'s host key: create it with the hosts' keys (ssh-keyscan), or set "
            "known_hosts in [nodes.ssh]"
        ) from exc
    client.set_missing_host_key_policy(_RefuseUnknown(target, known_hosts))
    try:
        client.connect(
            hostname=target.host,
            port=target.port,
            username=target.user,
            key_filename=None if target.key_file is None else str(target.key_file),
            allow_agent=target.key_file is None,
            look_for_keys=target.key_file is None,
            timeout=target.connect_timeout_s,
            banner_timeout=target.connect_timeout_s,
            auth_timeout=target.connect_timeout_s,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyError(
            f"host key of {target.where} CHANGED: it offers {fingerprint(exc.key)}, "
            f"known_hosts has {fingerprint(exc.expected_key)}; refused (someone may be in "
            "the middle). If the host was reinstalled, check the new key with its owner, "
            f"then: ssh-keygen -f {known_hosts} -R '{_known_name(target)}' and add it"
        ) from None
    except HostKeyError:
        client.close()
        raise
    except paramiko.AuthenticationException as exc:
        client.close()
        key = f"key {target.key_file}" if target.key_file else "the agent's and default keys"
        raise SshError(
            f"{target.where} refused to log in with {key} ({exc}): add the public key to "
            "that user's ~/.ssh/authorized_keys, or set user and key_file in [nodes.ssh]"
        ) from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        client.close()
        reason = "timed out" if isinstance(exc, socket.timeout) else str(exc) or type(exc).__name__
        raise SshError(
            f"cannot connect to {target.where} over SSH ({reason}): check that the host is "
            "up and sshd listens on that port"
        ) from None
    transport = client.get_transport()
    if transport is not None and target.keepalive_s > 0:
        transport.set_keepalive(int(max(1, target.keepalive_s)))
    _log.info("ssh connected to %s", target.where)
    return client
