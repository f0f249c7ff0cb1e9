"""Run exclusion that holds across processes: flock on one lock file per cluster and per job.

The daemon and one-shot commands share a state directory, so the kernel's file locks keep two
backups of one cluster from overlapping whoever started them, and a lock dies with its holder:
no stale lock survives a crash. flock locks belong to an open file, so two threads of one
process exclude each other as two processes do.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cassy_scheduler.clock import Clock
from cassy_scheduler.privatefiles import FILE_MODE, private_directory
from cassy_scheduler.scheduling import SchedulingError

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_FIRST_POLL_S = 0.05
_MAX_POLL_S = 1.0


class LockError(SchedulingError):
    """A lock could not be taken; `holder` says who has it, when known."""

    def __init__(self, message: str, holder: LockHolder | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class LockBusyError(LockError):
    """Someone else holds the lock and the caller did not want to wait."""


class LockTimeoutError(LockError):
    """The lock stayed held for the whole time the caller was willing to wait."""


class LockWaitStoppedError(LockError):
    """Waiting for the lock was abandoned because the scheduler is stopping."""


@dataclass(frozen=True)
class LockHolder:
    """What a holder writes into its lock file, so others can say who they wait for."""

    pid: int
    job_name: str
    since: str

    def __str__(self) -> str:
        return f'job "{self.job_name}" (pid {self.pid}, since {self.since})'


class RunLocks:
    """Lock files under one directory: `cluster-<id>.lock` and `job-<name>.lock`."""

    def __init__(self, lock_dir: Path, clock: Clock) -> None:
        self.lock_dir = lock_dir
        self._clock = clock

    @contextlib.contextmanager
    def job(self, job_name: str) -> Iterator[None]:
        """Hold the job's lock, or raise LockBusyError at once: a job never runs twice at a time."""
        with self._hold(self._path("job", job_name), job_name, wait_s=None, stop=None):
            yield

    @contextlib.contextmanager
    def cluster(
        self,
        cluster_id: str,
        job_name: str,
        wait_s: float,
        stop: threading.Event | None = None,
    ) -> Iterator[None]:
        """Hold the cluster's lock, waiting up to `wait_s` for another run to finish."""
        with self._hold(self._path("cluster", cluster_id), job_name, wait_s=wait_s, stop=stop):
            yield

    def holder(self, kind: str, name: str) -> LockHolder | None:
        return _read_holder(self._path(kind, name))

    def _path(self, kind: str, name: str) -> Path:
        safe = _SAFE.sub("_", name)
        if safe != name:
            # Keep distinct names distinct after replacing unsafe characters.
            safe += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
        return self.lock_dir / f"{kind}-{safe}.lock"

    @contextlib.contextmanager
    def _hold(
        self, path: Path, job_name: str, *, wait_s: float | None, stop: threading.Event | None
    ) -> Iterator[None]:
        try:
            private_directory(path.parent)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise LockError(
                f"cannot open lock file {path}: {exc.strerror}; check that the state directory "
                "exists and is writable by the scheduler's user"
            ) from exc
        try:
            self._acquire(fd, path, wait_s, stop)
            _write_holder(fd, LockHolder(os.getpid(), job_name, self._clock.now().isoformat()))
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _acquire(
        self, fd: int, path: Path, wait_s: float | None, stop: threading.Event | None
    ) -> None:
        deadline = None if wait_s is None else self._clock.monotonic() + wait_s
        poll = _FIRST_POLL_S
        while True:
            if _try_lock(fd):
                return
            holder = _read_holder(path)
            who = f"held by {holder}" if holder else "held by another run"
            if deadline is None:
                raise LockBusyError(f"{path.name} is {who}", holder)
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                raise LockTimeoutError(f"{path.name} stayed {who} for {wait_s:g}s", holder)
            if self._clock.wait(min(poll, remaining), stop):
                raise LockWaitStoppedError(f"stopped waiting for {path.name}, {who}", holder)
            poll = min(poll * 2, _MAX_POLL_S)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _write_holder(fd: int, holder: LockHolder) -> None:
    data = json.dumps({"pid": holder.pid, "job": holder.job_name, "since": holder.since})
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, data.encode(), 0)


def _read_holder(path: Path) -> LockHolder | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "null")
        return LockHolder(int(data["pid"]), str(data["job"]), str(data["since"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None
