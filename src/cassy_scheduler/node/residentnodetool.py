"""nodetool commands run in one long-lived JVM instead of one JVM per command.

Starting nodetool costs a JVM launch: about a second of CPU and 100 MB each time, which is
most of what an incremental with nothing new, or a snapshot of unchanged data, costs. With
`[nodes.nodetool_jvm]` set, the server keeps one JVM (java/ResidentNodetool.java, run from
source by the JDK) that executes Cassandra's own `NodeTool` class per request, over a fresh
JMX connection each: the same commands, output and exit codes as the `nodetool` script, a few
milliseconds each. It is started with the server, so a wrong classpath fails the start, and
started again by the next call if it dies.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import itertools
import logging
import os
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cassy_scheduler.node.executor import NodeEndpoint, NodeError, NodetoolError, output_tail

_log = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("java") / "ResidentNodetool.java"
START_TIMEOUT_S = 120.0  # compiling the helper and loading nodetool's classes, on a busy host
_STDERR_LINES = 40
_EXIT_MARKER = "cassy-resident-exit"  # the helper's words for "the command called System.exit"

#: The JDK 11+ module flags Cassandra's own client scripts pass (jvm*-clients.options), plus a
#: small heap: the JVM holds no data, only the commands' output.
CLIENT_JVM_OPTIONS = (
    "-Xmx128M",
    "-XX:+UseSerialGC",
    *(
        flag
        for module in (
            "java.base/jdk.internal.misc",
            "java.base/jdk.internal.ref",
            "java.base/sun.nio.ch",
            "java.management.rmi/com.sun.jmx.remote.internal.rmi",
            "java.rmi/sun.rmi.registry",
            "java.rmi/sun.rmi.server",
            "java.sql/java.sql",
        )
        for flag in ("--add-exports", f"{module}=ALL-UNNAMED")
    ),
    *(
        flag
        for module in (
            "java.base/java.lang.module",
            "java.base/jdk.internal.loader",
            "java.base/jdk.internal.ref",
            "java.base/jdk.internal.reflect",
            "java.base/jdk.internal.math",
            "java.base/jdk.internal.module",
            "java.base/jdk.internal.util.jar",
            "java.base/sun.nio.ch",
            "jdk.management/com.sun.management.internal",
        )
        for flag in ("--add-opens", f"{module}=ALL-UNNAMED")
    ),
)


class NodetoolJvmError(NodeError):
    """The resident nodetool JVM could not be started."""


@dataclass(frozen=True)
class NodetoolJvm:
    """How to start the resident JVM: the java binary, Cassandra's jars, and JVM options
    beyond CLIENT_JVM_OPTIONS (later ones win, e.g. a larger -Xmx)."""

    classpath: str
    java: str = "java"
    options: tuple[str, ...] = ()


@dataclass
class _Call:
    """One request in flight: its reply, once the reader thread has it."""

    done: threading.Event
    exit_code: int | None = None
    output: str = ""


class _Jvm:
    """One running helper process, its reader threads and the calls waiting on it."""

    def __init__(self, jvm: NodetoolJvm) -> None:
        self.classpath = jvm.classpath
        command = [
            jvm.java,
            *CLIENT_JVM_OPTIONS,
            *jvm.options,
            "-cp",
            jvm.classpath,
            str(_SOURCE),
        ]
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                encoding="utf-8",
                start_new_session=True,
            )
        except OSError as exc:
            raise NodetoolJvmError(
                f"cannot start {jvm.java!r} ({exc.strerror}): set [nodes.nodetool_jvm] "
                "java to the full path of a JDK's java"
            ) from exc
        self.pending: dict[str, _Call] = {}
        self.abandoned = 0
        self.ready = threading.Event()
        self.ended = threading.Event()
        self.stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        threading.Thread(target=self._read_replies, name="nodetool-jvm-out", daemon=True).start()
        threading.Thread(target=self._read_stderr, name="nodetool-jvm-err", daemon=True).start()

    def _read_replies(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            words = line.rstrip("\n").split(" ")
            if words == ["ready"]:
                self.ready.set()
                continue
            if len(words) != 4:
                _log.warning("nodetool JVM printed an unexpected line: %.200s", line)
                continue
            call = self.pending.pop(words[0], None)
            if call is None:
                continue  # a call that timed out: nobody waits for it any more
            out, err = (base64.b64decode(part).decode("utf-8", "replace") for part in words[2:])
            call.exit_code = int(words[1])
            call.output = out if call.exit_code == 0 else out + _without_marker(err)
            call.done.set()
        self.proc.wait()
        self.ended.set()  # before the sweep: a call added after it sees `ended` (see run)
        for call in list(self.pending.values()):
            call.done.set()  # exit_code None: the JVM ended under it
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())
        self.proc.stderr.close()

    def wait_ready(self, timeout_s: float) -> None:
        """Return once the helper answers; on failure the JVM's own words say why."""
        deadline = time.monotonic() + timeout_s
        while not self.ready.wait(0.1):
            if self.ended.is_set() or time.monotonic() > deadline:
                self.kill()
                self.ended.wait(5)
                raise NodetoolJvmError(
                    f"the nodetool JVM {self._why_not_ready()}; check [nodes.nodetool_jvm] "
                    "classpath (Cassandra's lib/*.jar) and that java is a JDK 11 or newer "
                    "(it compiles a small helper at start)"
                )

    def _why_not_ready(self) -> str:
        if self.proc.returncode is None:
            return "did not answer"
        if any(
            "org.apache.cassandra" in line or "cannot find symbol" in line for line in self.stderr
        ):
            return (
                f"exited: Cassandra's nodetool classes are not on its classpath {self.classpath!r}"
            )
        return f"exited: {self.stderr_tail() or '(no output)'}"

    def send(self, call_id: str, args: Sequence[str]) -> bool:
        """Write one request; False when the JVM is gone."""
        assert self.proc.stdin is not None
        line = " ".join([call_id, *(urllib.parse.quote(arg, safe="") for arg in args)])
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            return False
        return True

    def stderr_tail(self) -> str:
        return output_tail("\n".join(self.stderr), 6)

    def kill(self) -> None:
        """SIGKILL its group, unless it is known to have ended (its pid may be reused)."""
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


