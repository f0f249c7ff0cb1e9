"""The example pausable application as a real process on loopback: start, ask Stats, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import grpc
from google.protobuf import empty_pb2

from cassy_scheduler.protocol.generated import cassy_pb2_grpc

REPO = Path(__file__).resolve().parents[1]


@dataclass
class AppProcess:
    """One `python -m examples.pausable_app` process listening on `listen` (host:port)."""

    listen: str
    cassandra: list[str]
    keyspace: str
    log: Path
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Self:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        contact = [arg for address in self.cassandra for arg in ("--cassandra", address)]
        command = [
            sys.executable,
            "-m",
            "examples.pausable_app",
            "--listen",
            self.listen,
            *contact,
            "--keyspace",
            self.keyspace,
            *self.extra,
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                command,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "admin listening" in self.output():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"application exited ({self.proc.returncode}):\n{self.output()}")
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"application did not listen within {timeout}s:\n{self.output()}")

    def stats(self) -> dict[str, Any]:
        with grpc.insecure_channel(self.listen) as channel:
            reply = cassy_pb2_grpc.AdminStub(channel).Stats(empty_pb2.Empty(), timeout=10)
        result: dict[str, Any] = json.loads(reply.stats)
        return result

    def wait_for_pairs(self, count: int, timeout: float = 60) -> None:
        """Until the application has written at least `count` pairs."""
        deadline = time.monotonic() + timeout
        while self.stats()["pairs_written"] < count:
            assert time.monotonic() < deadline, self.stats()
            time.sleep(0.2)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (finishing outstanding writes), SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
