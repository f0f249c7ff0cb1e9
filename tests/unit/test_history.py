"""The run history on a real SQLite file, with a clock the test controls."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cassy_scheduler import statefile
from cassy_scheduler.history import HistoryError, RunHistory
from cassy_scheduler.protocol.types import NodeStatus, OperationStatus
from cassy_scheduler.records import Outcome
from tests.unit.fakes import FakeClock

T0 = datetime(2025, 6, 10, 0, 30, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "history.sqlite"


def test_a_run_is_recorded_before_and_after_its_work(db: Path, clock: FakeClock) -> None:
    with RunHistory.open(db, clock) as history:
        started = history.start_run(
            "hourly", "incremental", T0, cluster_name="prod", base_snapshot_id="snap-1"
        )
        assert started.outcome is Outcome.RUNNING
        assert started.started_at == T0
        clock.set(T0 + timedelta(minutes=3))
        nodes = [
            NodeStatus("10.0.0.2", OperationStatus.COMPLETED),
            NodeStatus("10.0.0.1", OperationStatus.FAILED, "upload refused"),
        ]
        finished = history.finish_run(
            started.run_id,
            Outcome.FAILED,
            snapshot_id="snap-1",
            cluster_id="prod-123",
            error="node 10.0.0.1 failed",
            nodes=nodes,
        )
    assert finished.outcome is Outcome.FAILED
    assert finished.finished_at == clock.now()
    assert finished.cluster_id == "prod-123"
    assert finished.cluster_name == "prod"
    assert finished.base_snapshot_id == "snap-1"
    assert [n.target_ip for n in finished.nodes] == ["10.0.0.1", "10.0.0.2"]
    assert finished.nodes[0] == NodeStatus("10.0.0.1", OperationStatus.FAILED, "upload refused")


def test_runs_left_running_by_a_crash_become_interrupted_on_open(
    db: Path, clock: FakeClock
) -> None:
    history = RunHistory.open(db, clock)
    run = history.start_run("nightly", "snapshot", T0)
    history.close()  # the process dies without finish_run

    with RunHistory.open_read_only(db) as reader:
        assert reader.get_run(run.run_id).outcome is Outcome.RUNNING

    clock.set(T0 + timedelta(hours=1))
    with RunHistory.open(db, clock) as history:
        record = history.get_run(run.run_id)
    assert record.outcome is Outcome.INTERRUPTED
    assert record.finished_at == clock.now()
    assert record.error


def test_last_run_last_success_and_listing(db: Path, clock: FakeClock) -> None:
    with RunHistory.open(db, clock) as history:
        ok = history.start_run("nightly", "snapshot", T0)
        history.finish_run(ok.run_id, Outcome.SUCCEEDED, snapshot_id="s1")
        bad = history.start_run("nightly", "snapshot", T0 + timedelta(days=1))
        history.finish_run(bad.run_id, Outcome.TIMED_OUT, error="waited 2h")
        history.start_run("hourly", "incremental", T0)
        skipped = history.record_skipped("hourly", "incremental", T0, "missed while stopped")

        last = history.last_run("nightly")
        success = history.last_success("nightly")
        assert last is not None and last.run_id == bad.run_id
        assert success is not None and success.snapshot_id == "s1"
        assert history.last_success("hourly") is None
        assert history.last_run("weekly") is None
        assert next(r.run_id for r in history.list_runs()) == skipped.run_id
        assert len(history.list_runs(limit=2)) == 2
        assert {r.job_name for r in history.list_runs("hourly")} == {"hourly"}
        assert skipped.outcome is Outcome.SKIPPED and skipped.started_at is None


def test_read_only_history_refuses_writes(db: Path, clock: FakeClock) -> None:
    RunHistory.open(db, clock).close()
    with RunHistory.open_read_only(db) as reader, pytest.raises(HistoryError, match="read-only"):
        reader.start_run("nightly", "snapshot", T0)


def test_missing_history_and_unknown_runs_are_reported(db: Path, clock: FakeClock) -> None:
    with pytest.raises(HistoryError, match="no run history"):
        RunHistory.open_read_only(db)
    with RunHistory.open(db, clock) as history:
        with pytest.raises(HistoryError, match="no run 42"):
            history.finish_run(42, Outcome.SUCCEEDED)
        run = history.start_run("nightly", "snapshot", T0)
        with pytest.raises(HistoryError, match="final outcome"):
            history.finish_run(run.run_id, Outcome.RUNNING)


def test_a_newer_schema_is_refused(db: Path, clock: FakeClock) -> None:
    history = RunHistory.open(db, clock)
    history._file.db.execute("PRAGMA user_version = 99")
    history.close()
    with pytest.raises(HistoryError, match="newer"):
        RunHistory.open(db, clock)


def test_a_locked_file_at_start_is_a_history_error(
    db: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holding the file (a stuck `sqlite3` shell) stops the start with a
    message the command prints, not a traceback."""
    monkeypatch.setattr(statefile, "BUSY_TIMEOUT_MS", 100)
    RunHistory.open(db, clock).close()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(HistoryError, match="cannot"):
            RunHistory.open(db, clock)
    finally:
        other.close()
