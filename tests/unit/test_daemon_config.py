"""The [scheduler] table: defaults, and one test per error, each naming file, line and field."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from cassy_scheduler.config.loader import load_config
from cassy_scheduler.configfile.errors import ConfigError, ConfigProblem

JOB = """
[jobs.nightly]
type = "snapshot"
cluster_name = "prod"
schedule = "30 0 * * *"
"""


def write(tmp_path: Path, scheduler: str) -> Path:
    path = tmp_path / "scheduler.toml"
    path.write_text(textwrap.dedent(scheduler) + JOB, encoding="utf-8")
    return path


def only_problem(path: Path, field: str, fragment: str) -> ConfigProblem:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    lines = path.read_text(encoding="utf-8").splitlines()
    line = next(n for n, text in enumerate(lines, start=1) if fragment in text)
    assert (problem.file, problem.line, problem.field) == (str(path), line, field)
    assert problem.hint
    assert f"{path}:{line}: {field}: " in str(problem)
    return problem


def test_defaults_apply_without_a_scheduler_table(tmp_path: Path) -> None:
    runtime = load_config(write(tmp_path, "")).runtime
    assert runtime.shutdown_grace == timedelta(seconds=60)
    assert runtime.reload_poll == timedelta(seconds=5)
    assert runtime.max_parallel_runs == 8
    assert runtime.state_dir.name == "cassy-scheduler"


def test_a_relative_state_dir_is_read_from_the_config_files_directory(tmp_path: Path) -> None:
    runtime = load_config(write(tmp_path, '[scheduler]\nstate_dir = "state"\n')).runtime
    assert runtime.state_dir == tmp_path / "state"
    assert runtime.history_path.parent == runtime.lock_dir.parent == tmp_path / "state"


def test_an_empty_state_dir_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[scheduler]\nstate_dir = " "\n')
    problem = only_problem(path, "scheduler.state_dir", "state_dir")
    assert "empty" in problem.message


def test_a_zero_reload_poll_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[scheduler]\nreload_poll = "0"\n')
    problem = only_problem(path, "scheduler.reload_poll", "reload_poll")
    assert "longer than zero" in problem.message


def test_a_shutdown_grace_that_is_not_a_duration_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[scheduler]\nshutdown_grace = "soon"\n')
    problem = only_problem(path, "scheduler.shutdown_grace", "shutdown_grace")
    assert "not a duration" in problem.message


def test_max_parallel_runs_out_of_range_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[scheduler]\nmax_parallel_runs = 0\n")
    problem = only_problem(path, "scheduler.max_parallel_runs", "max_parallel_runs")
    assert "between 1 and 256" in problem.message


def test_an_unknown_scheduler_key_gets_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, '[scheduler]\nstate_directory = "x"\n')
    problem = only_problem(path, "scheduler.state_directory", "state_directory")
    assert problem.hint == 'did you mean "state_dir"?'
