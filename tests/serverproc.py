"""The built-in server as a real process on loopback, for tests: start, read its port, stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tools.localcluster import LocalCluster
from tools.localcluster.nodeconfig import nodetool_jvm_table

REPO = Path(__file__).resolve().parents[1]
NODETOOL = REPO / "tools" / "localcluster" / "nodetool"
_LISTENING = re.compile(r"server listening address=([\d.]+):(\d+)")


def pid_running(pid: int) -> bool:
    """Alive and not a zombie waiting for a reaper."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def server_head(storage: str) -> str:
    """[server] on a free loopback port, [metadata] beside the config, and `storage`."""
    return f"""[server]
host = "127.0.0.1"
port = 0
shutdown_grace = "5s"

[metadata]
path = "metadata.db"

{storage}"""


def server_toml(
    work: Path,
    clusters: list[LocalCluster],
    *,
    extra: str = "",
    nodetool: Path = NODETOOL,
    resident: bool = False,
    storage: str | None = None,
) -> Path:
    """A server config for the given local clusters, with storage and metadata under `work`;
    `resident` runs nodetool in one JVM instead of a process per command; `storage` is a
    whole [storage] table instead of a directory under `work`."""
    if resident:  # after `extra`, whose first lines may be keys of [nodes]
        extra += nodetool_jvm_table(clusters[0].java, clusters[0].jars)
    hosts = "".join(
        f'\n[nodes.hosts."{spec.address}"]\njmx_host = "127.0.0.1"\n'
        f'jmx_port = {spec.jmx_port}\ndata_dir = "{spec.data_dir}"\n'
        f'commitlog_dir = "{spec.commitlog_dir}"\nhints_dir = "{spec.hints_dir}"\n'
        f'saved_caches_dir = "{spec.saved_caches_dir}"\n'
        for cluster in clusters
        for spec in cluster.specs
    )
    path = work / "server.toml"
    path.write_text(
        server_head(storage or f'[storage]\nuri = "{(work / "storage").as_uri()}"\n')
        + f"""
[nodes]
nodetool = ["{nodetool}"]
nodetool_timeout = "5m"
{extra}{hosts}"""
    )
    return path


@dataclass
class ServerProcess:
    """One `cassy-scheduler serve` process; `address` is where it listens."""

    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    address: str = ""

    def start(self, timeout: float = 60) -> ServerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cassy_scheduler", "serve", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            match = _LISTENING.search(text)
            if match:
                self.address = f"{match.group(1)}:{match.group(2)}"
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{text}")
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not listen within {timeout}s:\n{self.log.read_text()}")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as a service manager would; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")
