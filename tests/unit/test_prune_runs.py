"""A prune as the scheduler carries it out, against a fake server: what it asks to delete
and in which order, where it stops, and how it is recorded and told. The policy itself is
tested in test_retention_policy.py; the server's side in tests/integration/test_prune.py."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc

from cassy_scheduler.client import (
    CassyFailedPrecondition,
    CassyUnavailable,
    DeleteResult,
    StoredBackup,
)
from cassy_scheduler.clock import SystemClock, epoch_ms
from cassy_scheduler.config.loader import load_config
from cassy_scheduler.config.model import ClusterRef, JobConfig
from cassy_scheduler.history import RunHistory
from cassy_scheduler.metrics import SchedulerMetrics
from cassy_scheduler.notify.render import run_subject
from cassy_scheduler.preflight import Severity, preflight
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from cassy_scheduler.records import Failure, Outcome, RunResult
from cassy_scheduler.retention.policy import RetentionPolicy, Verdict
from cassy_scheduler.scheduling.locks import RunLocks
from cassy_scheduler.scheduling.prune import Pruner, carry_out, plan_prune
from tests.unit.fakes import T0, FakeCassy, FakeClock, make_job

NODES = ("127.0.0.2", "127.0.0.3")


@dataclass
class FakeBackups(FakeCassy):
    """FakeCassy with the built-in server's Backups service: rows as described, deletions
    answered from `refusals` (snapshot id: the error) or done."""

    stored: list[StoredBackup] = field(default_factory=list)
    refusals: dict[str, Exception] = field(default_factory=dict)
    deleted: list[tuple[str, int]] = field(default_factory=list)

    def describe_backups(
        self, cluster_id: str, *, timeout_s: float | None = None
    ) -> list[StoredBackup]:
        return list(self.stored)

    def delete_backup(
        self,
        cluster_id: str,
        snapshot_id: str,
        created_at_ms: int = 0,
        *,
        dry_run: bool = False,
        timeout_s: float | None = None,
    ) -> DeleteResult:
        refusal = self.refusals.get(snapshot_id)
        if refusal is not None:
            raise refusal
        self.deleted.append((snapshot_id, created_at_ms))
        return DeleteResult(objects=10, bytes=1000, rows=len(NODES), dry_run=dry_run)

    def backup(
        self,
        sid: str,
        days_ago: float,
        status: OperationStatus = OperationStatus.COMPLETED,
        kind: BackupType = BackupType.NODE_SNAPSHOT,
    ) -> None:
        ms = epoch_ms(T0 - timedelta(days=days_ago))
        for node in NODES:
            self.stored.append(StoredBackup(node, sid, ms, kind, status, 5, 500, False))


def server(daily: int = 5, failed: int = 0) -> FakeBackups:
    fake = FakeBackups(builtin=True)
    fake.add_cluster("prod", NODES)
    for day in range(daily):
        fake.backup(f"good-{day}", day + failed + 0.5)
    for day in range(failed):
        fake.backup(f"failed-{day}", day + 0.25, OperationStatus.FAILED)
    return fake


def job(**rules: int) -> JobConfig:
    return make_job(retention=RetentionPolicy(**rules))


def test_medusa_607_a_run_of_failures_deletes_no_good_backup() -> None:
    """5 good backups, then 5 failed ones, keep_last = 5: every good one stays, and the
    failed ones stay too while inside failed_grace (they count for nothing)."""
    fake = server(daily=5, failed=5)
    plan = plan_prune(fake, job(keep_last=5), T0)
    assert {d.chain.snapshot_id for d in plan.decisions if d.verdict is Verdict.KEEP} == {
        *(f"good-{n}" for n in range(5)),
        *(f"failed-{n}" for n in range(5)),
    }
    assert carry_out(fake, plan).deleted == ()
    assert fake.deleted == []


def test_doomed_chains_go_oldest_first_and_each_is_one_call() -> None:
    fake = server(daily=6)
    plan = plan_prune(fake, job(keep_last=2), T0)
    done = carry_out(fake, plan, workers=1)
    assert fake.deleted == [(f"good-{n}", 0) for n in (5, 4, 3, 2)]
    assert done.bytes_freed == 4000
    assert done.summary() == "2 kept, 4 deleted (3.9 KiB freed) of 6 backups"


def test_deletions_run_side_by_side_and_are_reported_in_plan_order() -> None:
    fake = server(daily=40)
    done = carry_out(fake, plan_prune(fake, job(keep_last=2), T0), workers=4)
    assert sorted(fake.deleted) == sorted((f"good-{n}", 0) for n in range(2, 40))
    assert [what for what, _ in done.deleted] == [f"snapshot good-{n}" for n in range(39, 1, -1)]
    assert done.gone == frozenset(f"good-{n}" for n in range(2, 40))


def test_a_refusal_is_noted_and_the_rest_go_on_but_an_unreachable_server_stops_it() -> None:
    fake = server(daily=6)
    refused = CassyFailedPrecondition(
        "DeleteBackup", "x", grpc.StatusCode.FAILED_PRECONDITION, "a restore is running"
    )
    fake.refusals = {
        "good-5": refused,
        "good-3": CassyUnavailable("DeleteBackup", "x", grpc.StatusCode.UNAVAILABLE, "gone"),
    }
    done = carry_out(fake, plan_prune(fake, job(keep_last=2), T0), workers=1)
    assert fake.deleted == [("good-4", 0)]
    assert [what for what, _ in done.failed] == [
        "snapshot good-5",
        "snapshot good-3",
        "snapshot good-2",
    ]
    assert done.failed[0][1] == "a restore is running"
    assert done.failed[2][1].startswith("not tried: the server became unreachable")
    assert "3 not deleted" in done.summary()


def test_a_long_list_of_failures_is_cut_in_the_summary() -> None:
    fake = server(daily=10)
    fake.refusals = {
        f"good-{n}": CassyFailedPrecondition(
            "DeleteBackup", "x", grpc.StatusCode.FAILED_PRECONDITION, "busy"
        )
        for n in range(10)
    }
    done = carry_out(fake, plan_prune(fake, job(keep_last=1), T0))
    assert done.summary().endswith("; and 6 more (the log names each)")


def test_a_prune_is_a_run_in_the_history_and_its_notice_says_what_it_did(tmp_path: Path) -> None:
    fake = server(daily=4)
    told: list[RunResult] = []

    class Observer:
        def run_started(self, start: object) -> None:
            pass

        def run_finished(self, result: RunResult) -> None:
            told.append(result)

    the_job = job(keep_last=1)
    with RunHistory.open(tmp_path / "history.sqlite") as history:
        held: list[tuple[str, str, int]] = []
        pruner = Pruner(
            lambda: fake,
            history,
            FakeClock(T0),
            observers=[Observer()],
            stored=lambda *told: held.append(told),
        )
        result = pruner.prune(the_job)
        (run,) = history.list_runs()
    assert (run.job_name, run.job_type, run.outcome) == (
        "nightly:prune",
        "prune",
        Outcome.SUCCEEDED,
    )
    assert told == [result]
    assert held == [("nightly", "prod-1", 1000)]  # 4 chains of 1000 B, 3 deleted
    assert run_subject(result, the_job) == (
        "OK prune prod-1: 1 kept, 3 deleted (2.9 KiB freed) of 4 backups"
    )


# --- what `check` says of a job with rules ------------------------------------------------

RULED = """
[scheduler]
state_dir = "state"

