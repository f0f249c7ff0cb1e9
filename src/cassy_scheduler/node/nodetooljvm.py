"""One running nodetool JVM (java/ResidentNodetool.java) and the line protocol it speaks.

The JDK runs the helper from source, so nothing is built at install time. A request is a line
`ID ARG ...` (each argument URL-encoded); its reply `reply ID EXIT OUT ERR` (Base64). Any other
line on its stdout (JVM messages the options failed to send to stderr) is ignored, and every
call in flight is failed when the JVM ends: no call waits on a reply that cannot come.
"""

from __future__ import annotations

import base64
import binascii
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
from dataclasses import dataclass, field
from pathlib import Path

from cassy_scheduler.node.executor import NodeError, output_tail

_log = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("java") / "ResidentNodetool.java"
_STDERR_LINES = 40

#: The JDK 11+ module flags Cassandra's own client scripts pass (jvm*-clients.options), a small
#: heap (the JVM holds no data, only the commands' output), every JVM message on stderr (stdout
#: carries the replies), and an exit on running out of memory, after which the next call starts
#: a fresh JVM.
CLIENT_JVM_OPTIONS = (
    "-Xmx256M",
    "-XX:+UseSerialGC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Xlog:disable",
    "-Xlog:all=warning:stderr",
    "-XX:+DisplayVMOutputToStderr",
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
    """How to start the JVM: the java binary, Cassandra's jars, and JVM options beyond
    CLIENT_JVM_OPTIONS (later ones win, e.g. a larger -Xmx)."""

    classpath: str
    java: str = "java"
    options: tuple[str, ...] = ()


@dataclass
class Call:
    """One request: `done` is set once its reply came (exit_code set) or the JVM ended (None)."""

    done: threading.Event = field(default_factory=threading.Event)
    exit_code: int | None = None
    output: str = ""
    sent: bool = False  # False: its write failed, so no JVM read it and nothing of it ran
    call_id: str = ""  # its reply's id, once submitted


class JvmProcess:
    """The helper process, the calls waiting on it, and the threads reading its output."""

    def __init__(self, jvm: NodetoolJvm) -> None:
        self.classpath = jvm.classpath
        command = [jvm.java, *CLIENT_JVM_OPTIONS, *jvm.options, "-cp", jvm.classpath, str(_SOURCE)]
        try:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                encoding="utf-8",
                errors="replace",
                start_new_session=True,
            )
        except OSError as exc:
            raise NodetoolJvmError(
                f"cannot start {jvm.java!r} ({exc.strerror}): set [nodes.nodetool_jvm] "
                "java to the full path of a JDK's java"
            ) from exc
        self._lock = threading.Lock()
        self._pending: dict[str, Call] = {}
        self._ids = itertools.count(1)
        self.abandoned = 0  # calls that timed out, whose JMX work may still hang in the JVM
        self.ready = threading.Event()
        self.ended = threading.Event()
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        threading.Thread(target=self._read_replies, name="nodetool-jvm-out", daemon=True).start()
        threading.Thread(target=self._read_stderr, name="nodetool-jvm-err", daemon=True).start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        """Running, as far as can be told: not ended, and not exited before its reader saw it."""
        return not self.ended.is_set() and self._proc.poll() is None

    @property
    def in_flight(self) -> int:
        return len(self._pending)  # one read of a dict's size: no lock, so never blocked

    def submit(self, args: Sequence[str]) -> Call:
        """Send one request; a JVM that is gone answers with a call already failed."""
        call = Call()
        line = " ".join(urllib.parse.quote(arg, safe="", errors="replace") for arg in args)
        with self._lock:
            if self.ended.is_set():
                call.done.set()
                return call
            call.call_id = str(next(self._ids))
            self._pending[call.call_id] = call
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(f"{call.call_id} {line}\n")
                self._proc.stdin.flush()
                call.sent = True
            except (OSError, ValueError):  # its stdin closed: it is ending, the sweep fails it
                pass
        return call

    def forget(self, call: Call) -> bool:
        """Stop waiting for `call`; True when its reply had not come (it is abandoned)."""
        with self._lock:
            if self._pending.pop(call.call_id, None) is None:
                return False
            self.abandoned += 1
            return True

    def _read_replies(self) -> None:
        assert self._proc.stdout is not None
        at_end = False
        try:
            for line in self._proc.stdout:
                self._take(line.rstrip("\n"))
            at_end = True
        finally:
            if not at_end:
                self.kill()  # this thread failed: the JVM it no longer reads must not linger
            self._proc.wait()
            self.ended.set()
            with self._lock:
                failed, self._pending = list(self._pending.values()), {}
            for call in failed:
                call.done.set()  # exit_code None: the JVM ended under it
            for pipe in (self._proc.stdin, self._proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()

    def _take(self, line: str) -> None:
        """One line of the helper's stdout: 'ready', a reply, or something to log and skip."""
        words = line.split(" ")
        if words == ["ready"]:
            self.ready.set()
            return
        if len(words) < 2 or words[0] != "reply":
            _log.debug("nodetool JVM printed: %.200s", line)
            return
        with self._lock:
            call = self._pending.pop(words[1], None)
        if call is None:
            return  # a call that timed out: nobody waits for it any more
        try:
            if len(words) != 5:
                raise ValueError(line)
            exit_code = int(words[2])
            out, err = (base64.b64decode(part).decode("utf-8", "replace") for part in words[3:])
        except (ValueError, binascii.Error):
            exit_code, out, err = (
                2,
                "",
                f"error: the nodetool JVM sent a reply not understood: {line[:200]}",
            )
        call.exit_code = exit_code
        call.output = out if exit_code == 0 else out + err
        call.done.set()

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        with contextlib.suppress(OSError, ValueError):
            for line in self._proc.stderr:
                self._stderr.append(line.rstrip())
        with contextlib.suppress(OSError):
            self._proc.stderr.close()

    def wait_ready(self, timeout_s: float) -> None:
        """Return once the helper has loaded nodetool; on failure the JVM's own words say why."""
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
        if self._proc.returncode is None:
            return "did not answer"
        lines = list(self._stderr)
        if any("org.apache.cassandra" in line or "cannot find symbol" in line for line in lines):
            return (
                f"exited: Cassandra's nodetool classes are not on its classpath {self.classpath!r}"
            )
        return f"exited: {self.stderr_tail() or '(no output)'}"

    def stderr_tail(self) -> str:
        return output_tail("\n".join(self._stderr), 6)

    def kill(self) -> None:
        """SIGKILL its group, unless it is known to have ended (its pid may be reused)."""
        if self._proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
