"""One run of a job against an in-memory Cassy: outcomes, retries with backoff, timeouts, base
snapshots, locks and observers. Time is a fake clock, so backoffs and waits cost nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import grpc  # type: ignore[import-untyped]
import pytest

from cassy_scheduler.client import CassyFailedPrecondition, CassyNotFound
from cassy_scheduler.config.model import ClusterRef, WhenNoSnapshot
from cassy_scheduler.history import RunHistory
from cassy_scheduler.jobtype import JobType
from cassy_scheduler.outcome import find_accepted_backup, newest_backup_ms
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.records import Failure, Outcome, RunResult, RunStart
from cassy_scheduler.scheduling.locks import RunLocks
from cassy_scheduler.scheduling.runner import Runner
from tests.unit.fakes import (
    ADDRESS,
    T0,
    FakeCassy,
    FakeClock,
    deadline_exceeded,
    make_job,
    unavailable,
)

IPS = ("127.0.0.2", "127.0.0.3")


class Recorder:
    def __init__(self, history: RunHistory | None = None) -> None:
        self.started: list[RunStart] = []
        self.finished: list[RunResult] = []
        self.history = history
        self.outcome_seen_at_start: list[Outcome] = []

    def run_started(self, start: RunStart) -> None:
        self.started.append(start)
        if self.history is not None:
            self.outcome_seen_at_start.append(self.history.get_run(start.run_id).outcome)

    def run_finished(self, result: RunResult) -> None:
        self.finished.append(result)


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock()
        self.cassy = FakeCassy()
        self.cluster = self.cassy.add_cluster("prod", IPS)
        self.history = RunHistory.open(tmp_path / "history.sqlite", self.clock)
        self.locks = RunLocks(tmp_path / "locks", self.clock)
        self.recorder = Recorder(self.history)
        self.runner = Runner(self.cassy, self.history, self.locks, self.clock, [self.recorder])


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Setup]:
    setup = Setup(tmp_path)
    yield setup
    setup.history.close()


def test_a_snapshot_run_succeeds_with_every_node_recorded(s: Setup) -> None:
    result = s.runner.run(make_job(), T0)
    assert result.outcome is Outcome.SUCCEEDED
    assert result.failure is None and result.error is None
    assert result.cluster_id == s.cluster.cluster_id and result.cluster_name == "prod"
    assert result.snapshot_id and result.attempts == 1
    assert [(n.target_ip, n.status) for n in result.nodes] == [
        (ip, OperationStatus.COMPLETED) for ip in IPS
    ]
    record = s.history.get_run(result.run_id or 0)
    assert record.outcome is Outcome.SUCCEEDED
    assert record.snapshot_id == result.snapshot_id
    assert [n.status for n in record.nodes] == [OperationStatus.COMPLETED] * 2
    assert s.recorder.finished == [result]
    assert [st.run_id for st in s.recorder.started] == [result.run_id]


def test_the_run_is_recorded_as_running_before_its_work(s: Setup) -> None:
    s.runner.run(make_job(), T0)
    assert s.recorder.outcome_seen_at_start == [Outcome.RUNNING]


def test_transient_errors_are_retried_with_growing_backoff(s: Setup) -> None:
    s.cassy.errors["TakeBackup"] = [unavailable(), unavailable()]
    result = s.runner.run(make_job(retries=2, retry_backoff=timedelta(seconds=10)), T0)
    assert result.outcome is Outcome.SUCCEEDED
    assert result.attempts == 3
    assert s.cassy.count("TakeBackup") == 3
    assert s.clock.waits[:2] == [10.0, 20.0]


@pytest.mark.parametrize("job_type", [JobType.SNAPSHOT, JobType.INCREMENTAL])
def test_a_backup_accepted_with_its_answer_lost_is_waited_for_not_started_again(
    s: Setup, job_type: JobType
) -> None:
    base = s.cassy.add_backup(s.cluster, BackupType.NODE_SNAPSHOT)
    s.cassy.add_backup(s.cluster, BackupType.NODE_INCREMENTAL, snapshot_id=base)
    s.cassy.lose_answers = 1
    result = s.runner.run(make_job("job", job_type, retries=2), T0)
    assert result.outcome is Outcome.SUCCEEDED
    assert s.cassy.count("TakeBackup") == 1
    (taken,) = {
        r.snapshot_id for r in s.cassy.rows if r.created_at_ms == s.cassy.rows[0].created_at_ms
    }
    assert result.snapshot_id == taken
    assert (result.snapshot_id == base) is (job_type is JobType.INCREMENTAL)


def test_a_lost_answer_with_nothing_accepted_is_retried(s: Setup) -> None:
    s.cassy.errors["TakeBackup"] = [deadline_exceeded()]
    result = s.runner.run(make_job(retries=1, retry_backoff=timedelta(seconds=10)), T0)
    assert (result.outcome, result.attempts) == (Outcome.SUCCEEDED, 2)
    assert s.cassy.count("TakeBackup") == 2


def test_a_refusal_of_down_nodes_is_retried_not_followed(s: Setup) -> None:
    s.cassy.refuse_not_live = 1
    result = s.runner.run(make_job(retries=1, retry_backoff=timedelta(seconds=10)), T0)
    assert (result.outcome, result.attempts) == (Outcome.SUCCEEDED, 2)
    assert s.cassy.count("TakeBackup") == 2
    assert result.snapshot_id == s.cassy.rows[0].snapshot_id


def test_a_refusal_that_recorded_rows_names_their_snapshot(s: Setup) -> None:
    """Cassy answers INTERNAL, without a snapshot id, yet records FAILED rows."""
    s.cassy.refuse_internal = 1
    result = s.runner.run(make_job("cw", JobType.CLUSTER_WIDE, retries=2), T0)
    assert (result.outcome, result.failure) == (Outcome.FAILED, Failure.REFUSED)
    assert s.cassy.count("TakeBackup") == 1
    assert result.snapshot_id == s.cassy.rows[0].snapshot_id
    assert [(n.status, n.reason) for n in result.nodes] == [
        (OperationStatus.FAILED, "pause failed")
    ] * 2
    assert result.error and f"recorded it as snapshot {result.snapshot_id}" in result.error
    assert s.history.get_run(result.run_id or 0).snapshot_id == result.snapshot_id


def test_down_nodes_past_the_retries_name_the_last_refused_snapshot(s: Setup) -> None:
    s.cassy.refuse_not_live = 3
    result = s.runner.run(make_job(retries=1, retry_backoff=timedelta(seconds=10)), T0)
    assert (result.outcome, result.failure) == (Outcome.FAILED, Failure.UNREACHABLE)
    assert result.snapshot_id == s.cassy.rows[0].snapshot_id  # the last attempt's
    assert result.error and "target nodes not live" in result.error


def _accepted(s: Setup, backup_type: BackupType, mark: int) -> str | None:
    found = find_accepted_backup(
        s.cassy, s.cluster.cluster_id, backup_type, None, mark, s.cluster.target_ips
    )
    return None if found is None else found.snapshot_id


def test_only_one_whole_cluster_request_not_all_failed_is_taken_for_ours(s: Setup) -> None:
    mark = newest_backup_ms(s.cassy, s.cluster.cluster_id)
    refused = dict.fromkeys(IPS, OperationStatus.FAILED)  # how a down node is refused
    s.cassy.add_backup(s.cluster, BackupType.NODE_SNAPSHOT, refused)
    s.cassy.add_backup(replace(s.cluster, target_ips=IPS[:1]), BackupType.NODE_SNAPSHOT)
    assert _accepted(s, BackupType.NODE_SNAPSHOT, mark) is None
    ours = s.cassy.add_backup(s.cluster, BackupType.NODE_SNAPSHOT)
    assert _accepted(s, BackupType.NODE_SNAPSHOT, mark) == ours
    assert _accepted(s, BackupType.NODE_INCREMENTAL, mark) is None
    s.cassy.add_backup(s.cluster, BackupType.NODE_SNAPSHOT)  # someone else's, same moment
    assert _accepted(s, BackupType.NODE_SNAPSHOT, mark) is None


def test_transient_errors_beyond_the_retries_fail_the_run_as_unreachable(s: Setup) -> None:
    s.cassy.errors["ListClusters"] = [unavailable("ListClusters") for _ in range(5)]
    result = s.runner.run(make_job(retries=2), T0)
    assert result.outcome is Outcome.FAILED
    assert result.failure is Failure.UNREACHABLE
    assert result.attempts == 3
    assert s.cassy.count("ListClusters") == 3
    assert result.error is not None
    assert "after 3 attempt(s)" in result.error and ADDRESS in result.error
    assert s.history.get_run(result.run_id or 0).error == result.error


def test_a_refusal_is_not_retried(s: Setup) -> None:
    s.cassy.errors["TakeBackup"] = [
        CassyFailedPrecondition(
            "TakeBackup", ADDRESS, grpc.StatusCode.FAILED_PRECONDITION, "node down"
        )
    ]
    result = s.runner.run(make_job(retries=3), T0)
    assert (result.outcome, result.failure, result.attempts) == (
        Outcome.FAILED,
        Failure.REFUSED,
        1,
    )
    assert result.error is not None and "node down" in result.error


def test_a_failed_node_fails_the_run_and_is_named(s: Setup) -> None:
    s.cassy.node_results = {"127.0.0.3": OperationStatus.FAILED}
    result = s.runner.run(make_job(), T0)
    assert (result.outcome, result.failure) == (Outcome.FAILED, Failure.NODES_FAILED)
    assert result.failed_nodes == ("127.0.0.3",)
    assert result.error is not None and "127.0.0.3" in result.error
    statuses = {n.target_ip: n.status for n in s.history.get_run(result.run_id or 0).nodes}
    assert statuses == {"127.0.0.2": OperationStatus.COMPLETED, "127.0.0.3": OperationStatus.FAILED}


def test_after_a_node_fails_the_others_final_statuses_are_still_recorded(s: Setup) -> None:
    s.cassy.node_results = {"127.0.0.3": OperationStatus.FAILED}
    s.cassy.node_delays = {"127.0.0.2": 3}
    result = s.runner.run(make_job(), T0)
    assert (result.outcome, result.failure) == (Outcome.FAILED, Failure.NODES_FAILED)
    assert {n.target_ip: (n.status, n.reason) for n in result.nodes} == {
        "127.0.0.2": (OperationStatus.COMPLETED, None),
        "127.0.0.3": (OperationStatus.FAILED, None),
    }


def test_a_node_still_unfinished_after_another_failed_says_so(s: Setup) -> None:
    s.cassy.node_results = {"127.0.0.3": OperationStatus.FAILED}
    s.cassy.node_delays = {"127.0.0.2": 1000}
    job = make_job(wait_timeout=timedelta(minutes=1), poll_interval=timedelta(seconds=10))
    result = s.runner.run(job, T0)
    assert result.outcome is Outcome.FAILED
    pending = next(n for n in result.nodes if n.target_ip == "127.0.0.2")
    assert pending.status is OperationStatus.STARTED
    assert pending.reason is not None and "may still complete" in pending.reason


def test_a_server_gone_after_a_node_failed_ends_the_run_at_once(s: Setup) -> None:
    """Waiting for the other nodes only makes statuses truer: it stops at the first failed
    call instead of holding the lock and the failure notice for all of wait_timeout."""
    s.cassy.node_results = {"127.0.0.3": OperationStatus.FAILED}
    s.cassy.node_delays = {"127.0.0.2": 1000}
    job = make_job(wait_timeout=timedelta(hours=2), poll_interval=timedelta(seconds=5))
    s.cassy.errors["ListBackups"] = [None, None, None] + [unavailable("ListBackups")] * 100
    start = s.clock.monotonic()
    result = s.runner.run(job, T0)
    assert (result.outcome, result.failure) == (Outcome.FAILED, Failure.NODES_FAILED)
    assert s.clock.monotonic() - start < 60
    assert sum(1 for call, _ in s.cassy.calls if call == "ListBackups") <= 5


def test_no_outcome_within_wait_timeout_is_timed_out(s: Setup) -> None:
    s.cassy.hang = True
    job = make_job(wait_timeout=timedelta(minutes=1), poll_interval=timedelta(seconds=10))
    result = s.runner.run(job, T0)
    assert (result.outcome, result.failure) == (Outcome.TIMED_OUT, Failure.TIMED_OUT)
    assert all(n.status is OperationStatus.STARTED for n in result.nodes)
    assert all(n.reason == "still unfinished" for n in result.nodes)
    assert result.error is not None and "wait_timeout" in result.error
    assert s.history.get_run(result.run_id or 0).outcome is Outcome.TIMED_OUT


@pytest.mark.parametrize("builtin", [False, True])
def test_a_timed_out_wait_says_how_long_the_rows_have_been_started(s: Setup, builtin: bool) -> None:
    s.cassy.hang, s.cassy.builtin = True, builtin
    job = make_job(wait_timeout=timedelta(minutes=1), poll_interval=timedelta(seconds=10))
    result = s.runner.run(job, T0)
    assert result.error is not None
    assert "its rows have been STARTED for " in result.error
    assert "UTC, the server's clock" in result.error
    if builtin:
        assert "the built-in server ends every row COMPLETED or FAILED" in result.error
        assert "may still finish" in result.error
    else:
        assert "Scalar's Cassy does not fail such rows by itself" in result.error
        assert "may still finish" not in result.error


def test_an_incremental_extends_the_newest_snapshot_completed_on_every_node(s: Setup) -> None:
    older = s.cassy.add_backup(s.cluster, BackupType.NODE_SNAPSHOT)
    s.cassy.add_backup(s.cluster, BackupType.NODE_INCREMENTAL, snapshot_id=older)
    s.cassy.add_backup(s.cluster, BackupType.NODE_SNAPSHOT, {"127.0.0.3": OperationStatus.FAILED})
    result = s.runner.run(make_job("hourly", JobType.INCREMENTAL), T0)
    assert result.outcome is Outcome.SUCCEEDED
    assert result.base_snapshot_id == older == result.snapshot_id
    assert not result.base_snapshot_taken
    assert ("TakeBackup", (s.cluster.cluster_id, BackupType.NODE_INCREMENTAL, older)) in (
        s.cassy.calls
    )
    assert s.history.get_run(result.run_id or 0).base_snapshot_id == older


def test_an_incremental_without_a_snapshot_fails_by_default_and_says_what_to_do(
    s: Setup,
) -> None:
    result = s.runner.run(make_job("hourly", JobType.INCREMENTAL), T0)
    assert (result.outcome, result.failure) == (Outcome.FAILED, Failure.NO_BASE_SNAPSHOT)
    assert result.error is not None
    assert "no node snapshot" in result.error and "when_no_snapshot" in result.error
    assert s.cassy.count("TakeBackup") == 0


def test_an_incremental_may_take_its_base_snapshot_first(s: Setup) -> None:
    job = make_job("hourly", JobType.INCREMENTAL, when_no_snapshot=WhenNoSnapshot.TAKE_SNAPSHOT)
    result = s.runner.run(job, T0)
    assert result.outcome is Outcome.SUCCEEDED
    assert result.base_snapshot_taken
    takes = [args for name, args in s.cassy.calls if name == "TakeBackup"]
    assert [t[1] for t in takes] == [BackupType.NODE_SNAPSHOT, BackupType.NODE_INCREMENTAL]
    assert takes[1][2] == result.base_snapshot_id == result.snapshot_id


def test_a_failed_base_snapshot_fails_the_incremental_run(s: Setup) -> None:
    s.cassy.node_results = {"127.0.0.2": OperationStatus.FAILED}
    job = make_job("hourly", JobType.INCREMENTAL, when_no_snapshot=WhenNoSnapshot.TAKE_SNAPSHOT)
    result = s.runner.run(job, T0)
    assert (result.outcome, result.failure) == (Outcome.FAILED, Failure.BASE_SNAPSHOT_FAILED)
    assert result.error is not None and "127.0.0.2" in result.error
    assert s.cassy.count("TakeBackup") == 1


def test_an_unknown_cluster_fails_with_a_hint(s: Setup) -> None:
    result = s.runner.run(make_job(cluster=ClusterRef(cluster_name="nope")), T0)
    assert (result.outcome, result.failure) == (Outcome.FAILED, Failure.UNKNOWN_CLUSTER)
    assert result.error is not None and "cassy-scheduler register" in result.error


def test_errors_while_polling_are_a_failed_run_when_not_transient(s: Setup) -> None:
    s.cassy.errors["ListBackups"] = [
        None,  # the look at the cluster's newest row before TakeBackup
        CassyNotFound("ListBackups", ADDRESS, grpc.StatusCode.NOT_FOUND, "gone"),
    ]
    result = s.runner.run(make_job(), T0)
    assert (result.outcome, result.failure) == (Outcome.FAILED, Failure.REFUSED)
    assert result.snapshot_id is not None


def test_a_second_run_of_a_running_job_is_skipped_and_recorded(s: Setup) -> None:
    job = make_job()
    with s.locks.job(job.name):
        result = s.runner.run(job, T0)
    assert (result.outcome, result.failure) == (Outcome.SKIPPED, Failure.ALREADY_RUNNING)
    assert result.error is not None and "still in progress" in result.error
    assert s.history.get_run(result.run_id or 0).outcome is Outcome.SKIPPED
    assert s.cassy.count("TakeBackup") == 0
    assert s.recorder.finished == [result]


def test_a_run_waits_for_the_cluster_and_is_skipped_when_it_stays_busy(s: Setup) -> None:
    job = make_job(wait_timeout=timedelta(seconds=30))
    with s.locks.cluster(s.cluster.cluster_id, "other-job", wait_s=0):
        result = s.runner.run(job, T0)
    assert (result.outcome, result.failure) == (Outcome.SKIPPED, Failure.CLUSTER_BUSY)
    assert result.error is not None and "other-job" in result.error
    assert sum(s.clock.waits) >= 30
    assert s.cassy.count("TakeBackup") == 0


def test_a_stop_during_the_wait_records_the_run_interrupted(s: Setup) -> None:
    s.cassy.hang = True
    stop = threading.Event()
    stop_after_ack = threading.Event()
    s.cassy.on_take.append(stop_after_ack)
    runner = Runner(s.cassy, s.history, s.locks, s.clock)
    job = make_job()
    original_wait = s.clock.wait

    def wait(seconds: float, event: threading.Event | None = None) -> bool:
        if stop_after_ack.is_set():
            stop.set()
        return original_wait(seconds, event)

    s.clock.wait = wait  # type: ignore[method-assign]
    result = runner.run(job, T0, stop)
    assert (result.outcome, result.failure) == (Outcome.INTERRUPTED, Failure.STOPPED)
    assert result.snapshot_id is not None
    assert result.error is not None and result.snapshot_id in result.error
    assert s.history.get_run(result.run_id or 0).outcome is Outcome.INTERRUPTED


def test_a_stop_before_the_request_sends_nothing(s: Setup) -> None:
    stop = threading.Event()
    stop.set()
    result = s.runner.run(make_job(), T0, stop)
    assert result.outcome is Outcome.INTERRUPTED
    assert s.cassy.count("TakeBackup") == 0


def test_a_failing_observer_does_not_change_the_run(s: Setup) -> None:
    class Broken:
        def run_started(self, start: RunStart) -> None:
            raise RuntimeError("boom")

        def run_finished(self, result: RunResult) -> None:
            raise RuntimeError("boom")

    runner = Runner(s.cassy, s.history, s.locks, s.clock, [Broken(), s.recorder])
    result = runner.run(make_job(), T0)
    assert result.outcome is Outcome.SUCCEEDED
    assert s.recorder.finished == [result]


def test_the_result_is_json_ready(s: Setup) -> None:
    data = s.runner.run(make_job(), T0).as_dict()
    assert data["outcome"] == "succeeded" and data["type"] == "snapshot"
    assert data["nodes"] == [{"node": ip, "status": "COMPLETED", "reason": None} for ip in IPS]