[jobs.nightly]
type = "snapshot"
cluster_name = "prod"
schedule = "30 0 * * *"
keep_last = 2
"""


def retention_findings(
    tmp_path: Path, fake: FakeBackups, history: RunHistory | None = None
) -> list[tuple[Severity, str]]:
    path = tmp_path / "scheduler.toml"
    path.write_text(RULED, encoding="utf-8")
    found = preflight(load_config(path), fake, T0, history)
    return [(f.severity, f.message) for f in found if f.subject == "jobs.nightly"][1:]


def test_check_says_what_the_policy_keeps(tmp_path: Path) -> None:
    (finding,) = retention_findings(tmp_path, server(daily=2))
    assert finding == (
        Severity.OK,
        "keep_last = 2, min_keep = 1: keeps 2 of 2 backups, 2.0 KiB stored",
    )


def test_check_warns_when_no_prune_followed_the_newest_backup(tmp_path: Path) -> None:
    with RunHistory.open(tmp_path / "history.sqlite") as history:
        found = retention_findings(tmp_path, server(daily=4), history)
    assert found[1][0] is Severity.WARNING
    assert "2 backup(s) (2.0 KiB) that no rule keeps are still stored" in found[1][1]


def test_check_warns_when_incrementals_outgrow_their_snapshot(tmp_path: Path) -> None:
    fake = server(daily=1)
    for hours in (1, 2, 3):
        fake.backup("good-0", 0.5 - hours / 24, kind=BackupType.NODE_INCREMENTAL)
    found = retention_findings(tmp_path, fake)
    assert found[-1][0] is Severity.WARNING
    assert "the incrementals since snapshot good-0" in found[-1][1]
    assert "more than the snapshot itself (1000 B)" in found[-1][1]


def test_check_warns_that_scalars_cassy_cannot_prune(tmp_path: Path) -> None:
    fake = server(daily=1)
    fake.builtin = False
    ((severity, message),) = retention_findings(tmp_path, fake)
    assert severity is Severity.WARNING and "Scalar's Cassy" in message


def test_the_metrics_export_the_bytes_each_job_holds() -> None:
    metrics = SchedulerMetrics()
    metrics.backups_stored("nightly", "prod-1", 1000)
    value = metrics.registry.get_sample_value(
        "cassy_scheduler_stored_bytes", {"job": "nightly", "cluster_id": "prod-1"}
    )
    assert value == 1000


def test_two_jobs_of_one_kind_on_one_cluster_never_prune_each_others_backups() -> None:
    fake = server(daily=10)
    daily = make_job("daily", retention=RetentionPolicy(keep_last=2))
    weekly = make_job("weekly", retention=RetentionPolicy(keep_within=timedelta(days=6)))
    plain = make_job("plain")  # no rules: keeps everything it could have taken
    elsewhere = make_job("elsewhere", cluster=ClusterRef(cluster_name="other"))
    plan = plan_prune(fake, daily, T0, [daily, weekly, elsewhere])
    kept = {d.chain.snapshot_id: d.reasons for d in plan.decisions if d.verdict is Verdict.KEEP}
    assert set(kept) == {f"good-{n}" for n in range(6)}  # 2 by its rules, 4 more by weekly's
    assert kept["good-3"] == ("job weekly's rules keep it",)
    assert plan_prune(fake, daily, T0, [daily, plain]).doomed == ()


def test_the_snapshot_the_incrementals_extend_stays_even_when_it_is_not_good() -> None:
    fake = server(daily=3)
    fake.backup("broken", 20, OperationStatus.FAILED)
    fake.backup("broken", 19.9, kind=BackupType.NODE_INCREMENTAL)  # the newest incremental
    decisions = {d.chain.snapshot_id: d for d in plan_prune(fake, job(keep_last=1), T0).decisions}
    assert decisions["broken"].verdict is Verdict.KEEP
    assert decisions["broken"].reasons == ("the current incrementals extend it",)


def test_a_prune_waits_for_the_clusters_lock_and_is_skipped_when_it_stays_held(
    tmp_path: Path,
) -> None:
    fake = server(daily=4)
    the_job = job(keep_last=1)
    the_job = dataclasses.replace(the_job, wait_timeout=timedelta(seconds=0.3))
    with RunHistory.open(tmp_path / "history.sqlite") as history:
        locks = RunLocks(tmp_path / "locks", SystemClock())
        pruner = Pruner(lambda: fake, history, FakeClock(T0), locks=locks)
        with locks.cluster("prod-1", "nightly", 1):  # a backup of the cluster runs
            result = pruner.prune(the_job)
        assert (result.outcome, result.failure) == (Outcome.SKIPPED, Failure.CLUSTER_BUSY)
        assert fake.deleted == []
        assert pruner.prune(the_job).succeeded  # the cluster is free again
    assert len(fake.deleted) == 3


def test_one_snapshots_deletions_go_one_after_another() -> None:
    fake = server(daily=12)
    for n in range(3):  # three failed incrementals on good-9 (kept), past failed_grace
        fake.backup("good-9", 9.4 - n / 10, OperationStatus.FAILED, BackupType.NODE_INCREMENTAL)
    in_flight: dict[str, int] = {}
    real = fake.delete_backup

    def one_at_a_time(
        cluster_id: str, snapshot_id: str, created_at_ms: int = 0, **_: object
    ) -> DeleteResult:
        in_flight[snapshot_id] = in_flight.get(snapshot_id, 0) + 1
        try:
            assert in_flight[snapshot_id] == 1, "two deletions of one snapshot at once"
            time.sleep(0.01)
            return real(cluster_id, snapshot_id, created_at_ms)
        finally:
            in_flight[snapshot_id] -= 1

    fake.delete_backup = one_at_a_time  # type: ignore[method-assign]
    done = carry_out(fake, plan_prune(fake, job(keep_last=10), T0), workers=4)
    assert done.failed == ()
    assert sorted(sid for sid, _ in fake.deleted) == ["good-10", "good-11", *["good-9"] * 3]


def test_a_crash_in_one_deletion_loses_no_result_and_stops_the_rest() -> None:
    fake = server(daily=6)
    real = fake.delete_backup

    def crash_on_good_4(
        cluster_id: str, snapshot_id: str, created_at_ms: int = 0, **_: object
    ) -> DeleteResult:
        if snapshot_id == "good-4":
            raise RuntimeError("a bug")
        return real(cluster_id, snapshot_id, created_at_ms)

    fake.delete_backup = crash_on_good_4  # type: ignore[method-assign]
    done = carry_out(fake, plan_prune(fake, job(keep_last=2), T0), workers=1)
    assert [what for what, _ in done.deleted] == ["snapshot good-5"]
    assert dict(done.failed) == {
        "snapshot good-4": "internal error: RuntimeError('a bug')",
        "snapshot good-3": "not tried after an internal error",
        "snapshot good-2": "not tried after an internal error",
    }
