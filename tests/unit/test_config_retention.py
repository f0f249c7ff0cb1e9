"""Retention keys in the config: what a job keeps, from the job or [defaults], and every
misplaced or out-of-range key named with its file, line and fix."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cassy_scheduler.config.loader import load_config
from tests.unit.test_config import BASE, only_problem, write


def test_rules_come_from_defaults_and_a_job_overrides_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [defaults]
        cassandra_host = "10.0.0.1"
        keep_daily = 7
        keep_weekly = 4

        [jobs.nightly]
        type = "snapshot"
        schedule = "30 0 * * *"
        keep_weekly = 8
        keep_within = "2d"
        min_keep = 3
        failed_grace = "1d"
        prune_schedule = "0 12 * * *"

        [jobs.weekly]
        type = "snapshot"
        schedule = "0 1 * * 0"

        [jobs.hourly]
        type = "incremental"
        schedule = "0 * * * *"
        """,
    )
    config = load_config(path)
    nightly, weekly, hourly = (config.job(n) for n in ("nightly", "weekly", "hourly"))
    assert nightly.retention is not None and weekly.retention is not None
    assert (nightly.retention.keep_daily, nightly.retention.keep_weekly) == (7, 8)
    assert nightly.retention.keep_within == timedelta(days=2)
    assert (nightly.retention.min_keep, nightly.retention.failed_grace) == (3, timedelta(days=1))
    assert nightly.prune_schedule is not None
    assert nightly.prune_schedule.expression == "0 12 * * *"
    assert (weekly.retention.keep_weekly, weekly.retention.min_keep) == (4, 1)
    assert weekly.retention.failed_grace == timedelta(days=7)
    assert weekly.prune_schedule is None
    assert hourly.retention is None  # its incrementals go with the snapshot they extend


def test_a_job_without_rules_keeps_everything(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, BASE)).job("nightly").retention is None


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        ("keep_daily = 0", "keep_daily", "between 1 and 100000"),
        ("keep_last = 100001", "keep_last", "between 1 and 100000"),
        ("min_keep = 0", "min_keep", "never leaves a job without a good backup"),
        ('keep_within = "0s"', "keep_within", ""),
        ("min_keep = 2", "min_keep", "no keep_* rule is"),
        ('failed_grace = "3d"', "failed_grace", "no keep_* rule is"),
        ('prune_schedule = "0 12 * * *"', "prune_schedule", "no keep_* rule"),
        ('prune_schedule = "61 * * * *"', "prune_schedule", ""),
    ],
)
def test_a_bad_retention_key_names_the_file_line_and_field(
    tmp_path: Path, line: str, field: str, words: str
) -> None:
    rules = "" if "no keep_*" in words else "keep_monthly = 6\n"
    path = write(tmp_path, BASE + rules + line + "\n")
    problem = only_problem(path, f"jobs.nightly.{field}", line)
    assert words in problem.message


def test_an_incremental_job_keeps_no_backups_of_its_own(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BASE + '\n[jobs.hourly]\ntype = "incremental"\nschedule = "0 * * * *"\nkeep_last = 24\n',
    )
    problem = only_problem(path, "jobs.hourly.keep_last", "keep_last = 24")
    assert "with the snapshot they extend" in problem.message
