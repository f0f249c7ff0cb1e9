"""At start, the daemon finds out what the backups of runs a stopped scheduler left became."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from cassy_scheduler.clock import epoch_ms
from cassy_scheduler.history import RunHistory
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.records import Outcome
from cassy_scheduler.scheduling.reconcile import (
    NEVER_ACCEPTED,
    UNREGISTERED,
    look_up,
    reconcile,
    rows_gone,
    untold,
)
from tests.unit.fakes import T0, FakeCassy, FakeClock, unavailable

IPS = ("127.0.0.2", "127.0.0.3")
WAITS = {"nightly": (timedelta(minutes=10), timedelta(seconds=5))}


@pytest.fixture
def history(tmp_path: Path) -> Iterator[RunHistory]:
    with RunHistory.open(tmp_path / "history.sqlite", FakeClock()) as opened:
        yield opened


def interrupted(history: RunHistory, cassy: FakeCassy, *, answered: bool) -> tuple[int, str]:
    """A run killed while it waited: TakeBackup sent, answered or not, never finished."""
    cluster = cassy.clusters[0]
    run = history.start_run("nightly", "snapshot", T0)
    history.note_request(run.run_id, cluster.cluster_id, BackupType.NODE_SNAPSHOT, None, 0)
    ack = cassy.take_backup(cluster.cluster_id, BackupType.NODE_SNAPSHOT)
    if answered:
        history.note_accepted(run.run_id, ack.snapshot_id, ack.created_at_ms)
    history.interrupt(run.run_id, "the scheduler was killed")
    return run.run_id, ack.snapshot_id


@pytest.mark.parametrize("answered", [True, False])
def test_the_servers_outcome_is_recorded_beside_interrupted(
    history: RunHistory, answered: bool
) -> None:
    cassy = FakeCassy(polls_to_finish=2)
    cassy.add_cluster("prod", IPS)
    run_id, snapshot_id = interrupted(history, cassy, answered=answered)
    assert (history.get_run(run_id).snapshot_id is not None) is answered
    settled = reconcile(history, cassy, FakeClock(), threading.Event(), WAITS)
    assert settled == 1
    run = history.get_run(run_id)
    assert run.outcome is Outcome.INTERRUPTED
    assert run.server_outcome == "COMPLETED on every node"
    assert run.snapshot_id == snapshot_id
    assert [(n.target_ip, n.status) for n in run.nodes] == [
        (ip, OperationStatus.COMPLETED) for ip in IPS
    ]
    assert history.unsettled_requests() == []  # settled once, not at every start


def test_a_request_the_server_never_took_is_said_so(history: RunHistory) -> None:
    cassy = FakeCassy()
    cluster = cassy.add_cluster("prod", IPS)
    run = history.start_run("nightly", "snapshot", T0)
    history.note_request(run.run_id, cluster.cluster_id, BackupType.NODE_SNAPSHOT, None, 0)
    history.interrupt(run.run_id, "the scheduler was killed")
    assert reconcile(history, cassy, FakeClock(), threading.Event(), WAITS) == 1
    assert history.get_run(run.run_id).server_outcome == NEVER_ACCEPTED


def test_a_stopping_daemon_leaves_what_still_runs_for_its_next_start(history: RunHistory) -> None:
    cassy = FakeCassy(hang=True)
    cassy.add_cluster("prod", IPS)
    interrupted(history, cassy, answered=True)
    stop = threading.Event()
    stop.set()
    assert reconcile(history, cassy, FakeClock(), stop, WAITS) == 0
    assert len(history.unsettled_requests()) == 1


def lost_answer(history: RunHistory, cassy: FakeCassy) -> int:
    """A run killed after noting its request, before any answer was recorded."""
    cluster = cassy.clusters[0]
    run = history.start_run("nightly", "snapshot", T0)
    history.note_request(run.run_id, cluster.cluster_id, BackupType.NODE_SNAPSHOT, None, 0)
    history.interrupt(run.run_id, "the scheduler was killed")
    return run.run_id


def test_a_backup_taken_well_after_the_run_is_not_taken_for_its_own(
    history: RunHistory,
) -> None:
    cassy = FakeCassy()
    cassy.add_cluster("prod", IPS)
    run_id = lost_answer(history, cassy)  # interrupted at T0, by the history's clock
    cassy._clock_ms = itertools.count(epoch_ms(T0) + 10 * 60_000)  # someone's, 10 min later
    cassy.take_backup(cassy.clusters[0].cluster_id, BackupType.NODE_SNAPSHOT)
    assert reconcile(history, cassy, FakeClock(), threading.Event(), WAITS) == 1
    run = history.get_run(run_id)
    assert (run.server_outcome, run.snapshot_id) == (NEVER_ACCEPTED, None)


def test_a_request_another_run_was_answered_for_is_not_taken(history: RunHistory) -> None:
    cassy = FakeCassy()
    cluster = cassy.add_cluster("prod", IPS)
    run_id = lost_answer(history, cassy)
    other = history.start_run("nightly", "snapshot", T0)  # cron's, recorded in the same file
    history.note_request(other.run_id, cluster.cluster_id, BackupType.NODE_SNAPSHOT, None, 0)
    ack = cassy.take_backup(cluster.cluster_id, BackupType.NODE_SNAPSHOT)
    history.note_accepted(other.run_id, ack.snapshot_id, ack.created_at_ms)
    assert reconcile(history, cassy, FakeClock(), threading.Event(), WAITS) == 1
    assert history.get_run(run_id).server_outcome == NEVER_ACCEPTED
    assert history.get_run(run_id).snapshot_id is None


def test_two_requests_that_may_be_the_runs_are_not_guessed_between(
    history: RunHistory,
) -> None:
    cassy = FakeCassy()
    cluster = cassy.add_cluster("prod", IPS)
    run_id = lost_answer(history, cassy)
    for _ in range(2):  # ours (its answer lost) and someone else's
        cassy.take_backup(cluster.cluster_id, BackupType.NODE_SNAPSHOT)
    assert reconcile(history, cassy, FakeClock(), threading.Event(), WAITS) == 1
    run = history.get_run(run_id)
    assert (run.server_outcome, run.snapshot_id) == (untold(2), None)


def test_a_cluster_no_longer_registered_cannot_tell(history: RunHistory) -> None:
    cassy = FakeCassy()
    cassy.add_cluster("prod", IPS)
    run_id = lost_answer(history, cassy)
    cassy.clusters.clear()
    assert reconcile(history, cassy, FakeClock(), threading.Event(), WAITS) == 1
    assert history.get_run(run_id).server_outcome == UNREGISTERED


def test_an_answered_request_whose_rows_are_gone_says_so(history: RunHistory) -> None:
    cassy = FakeCassy()
    cassy.add_cluster("prod", IPS)
    run_id = lost_answer(history, cassy)
    history.note_accepted(run_id, "snap-pruned", 12_345)  # the server's rows since deleted
    assert reconcile(history, cassy, FakeClock(), threading.Event(), WAITS) == 1
    run = history.get_run(run_id)
    assert (run.server_outcome, run.snapshot_id) == (rows_gone("snap-pruned"), "snap-pruned")


def test_a_server_that_cannot_be_asked_leaves_every_request_for_the_next_start(
    history: RunHistory,
) -> None:
    cassy = FakeCassy()
    cassy.add_cluster("prod", IPS)
    lost_answer(history, cassy)
    lost_answer(history, cassy)
    cassy.errors["ListClusters"] = [unavailable("ListClusters")]
    assert look_up(history, cassy) == []
    assert len(history.unsettled_requests()) == 2
    assert [c for c, _ in cassy.calls].count("ListClusters") == 1  # no second try now
