"""How the server reaches a Cassandra node: where it is, and a way to run nodetool against it.

Node work goes through a `NodeExecutor`, so the same backup code can drive nodes on this host
(`LocalExecutor`) or, later, nodes reached over SSH.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cassy_scheduler.node.sshtarget import SshTarget

_log = logging.getLogger(__name__)

DEFAULT_JMX_HOST = "127.0.0.1"
DEFAULT_JMX_PORT = 7199
_TAIL_LINES = 12
_STACK_LINE = re.compile(r"^\s+(at \S+\(|\.\.\. \d+ more)")


class NodeError(Exception):
    """Base of every error raised while working on a Cassandra node."""


class NodetoolError(NodeError):
    """A nodetool command failed, timed out or could not be started."""

    def __init__(
        self, address: str, args: Sequence[str], exit_code: int | None, output: str
    ) -> None:
        self.address = address
        self.command = tuple(args)
        self.exit_code = exit_code
        self.output = output
        outcome = "did not finish" if exit_code is None else f"exited with {exit_code}"
        super().__init__(
            f"nodetool {' '.join(args)} on {address} {outcome}: {output or '(no output)'}"
        )


class DiscoveryError(NodeError):
    """The facts of a cluster (name, nodes, keyspaces, data dir) could not be read."""


class NodeUnavailable(DiscoveryError):  # noqa: N818 (the name reads as the condition)
    """Some nodes are not Up and Normal, so the cluster cannot be worked on as a whole."""

    def __init__(self, states: Mapping[str, str]) -> None:
        self.states = dict(sorted(states.items()))
        listed = ", ".join(f"{address} ({state})" for address, state in self.states.items())
        super().__init__(
            f"nodes not Up/Normal: {listed}; every node must be Up and Normal (UN in "
            "`nodetool status`): start the down nodes or wait for joins, leaves and moves "
            "to finish, then try again"
        )


@dataclass(frozen=True)
class NodeEndpoint:
    """How to reach one Cassandra node; `data_dir` None means ask the node for it."""

    address: str
    jmx_host: str = DEFAULT_JMX_HOST
    jmx_port: int = DEFAULT_JMX_PORT
    data_dir: Path | None = None
    ssh: SshTarget | None = None  # set: the node's host is reached over SSH


class NodeExecutor(Protocol):
    """Runs nodetool against a node."""

    def run(self, node: NodeEndpoint, args: Sequence[str], timeout_s: float) -> str: ...

    def stop_running(self) -> int:
        """Stop every command still running and refuse new ones; returns how many stopped."""
        ...


def timed_out(node: NodeEndpoint, args: Sequence[str], timeout_s: float) -> NodetoolError:
    """The error of a command that did not finish in time, saying where to look."""
    return NodetoolError(
        node.address,
        args,
        None,
        f"timed out after {timeout_s:g} s; check that JMX answers on "
        f"{node.jmx_host}:{node.jmx_port} or allow a longer timeout",
    )


def output_tail(text: str, lines: int = _TAIL_LINES) -> str:
    """The useful end of nodetool's output: Java stack frames dropped, error lines kept."""
    kept = [
        line.rstrip()
        for line in text.splitlines()
        if line.strip() and not _STACK_LINE.match(line) and line != "-- StackTrace --"
    ]
    errors = [line for line in kept if line.startswith(("error:", "nodetool:"))]
    rest = [line for line in kept if line not in errors][-lines:]
    return "\n".join([*errors, *rest][: lines + len(errors)])


class LocalExecutor:
    """Runs a nodetool command on this host; the nodes' data directories are readable here.

    A server stopping after its grace period calls `stop_running`, so a nodetool call that
    hangs on an unresponsive JMX port cannot keep the process alive.
    """

    def __init__(self, nodetool: Sequence[str]) -> None:
        if not nodetool:
            raise ValueError("nodetool command is empty: give e.g. ['nodetool'] or its full path")
        self._nodetool = tuple(nodetool)
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[str]] = set()
        self._stopped = False

    def stop_running(self) -> int:
        with self._lock:
            self._stopped = True
            running = list(self._running)
        for proc in running:
            _kill_group(proc)
        return len(running)

    def run(self, node: NodeEndpoint, args: Sequence[str], timeout_s: float) -> str:
        command = [*self._nodetool, "-h", node.jmx_host, "-p", str(node.jmx_port), *args]
        started = time.monotonic()
        exit_code, output = self._call(node, args, command, timeout_s)
        _log.debug(
            "nodetool node=%s command=%r exit=%d seconds=%.1f",
            node.address,
            " ".join(args),
            exit_code,
            time.monotonic() - started,
        )
        if exit_code != 0:
            raise NodetoolError(node.address, args, exit_code, output_tail(output))
        return output

    def _call(
        self, node: NodeEndpoint, args: Sequence[str], command: list[str], timeout_s: float
    ) -> tuple[int, str]:
        """Run `command`; stdout alone on success, stdout then stderr on failure."""
        with self._lock:
            if self._stopped:
                raise NodetoolError(node.address, args, None, "not started: the server is stopping")
            try:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    start_new_session=True,  # its own group: a wrapper's java child dies too
                )
            except FileNotFoundError as exc:
                raise NodetoolError(
                    node.address,
                    args,
                    None,
                    f"cannot start {self._nodetool[0]!r} ({exc.strerror}); "
                    "install nodetool or configure the full path of the nodetool command",
                ) from exc
            self._running.add(proc)
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            _kill_group(proc)
            # A descendant that left the group may still hold the pipes: do not wait on it.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=5)
            raise timed_out(node, args, timeout_s) from exc
        finally:
            with self._lock:
                self._running.discard(proc)
        if proc.returncode < 0 and self._stopped:
            raise NodetoolError(node.address, args, None, "stopped: the server is stopping")
        return proc.returncode, stdout if proc.returncode == 0 else stdout + stderr


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the group a call runs in, unless the call is known to have ended already.

    (A call reaped between the check and the signal leaves a tiny window, as in
    Popen.send_signal; the group id is only reused once no process of it is left.)
    """
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
