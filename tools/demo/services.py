"""What the demo and the restore tour both start and stop: their settings, child processes
and the built-in server, so the two stay the same setup an operator would run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from tools.demo.configs import REPO, server_config
from tools.localcluster import LocalCluster
from tools.localcluster.cluster import MAX_NODES
from tools.peers.objectservers import (
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    s3_create_bucket,
    s3_storage_table,
    start_moto,
)

# Piped output (CI logs, `| tee`) would otherwise be cut at 80 columns, job names first.
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 132)


def env_number(name: str, default: int, low: int, high: int) -> int:
    """A whole-number setting from the environment; a bad one ends the tour with exit 2."""
    text = os.environ.get(name, "").strip() or str(default)
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        print(
            f"error: {name}={text!r} is not a whole number from {low} to {high}; "
            f"unset it for the default ({default})",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return value


@dataclass(frozen=True)
class Settings:
    """Where a tour keeps its files, how many nodes it starts and on which addresses."""

    work: Path
    nodes: int
    first_octet: int

    @classmethod
    def from_env(cls, default_dir: str, default_octet: int) -> Settings:
        """DEMO_DIR, DEMO_NODES and DEMO_FIRST_OCTET override the defaults."""
        work = Path(os.environ.get("DEMO_DIR", REPO / default_dir)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        return cls(
            work=work,
            nodes=env_number("DEMO_NODES", MAX_NODES, 1, MAX_NODES),
            first_octet=env_number("DEMO_FIRST_OCTET", default_octet, 1, 255 - MAX_NODES),
        )

    def cluster(self, name: str) -> LocalCluster:
        return LocalCluster(
            self.work / "cluster", self.nodes, cluster_name=name, first_octet=self.first_octet
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A child process whose output goes to `log` (appended), so the terminal stays readable."""
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}:\n{log.read_text()}")


def start_server(
    work: Path,
    cluster: LocalCluster,
    children: list[subprocess.Popen[bytes]],
    app: str | None = None,
) -> int:
    """`cassy-scheduler serve` for the cluster, as its own process; the port it listens on."""
    port = free_port()
    storage, where = _storage(work, children)
    server_toml = server_config(work, cluster, port, app, storage)
    serve = [sys.executable, "-m", "cassy_scheduler", "serve", "--config", str(server_toml)]
    children.append(start(serve, work / "server.log"))
    wait_listening(port, children[-1], work / "server.log")
    console.print(f"  built-in server: 127.0.0.1:{port}, backups in {where}")
    return port


def _storage(work: Path, children: list[subprocess.Popen[bytes]]) -> tuple[str | None, str]:
    """DEMO_STORAGE=s3: a local S3 server (moto's) the demo starts, with a bucket; the
    [storage] table for it and where backups go. Otherwise the directory beside the data."""
    kind = os.environ.get("DEMO_STORAGE", "file")
    if kind == "file":
        return None, str(work / "backups")
    if kind != "s3":
        raise SystemExit(f"DEMO_STORAGE={kind!r}: write DEMO_STORAGE=s3 or leave it unset")
    s3 = start_moto(work, sys.executable)
    children.append(s3.process)
    s3_create_bucket(s3, "demo-backups")
    os.environ.update(DEMO_S3_KEY=S3_ACCESS_KEY, DEMO_S3_SECRET=S3_SECRET_KEY)  # for serve
    table = s3_storage_table(
        s3.endpoint,
        "s3://demo-backups/cassandra",
        key_env="DEMO_S3_KEY",
        secret_env="DEMO_S3_SECRET",
    )
    return table, f"s3://demo-backups/cassandra on moto's S3 server at {s3.endpoint}"


def ignore_interrupts() -> None:
    """While a tour cleans up, a second Ctrl-C or SIGTERM must not leave half of it running."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each child, newest first (a scheduler before the server it talks to)."""
    for child in reversed(children):
        if child.poll() is not None:
            continue
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(90)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