class ResidentExecutor:
    """A `NodeExecutor` for nodes on this host whose nodetool commands share one JVM.

    Calls run concurrently inside it. A call that times out is abandoned (its JMX work may
    still finish on the node, as a killed nodetool's would); the JVM is replaced once no
    other call is running in it. `stop_running` kills the JVM and fails what was running.
    """

    def __init__(self, jvm: NodetoolJvm, start_timeout_s: float = START_TIMEOUT_S) -> None:
        self._config = jvm
        self._start_timeout_s = start_timeout_s
        self._lock = threading.Lock()
        self._jvm: _Jvm | None = None
        self._ids = itertools.count(1)
        self._stopped = False

    def is_local(self) -> bool:
        return True

    @property
    def pid(self) -> int | None:
        """The JVM's process id while one runs (for logs and tests)."""
        jvm = self._jvm
        return None if jvm is None or jvm.ended.is_set() else jvm.proc.pid

    def start(self) -> None:
        """Start the JVM now, so a wrong classpath or java is an error at the server's start."""
        with self._lock:
            self._current()

    def _current(self) -> _Jvm:
        """The running JVM, started (again) when there is none, it died, or it holds only
        calls that timed out. Called with the lock held."""
        jvm = self._jvm
        if jvm is not None and not jvm.ended.is_set() and not (jvm.abandoned and not jvm.pending):
            return jvm
        if jvm is not None:
            jvm.kill()
        started = time.monotonic()
        jvm = _Jvm(self._config)
        self._jvm = jvm
        jvm.wait_ready(self._start_timeout_s)
        if self._stopped:  # stop_running came while it started: it must not outlive the stop
            jvm.kill()
            raise NodetoolJvmError("the server is stopping")
        _log.info(
            "nodetool JVM started pid=%d seconds=%.1f", jvm.proc.pid, time.monotonic() - started
        )
        return jvm

    def stop_running(self) -> int:
        # Without the lock: a call may hold it while a JVM starts, and this must not wait.
        self._stopped = True
        jvm = self._jvm
        if jvm is None:
            return 0
        running = len(jvm.pending)
        jvm.kill()
        return running

    def run(self, node: NodeEndpoint, args: Sequence[str], timeout_s: float) -> str:
        started = time.monotonic()
        call_id = str(next(self._ids))
        call = _Call(threading.Event())
        with self._lock:
            if self._stopped:
                raise NodetoolError(node.address, args, None, "not started: the server is stopping")
            try:
                jvm = self._current()
            except NodetoolJvmError as exc:
                words = "stopped: the server is stopping" if self._stopped else str(exc)
                raise NodetoolError(node.address, args, None, words) from exc
            jvm.pending[call_id] = call
            sent = jvm.send(call_id, ["-h", node.jmx_host, "-p", str(node.jmx_port), *args])
        if not sent or (jvm.ended.is_set() and not call.done.is_set()):
            jvm.pending.pop(call_id, None)
            raise NodetoolError(node.address, args, None, self._ended_words(jvm))
        if not call.done.wait(timeout_s):
            with self._lock:
                abandoned = jvm.pending.pop(call_id, None) is not None
                jvm.abandoned += abandoned
            if abandoned:
                raise NodetoolError(
                    node.address,
                    args,
                    None,
                    f"timed out after {timeout_s:g} s; check that JMX answers on "
                    f"{node.jmx_host}:{node.jmx_port} or allow a longer timeout",
                )
            call.done.wait()  # the reply came as the time ran out: the reader is setting it
        if call.exit_code is None:
            raise NodetoolError(node.address, args, None, self._ended_words(jvm))
        _log.debug(
            "nodetool node=%s command=%r exit=%d seconds=%.2f jvm=resident",
            node.address,
            " ".join(args),
            call.exit_code,
            time.monotonic() - started,
        )
        if call.exit_code != 0:
            raise NodetoolError(node.address, args, call.exit_code, output_tail(call.output))
        return call.output

    def _ended_words(self, jvm: _Jvm) -> str:
        if self._stopped:
            return "stopped: the server is stopping"
        return f"the nodetool JVM ended during the call: {jvm.stderr_tail() or '(no output)'}"


def _without_marker(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if _EXIT_MARKER not in line)
