"""When the daemon prunes: after each successful backup of a job with rules, or on the
job's prune_schedule instead; in the cluster's queue either way, so a prune and a backup of
one cluster never overlap."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from cassy_scheduler.config.model import JobConfig
from cassy_scheduler.records import Outcome, RunResult
from cassy_scheduler.scheduling.daemon import Daemon
from tests.unit.fakes import T0
from tests.unit.test_daemon import Harness


class FakePruner:
    def __init__(self, runner_lock: threading.Lock) -> None:
        self.pruned: list[str] = []
        self.lock = runner_lock

    def prune(self, job: JobConfig, stop: threading.Event | None = None) -> RunResult:
        with self.lock:
            self.pruned.append(job.name)
        return RunResult(f"{job.name}:prune", job.type, T0, Outcome.SUCCEEDED)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[tuple[Harness, FakePruner]]:
    harness = Harness(tmp_path)
    pruner = FakePruner(harness.runner.lock)
    yield harness, pruner
    if harness.daemon is not None:
        harness.daemon.shutdown()


def start(h: Harness, pruner: FakePruner, jobs: str) -> Daemon:
    h.daemon = Daemon(h.write(jobs), h.runner, h.index, h.clock, pruner=pruner)
    h.daemon.start()
    return h.daemon


def test_a_job_with_rules_is_pruned_after_each_successful_backup(
    h: tuple[Harness, FakePruner],
) -> None:
    harness, pruner = h
    start(
        harness,
        pruner,
        """
        [jobs.snap]
        type = "snapshot"
        schedule = "*/10 * * * * *"
        keep_last = 3

        [jobs.plain]
        type = "snapshot"
        schedule = "*/10 * * * * *"
        cluster_name = "other"
        """,
    )
    harness.at(10)
    harness.settle()
    assert sorted(name for name, _ in harness.runner.runs) == ["plain", "snap"]
    assert pruner.pruned == ["snap"]  # the job without rules is never pruned


def test_with_a_prune_schedule_the_prune_runs_on_it_and_not_after_backups(
    h: tuple[Harness, FakePruner],
) -> None:
    harness, pruner = h
    daemon = start(
        harness,
        pruner,
        """
        [jobs.snap]
        type = "snapshot"
        schedule = "*/10 * * * * *"
        keep_last = 3
        prune_schedule = "15 * * * * *"
        """,
    )
    fires = daemon.next_fires()
    assert fires["snap:prune"].run_at == T0 + timedelta(seconds=15)
    harness.at(10)
    harness.settle()
    assert pruner.pruned == []
    harness.at(15)
    harness.settle()
    assert pruner.pruned == ["snap"]  # the job itself, with its rules
    assert [name for name, _ in harness.runner.runs] == ["snap"]  # no backup named snap:prune


def test_a_reload_that_drops_the_prune_schedule_drops_its_timer(
    h: tuple[Harness, FakePruner],
) -> None:
    harness, pruner = h
    daemon = start(
        harness,
        pruner,
        """
        [jobs.snap]
        type = "snapshot"
        schedule = "0 0 * * *"
        keep_last = 3
        prune_schedule = "15 * * * * *"
        """,
    )
    assert "snap:prune" in daemon.next_fires()
    harness.write('[jobs.snap]\ntype = "snapshot"\nschedule = "0 0 * * *"\nkeep_last = 3\n')
    assert daemon.reload(T0, "test")
    assert set(daemon.next_fires()) == {"snap"}
    harness.at(15)
    harness.settle()
    assert pruner.pruned == []
