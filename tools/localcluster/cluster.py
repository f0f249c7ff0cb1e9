"""Start, watch and stop a real local Cassandra cluster of 1 to 3 nodes, by PID.

Every process this module starts is recorded in `<root>/cluster.json`, so a later process (the
CLI's `stop`, a test's clean-up) stops exactly those processes and nothing else.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster

from tools.localcluster.artifacts import CassandraJars, fetch
from tools.localcluster.errors import LocalClusterError
from tools.localcluster.java import find_java
from tools.localcluster.nodeconfig import (
    DEFAULT_SUPERUSER,
    STORAGE_PORT,
    NodeSpec,
    nodetool_command,
)

log = logging.getLogger(__name__)

MAX_NODES = 3
STATE_FILE = "cluster.json"
READY_LINE = "Starting listening for CQL clients"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel kills it when the parent goes away."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _port_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _can_log_in(host: str, port: int, credentials: tuple[str, str]) -> bool:
    """True once CQL accepts the credentials: the default superuser is created just after
    the node starts listening, so the port answering is not enough."""
    driver = Cluster(
        contact_points=[host],
        port=port,
        auth_provider=PlainTextAuthProvider(*credentials),
        protocol_version=5,
        connect_timeout=5,
        control_connection_timeout=5,
        schema_metadata_enabled=False,
        token_metadata_enabled=False,
    )
    try:
        driver.connect().execute("SELECT release_version FROM system.local")
    except Exception:  # any refusal or timeout: not ready yet
        return False
    finally:
        driver.shutdown()
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; only its exit status is left to collect.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _pid_is_node(pid: int, spec: NodeSpec) -> bool:
    """True if `pid` is still the JVM started for this node (PIDs get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"-Dlocalcluster.node={spec.home}".encode() in cmdline


def log_tail(spec: NodeSpec, lines: int = 40) -> str:
    parts = []
    for path in (spec.log_file, spec.stdout_file):
        if path.exists():
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
    return "\n".join(parts) or f"(no log written under {spec.log_dir})"


@dataclass(frozen=True)
class NodeStatus:
    """One row of `nodetool status`: e.g. state 'UN' for Up/Normal."""

    address: str
    state: str


def parse_status(output: str) -> list[NodeStatus]:
    rows = []
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 2 and len(fields[0]) == 2 and fields[0][0] in "UD":
            rows.append(NodeStatus(address=fields[1], state=fields[0]))
    return rows


Progress = Callable[[str], None]
"""Told each step of a start, as a line for people."""


def _quiet(step: str) -> None:
    """Progress nobody watches."""


class LocalCluster:
    """A handle on the nodes of one local cluster under `root`."""

    def __init__(
        self,
        root: Path,
        nodes: int,
        *,
        cluster_name: str = "localcluster",
        first_octet: int = 1,
        heap_mb: int = 512,
        jars: CassandraJars | None = None,
        java: str | None = None,
        die_with_parent: bool = True,
        authenticator: str | None = None,
        client_tls_pem: Path | None = None,
    ) -> None:
        """`authenticator` (e.g. "PasswordAuthenticator") goes into every cassandra.yaml;
        the readiness wait then logs in as the default superuser cassandra/cassandra.
        `client_tls_pem` (a node key and certificate in one PEM) lets CQL clients use TLS."""
        if not 1 <= nodes <= MAX_NODES:
            raise LocalClusterError(f"a local cluster has 1 to {MAX_NODES} nodes, not {nodes}")
        if heap_mb > 768:
            raise LocalClusterError(
                f"heap_mb={heap_mb}: keep a local node's heap at 768 MB or less"
            )
        self.root = root.resolve()
        self.cluster_name = cluster_name
        self.authenticator = authenticator
        self.client_tls_pem = client_tls_pem
        tls_pem = client_tls_pem.resolve() if client_tls_pem is not None else None
        self.specs = [
            NodeSpec(
                n, nodes, self.root, cluster_name, first_octet, heap_mb, authenticator, tls_pem
            )
            for n in range(1, nodes + 1)
        ]
        self._jars = jars
        self._java = java
        self._die_with_parent = die_with_parent
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._pids: dict[str, int] = {}

    # ----------------------------------------------------------------- lookups
    @property
    def jars(self) -> CassandraJars:
        if self._jars is None:
            self._jars = fetch()
        return self._jars

    @property
    def java(self) -> str:
        if self._java is None:
            self._java = find_java()
        return self._java

    @property
    def addresses(self) -> list[str]:
        return [spec.address for spec in self.specs]

    def spec(self, node: int | str) -> NodeSpec:
        """A node by 1-based number, name ('node2') or address ('127.0.0.2')."""
        for spec in self.specs:
            if node in (spec.number, spec.name, spec.address, str(spec.number)):
                return spec
        raise LocalClusterError(f"no node {node!r} in this cluster ({', '.join(self.addresses)})")

    def pid(self, node: int | str) -> int | None:
        return self._pids.get(self.spec(node).name)

    # ------------------------------------------------------------------ state
    def _save_state(self) -> None:
        state = {
            "cluster_name": self.cluster_name,
            "nodes": len(self.specs),
            "first_octet": self.specs[0].first_octet,
            "heap_mb": self.specs[0].heap_mb,
            "authenticator": self.authenticator,
            "client_tls_pem": str(self.client_tls_pem) if self.client_tls_pem else None,
            "pids": self._pids,
        }
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.root / STATE_FILE)

    @classmethod
    def attach(cls, root: Path) -> LocalCluster:
        """A handle on a cluster started by another process, from its state file."""
        path = root / STATE_FILE
        if not path.exists():
            raise LocalClusterError(f"no local cluster under {root} (no {STATE_FILE})")
        state = json.loads(path.read_text())
        cluster = cls(
            root,
            int(state["nodes"]),
            cluster_name=state["cluster_name"],
            first_octet=int(state["first_octet"]),
            heap_mb=int(state["heap_mb"]),
            die_with_parent=False,
            authenticator=state.get("authenticator"),
            client_tls_pem=Path(state["client_tls_pem"]) if state.get("client_tls_pem") else None,
        )
        cluster._pids = {name: int(pid) for name, pid in state["pids"].items()}
        return cluster

    # --------------------------------------------------------------- starting
    def _check_ports(self, specs: Iterable[NodeSpec]) -> None:
        busy = []
        for spec in specs:
            for host, port, what in (
                (spec.address, spec.cql_port, "CQL"),
                (spec.address, STORAGE_PORT, "storage"),
                ("127.0.0.1", spec.jmx_port, "JMX"),
            ):
                if not _port_free(host, port):
                    busy.append(f"{spec.name} {what} {host}:{port}")
        if busy:
            raise LocalClusterError(
                "ports already in use: " + ", ".join(busy) + ". Stop what holds them "
                "(another local cluster? `python -m tools.localcluster stop --root DIR`) "
                "or start this cluster on other addresses (first_octet)."
            )

    def _launch(self, spec: NodeSpec) -> None:
        spec.write_config()
        command = spec.java_command(self.java, self.jars)
        with spec.stdout_file.open("ab") as out:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=spec.home,
                start_new_session=True,
                # prctl only; no locks are taken between fork and exec.
                preexec_fn=_die_with_parent if self._die_with_parent else None,  # noqa: PLW1509
            )
        self._procs[spec.name] = proc
        self._pids[spec.name] = proc.pid
        self._save_state()
        log.info("node started node=%s address=%s pid=%d", spec.name, spec.address, proc.pid)

    def _alive(self, spec: NodeSpec) -> bool:
        proc = self._procs.get(spec.name)
        if proc is not None:
            return proc.poll() is None
        pid = self._pids.get(spec.name)
        return pid is not None and _pid_alive(pid) and _pid_is_node(pid, spec)

    def _wait_cql(
        self, specs: Sequence[NodeSpec], deadline: float, progress: Progress = _quiet
    ) -> None:
        waiting = list(specs)
        began = time.monotonic()
        while waiting:
            for spec in list(waiting):
                if not self._alive(spec):
                    raise LocalClusterError(
                        f"{spec.name} ({spec.address}) exited while starting\n{log_tail(spec)}"
                    )
                logged = spec.log_file.exists() and READY_LINE in spec.log_file.read_text(
                    errors="replace"
                )
                if logged and _port_answers(spec.address, spec.cql_port) and self._logs_in(spec):
                    waiting.remove(spec)
                    done = len(specs) - len(waiting)
                    progress(
                        f"{spec.name} ({spec.address}) serves CQL after "
                        f"{time.monotonic() - began:.0f} s ({done} of {len(specs)})"
                    )
            if waiting and time.monotonic() > deadline:
                names = ", ".join(s.name for s in waiting)
                raise LocalClusterError(
                    f"{names} did not serve CQL in time\n{log_tail(waiting[0])}"
                )
            if waiting:
                time.sleep(1)

    def _logs_in(self, spec: NodeSpec) -> bool:
        if spec.authenticator is None:
            return True
        return _can_log_in(spec.address, spec.cql_port, DEFAULT_SUPERUSER)

    def _wait_all_up(self, deadline: float) -> None:
        """Every node's own `nodetool status` must show every node UN."""
        while True:
            pending = []
            for spec in self.specs:
                if not self._alive(spec):
                    raise LocalClusterError(f"{spec.name} exited\n{log_tail(spec)}")
                done = self._run_nodetool(spec, ["status"], timeout=120)
                states = {row.address: row.state for row in parse_status(done.stdout)}
                not_up = [a for a in self.addresses if states.get(a) != "UN"]
                if done.returncode != 0 or not_up:
                    pending.append(f"{spec.name} sees {not_up or 'an error'}")
            if not pending:
                return
            if time.monotonic() > deadline:
                raise LocalClusterError("nodes did not all reach UN in time: " + "; ".join(pending))
            time.sleep(2)

    def start_all(self, timeout: float = 300, progress: Progress = _quiet) -> LocalCluster:
        """Start every node at once and wait until each serves CQL and sees all nodes UN.

        `progress` hears each step as it happens (for people watching a slow start).
        """
        self._check_ports(self.specs)
        began = time.monotonic()
        deadline = began + timeout
        try:
            for spec in self.specs:
                self._launch(spec)
            progress(f"{len(self.specs)} JVM(s) launched; waiting for CQL")
            self._wait_cql(self.specs, deadline, progress)
            self._wait_all_up(deadline)
            progress(f"every node sees every node Up/Normal after {time.monotonic() - began:.0f} s")
        except BaseException:
            self.stop_all(graceful=False)
            raise
        return self

    def start(self, node: int | str, timeout: float = 240) -> None:
        """Start one stopped node again with the same config and data, and wait for UN."""
        spec = self.spec(node)
        if self._alive(spec):
            raise LocalClusterError(f"{spec.name} is already running (pid {self.pid(node)})")
        self._check_ports([spec])
        deadline = time.monotonic() + timeout
        # A restarted node needs a fresh log to be judged ready by the ready line.
        if spec.log_file.exists():
            spec.log_file.rename(spec.log_file.with_suffix(f".{int(time.time())}.log"))
        self._launch(spec)
        try:
            self._wait_cql([spec], deadline)
            self._wait_all_up(deadline)
        except BaseException:
            self._signal(spec, signal.SIGKILL, wait=30)
            raise

    # --------------------------------------------------------------- stopping
    def _signal(self, spec: NodeSpec, sig: int, wait: float) -> bool:
        """Send `sig` to the node's JVM (only if it is still ours) and wait for it to exit."""
        pid = self._pids.get(spec.name)
        if pid is None:
            return True
        proc = self._procs.get(spec.name)
        if proc is None and not (_pid_alive(pid) and _pid_is_node(pid, spec)):
            self._forget(spec)
            return True
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                break
            if proc is None and not _pid_alive(pid):
                break
            time.sleep(0.2)
        else:
            return False
        self._forget(spec)
        return True

    def _forget(self, spec: NodeSpec) -> None:
        self._procs.pop(spec.name, None)
        self._pids.pop(spec.name, None)
        self._save_state()

    def stop(self, node: int | str, timeout: float = 90) -> None:
        """Stop a node cleanly (SIGTERM drains it), SIGKILL if it does not exit in time."""
        spec = self.spec(node)
        if not self._signal(spec, signal.SIGTERM, timeout):
            log.warning("node did not stop in time, killing node=%s", spec.name)
            self._signal(spec, signal.SIGKILL, 30)

    def kill(self, node: int | str) -> None:
        """Kill a node at once (SIGKILL), as a crash would."""
        self._signal(self.spec(node), signal.SIGKILL, 30)

    def stop_all(self, graceful: bool = True) -> None:
        """Stop exactly the processes this cluster started, by PID."""
        for spec in self.specs:
            if graceful:
                with contextlib.suppress(ProcessLookupError):
                    pid = self._pids.get(spec.name)
                    if pid is not None and (spec.name in self._procs or _pid_is_node(pid, spec)):
                        os.kill(pid, signal.SIGTERM)
        for spec in self.specs:
            if graceful:
                self.stop(spec.number)
            else:
                self.kill(spec.number)

    def running(self) -> dict[str, int | None]:
        """Each node's PID if its JVM is alive, else None."""
        return {
            spec.name: self._pids.get(spec.name) if self._alive(spec) else None
            for spec in self.specs
        }

    # ----------------------------------------------------------------- using
    def _run_nodetool(
        self, spec: NodeSpec, args: Sequence[str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        command = [*nodetool_command(self.java, self.jars, "127.0.0.1", spec.jmx_port), *args]
        try:
            return subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(command, 124, "", f"timed out: {exc}")

    def nodetool(self, node: int | str, *args: str, timeout: float = 180) -> str:
        """Run nodetool against one node; its output, or an error with what it printed."""
        spec = self.spec(node)
        done = self._run_nodetool(spec, args, timeout)
        if done.returncode != 0:
            raise LocalClusterError(
                f"nodetool {' '.join(args)} on {spec.name} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}"
            )
        return done.stdout

    def nodetool_argv(self, node: int | str) -> list[str]:
        """The command line of `nodetool -h 127.0.0.1 -p <jmx port>` for this node."""
        spec = self.spec(node)
        return nodetool_command(self.java, self.jars, "127.0.0.1", spec.jmx_port)

    def describe(self) -> list[dict[str, object]]:
        """What a client needs to reach each node, as plain data."""
        return [
            {
                "name": spec.name,
                "address": spec.address,
                "cql_port": spec.cql_port,
                "jmx_port": spec.jmx_port,
                "pid": self._pids.get(spec.name),
                "data_dir": str(spec.data_dir),
                "commitlog_dir": str(spec.commitlog_dir),
                "hints_dir": str(spec.hints_dir),
                "saved_caches_dir": str(spec.saved_caches_dir),
                "log_file": str(spec.log_file),
            }
            for spec in self.specs
        ]
