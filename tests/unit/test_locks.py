"""Run exclusion with flock: between threads, between processes, and with a bounded wait."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cassy_scheduler.clock import SystemClock
from cassy_scheduler.config.model import RuntimeConfig
from cassy_scheduler.records import Outcome
from cassy_scheduler.scheduling.locks import (
    LockBusyError,
    LockTimeoutError,
    LockWaitStoppedError,
    RunLocks,
)
from cassy_scheduler.scheduling.state import SchedulerState
from tests.unit.fakes import FakeClock


def test_a_job_lock_is_refused_while_held_and_names_its_holder(tmp_path: Path) -> None:
    locks = RunLocks(tmp_path, FakeClock())
    with locks.job("nightly"), pytest.raises(LockBusyError) as caught, locks.job("nightly"):
        pass
    assert caught.value.holder is not None and caught.value.holder.job_name == "nightly"
    assert 'job "nightly"' in str(caught.value)
    with locks.job("nightly"):  # free again once released
        pass


def test_other_jobs_do_not_conflict(tmp_path: Path) -> None:
    locks = RunLocks(tmp_path, FakeClock())
    with locks.job("a"), locks.job("b"), locks.cluster("c1", "a", 0), locks.cluster("c2", "b", 0):
        pass


def test_a_cluster_lock_waits_then_times_out(tmp_path: Path) -> None:
    clock = FakeClock()
    locks = RunLocks(tmp_path, clock)
    with (
        locks.cluster("prod-1", "snapshot-job", 0),
        pytest.raises(LockTimeoutError) as caught,
        locks.cluster("prod-1", "incremental-job", 5),
    ):
        pass
    assert sum(clock.waits) >= 5
    assert "snapshot-job" in str(caught.value)


def test_a_cluster_lock_is_taken_once_the_holder_lets_go(tmp_path: Path) -> None:
    locks = RunLocks(tmp_path, SystemClock())
    held = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        with locks.cluster("prod-1", "first", 0):
            held.set()
            release.wait(30)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(30)
    threading.Timer(0.2, release.set).start()
    with locks.cluster("prod-1", "second", 60):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]


def test_a_stop_ends_the_wait(tmp_path: Path) -> None:
    locks = RunLocks(tmp_path, FakeClock())
    stop = threading.Event()
    stop.set()
    with (
        locks.cluster("prod-1", "a", 0),
        pytest.raises(LockWaitStoppedError),
        locks.cluster("prod-1", "b", 60, stop),
    ):
        pass


def test_names_with_odd_characters_get_distinct_safe_files(tmp_path: Path) -> None:
    locks = RunLocks(tmp_path, FakeClock())
    with locks.cluster("a/b", "x", 0), locks.cluster("a_b", "x", 0):
        pass
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and all("/" not in n for n in names)


def test_a_lock_held_by_another_process_is_seen_and_freed_when_it_dies(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from pathlib import Path
                from cassy_scheduler.clock import SystemClock
                from cassy_scheduler.scheduling.locks import RunLocks
                with RunLocks(Path({str(tmp_path)!r}), SystemClock()).cluster("prod-1", "cron", 0):
                    print("held", flush=True)
                    sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        locks = RunLocks(tmp_path, FakeClock())
        with pytest.raises(LockTimeoutError) as caught, locks.cluster("prod-1", "daemon", 1):
            pass
        assert caught.value.holder is not None
        assert caught.value.holder.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()
    with locks.cluster("prod-1", "daemon", 0):
        pass


def test_state_recovery_interrupts_only_runs_whose_process_is_gone(tmp_path: Path) -> None:
    clock = FakeClock()
    runtime = RuntimeConfig(state_dir=tmp_path)
    when = datetime(2025, 6, 10, tzinfo=UTC)
    with SchedulerState.open(runtime, clock) as first:
        alive = first.history.start_run("alive", "snapshot", when)
        dead = first.history.start_run("dead", "snapshot", when)
        with first.locks.job("alive"), SchedulerState.open(runtime, clock) as second:
            assert second.history.get_run(dead.run_id).outcome is Outcome.INTERRUPTED
            assert second.history.get_run(alive.run_id).outcome is Outcome.RUNNING
        assert first.recover() == 1
        assert first.history.get_run(alive.run_id).outcome is Outcome.INTERRUPTED
