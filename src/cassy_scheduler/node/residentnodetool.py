"""nodetool commands run in one long-lived JVM instead of one JVM per command.

Starting nodetool costs a JVM launch: about a second of CPU and 100 MB each time, which is
most of what an incremental with nothing new, or a snapshot of unchanged data, costs. With
`[nodes.nodetool_jvm]` set, the server keeps one JVM (nodetooljvm.py) that executes
Cassandra's own `NodeTool` class per request, over a fresh JMX connection each: the same
commands, output and exit codes as the `nodetool` script, tens of milliseconds each. This
module decides when that JVM starts, is replaced and is stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from cassy_scheduler.node.executor import NodeEndpoint, NodetoolError, output_tail, timed_out
from cassy_scheduler.node.nodetooljvm import Call, JvmProcess, NodetoolJvm, NodetoolJvmError

_log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # compiling the helper and loading nodetool's classes, on a busy host
_LATE_REPLY_S = 30.0  # a reply that came as the time ran out is being handed over
_RETRY_START_AFTER_S = 10.0  # a start that failed is not tried again sooner


class ResidentExecutor:
    """A `NodeExecutor` for nodes on this host whose nodetool commands share one JVM.

    Calls run concurrently inside it. A call that times out is abandoned (its JMX work may
    still finish on the node, as a killed nodetool's would); the JVM is replaced once no
    other call is running in it. A JVM that died is started again by the next call.
    `stop_running` kills the JVM and fails what was running.
    """

    def __init__(self, jvm: NodetoolJvm, start_timeout_s: float = START_TIMEOUT_S) -> None:
        self._config = jvm
        self._start_timeout_s = start_timeout_s
        self._lock = threading.Lock()  # held while a JVM starts, so only one starts
        self._jvm: JvmProcess | None = None
        self._failed_start: tuple[float, str] | None = None  # when, and why
        self._stopped = False

    @property
    def pid(self) -> int | None:
        """The JVM's process id while one runs (for logs and tests)."""
        jvm = self._jvm
        return None if jvm is None or not jvm.alive else jvm.pid

    def running(self) -> int:
        """How many calls are waiting for their reply."""
        jvm = self._jvm
        return 0 if jvm is None else jvm.in_flight

    def start(self) -> None:
        """Start the JVM now, so a wrong classpath or java is an error at the server's start."""
        with self._lock:
            self._current()

    def _current(self) -> JvmProcess:
        """The running JVM, started (again) when there is none, it died, or it holds only
        calls that timed out. Called with the lock held."""
        jvm = self._jvm
        if jvm is not None and jvm.alive:
            if not (jvm.abandoned and not jvm.in_flight):
                return jvm
            jvm.kill()
        failed = self._failed_start
        if failed is not None and time.monotonic() - failed[0] < _RETRY_START_AFTER_S:
            raise NodetoolJvmError(failed[1])  # callers queued behind a start that just failed
        started = time.monotonic()
        try:
            jvm = JvmProcess(self._config)
            self._jvm = jvm
            jvm.wait_ready(self._start_timeout_s)
        except NodetoolJvmError as exc:
            self._failed_start = (time.monotonic(), str(exc))
            raise
        self._failed_start = None
        if self._stopped:  # stop_running came while it started: it must not outlive the stop
            jvm.kill()
            raise NodetoolJvmError("the server is stopping")
        _log.info("nodetool JVM started pid=%d seconds=%.1f", jvm.pid, time.monotonic() - started)
        return jvm

    def stop_running(self) -> int:
        # Without the lock: a call may hold it while a JVM starts, and this must not wait.
        self._stopped = True
        jvm = self._jvm
        if jvm is None:
            return 0
        running = jvm.in_flight  # read without a lock: a writer stuck on a full pipe holds it
        jvm.kill()
        return running

    def run(self, node: NodeEndpoint, args: Sequence[str], timeout_s: float) -> str:
        started = time.monotonic()
        call, jvm = self._call(node, args, timeout_s)
        if call.exit_code is None and not call.sent and not self._stopped:
            # The JVM had died before the request reached it (its reader not yet told):
            # nothing of it ran, so it goes to the JVM started in its place.
            jvm.ended.wait(_LATE_REPLY_S)
            call, jvm = self._call(node, args, timeout_s)
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

    def _call(
        self, node: NodeEndpoint, args: Sequence[str], timeout_s: float
    ) -> tuple[Call, JvmProcess]:
        """One request to the current JVM, waited for; a timeout raises, an ended JVM not."""
        with self._lock:
            if self._stopped:
                raise NodetoolError(node.address, args, None, "not started: the server is stopping")
            try:
                jvm = self._current()
            except NodetoolJvmError as exc:
                words = "stopped: the server is stopping" if self._stopped else str(exc)
                raise NodetoolError(node.address, args, None, words) from exc
            # Under the lock: no other call may retire this JVM between choosing and sending.
            call = jvm.submit(["-h", node.jmx_host, "-p", str(node.jmx_port), *args])
        if not call.done.wait(timeout_s):
            if jvm.forget(call):
                raise timed_out(node, args, timeout_s)
            call.done.wait(_LATE_REPLY_S)  # the reply came as the time ran out
        return call, jvm

    def _ended_words(self, jvm: JvmProcess) -> str:
        if self._stopped:
            return "stopped: the server is stopping"
        return f"the nodetool JVM ended during the call: {jvm.stderr_tail() or '(no output)'}"
