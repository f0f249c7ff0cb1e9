"""Subjects a person can triage from a phone, for every way a run can end."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cassy_scheduler.notify.render import RunContext, render_run
from cassy_scheduler.protocol.types import NodeStatus, OperationStatus
from cassy_scheduler.records import Failure, Outcome, RunResult
from tests.unit.notify_fakes import config, result

TARGET = '[notify.mail]\ntype = "command"\ncommand = ["true"]\n'


@pytest.mark.parametrize(
    ("run", "subject"),
    [
        (result(), "OK snapshot prod-cluster: 3 of 3 nodes completed"),
        (
            result(Outcome.FAILED, failed=("127.0.0.2", "127.0.0.4")),
            "FAILED snapshot prod-cluster: 2 of 3 nodes failed",
        ),
        (
            result(Outcome.FAILED, failure=Failure.UNREACHABLE, error="could not ..."),
            "FAILED snapshot prod-cluster: server unreachable",
        ),
        (
            dataclasses.replace(
                result(Outcome.TIMED_OUT, failure=Failure.TIMED_OUT),
                nodes=(
                    NodeStatus("127.0.0.2", OperationStatus.COMPLETED),
                    NodeStatus("127.0.0.3", OperationStatus.STARTED, "still unfinished"),
                ),
            ),
            "TIMED OUT snapshot prod-cluster: 1 of 2 nodes unfinished",
        ),
        (
            result(Outcome.SKIPPED, failure=Failure.ALREADY_RUNNING),
            "SKIPPED snapshot prod-cluster: the previous run still runs",
        ),
        (
            result(Outcome.INTERRUPTED, failure=Failure.STOPPED),
            "INTERRUPTED snapshot prod-cluster: the scheduler stopped",
        ),
    ],
)
def test_the_subject_says_what_happened(tmp_path: Path, run: RunResult, subject: str) -> None:
    settings = config(tmp_path, TARGET)
    notice = render_run(run, RunContext(settings.job("nightly"), settings.path, None))
    assert notice.subject == subject
    assert notice.failing is (run.outcome is not Outcome.SUCCEEDED)


def test_an_unresolved_cluster_is_named_as_configured_and_an_incremental_shows_its_base(
    tmp_path: Path,
) -> None:
    settings = config(tmp_path, TARGET)
    run = dataclasses.replace(
        result(Outcome.FAILED, failure=Failure.UNKNOWN_CLUSTER, error="no cluster named x"),
        cluster_id=None,
        cluster_name=None,
    )
    notice = render_run(run, RunContext(settings.job("nightly"), settings.path, None))
    assert notice.subject == "FAILED snapshot prod-cluster: cluster not registered"
    assert 'cluster_name "prod-cluster" (not resolved)' in notice.text
    incremental = dataclasses.replace(result(), base_snapshot_id="snap-7", base_snapshot_taken=True)
    text = render_run(incremental, RunContext(settings.job("nightly"), settings.path, None)).text
    assert "Extends snapshot    snap-7 (taken first by this run)" in text
    assert (
        "<script>"
        not in render_run(
            dataclasses.replace(result(Outcome.FAILED), error="<script>"),
            RunContext(settings.job("nightly"), settings.path, None),
        ).html
    )
