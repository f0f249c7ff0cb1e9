"""What people read in a terminal: hints keep their [table] names, errors say what fits, help
reads like a well-kept CLI's, and tables keep every word whole at 80 columns."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import typer.main
from rich.console import Console
from typer.testing import CliRunner

from cassy_scheduler.cli import app
from cassy_scheduler.commands.tables import Column, fit_widths, print_table

EXAMPLES = Path(__file__).parents[2] / "examples"


def run(*args: str, columns: int = 80) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)})
    return result.exit_code, result.output


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scheduler.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- hints keep their brackets ----------------------------------------------------------------


def test_a_missing_cluster_hint_names_the_defaults_table(tmp_path: Path) -> None:
    path = write(tmp_path, '[jobs.a]\ntype = "snapshot"\nschedule = "@daily"\n')
    code, output = run("backup", "snapshot", "-c", str(path))
    assert code == 2
    assert "to this job or to [defaults]" in output


def test_an_undefined_target_hint_names_the_table_to_write(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [defaults]
        cluster_name = "prod"
        [jobs.a]
        type = "snapshot"
        schedule = "@daily"
        notify = ["ops-mial"]
        """,
    )
    for verb in (("jobs",), ("check", "--offline")):
        code, output = run(*verb, "-c", str(path))
        assert code == 2, output
        assert "define it as a [notify.ops-mial] table" in " ".join(output.split()), verb


def test_server_text_with_brackets_is_printed_as_it_is(tmp_path: Path) -> None:
    console = Console(width=80, markup=False, record=True)
    print_table(console, [Column("a")], [("[red]not markup[/] and [defaults]",)])
    assert "[red]not markup[/] and [defaults]" in console.export_text()


# --- errors that say what fits ---------------------------------------------------------------


def test_a_date_no_month_has_is_said_to_never_fire(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [defaults]
        cluster_name = "prod"
        [jobs.a]
        type = "snapshot"
        schedule = "0 0 31 2 *"
        """,
    )
    code, output = run("check", "--offline", "-c", str(path), columns=200)
    assert code == 2
    assert "never fires: day 31 of the month does not exist in Feb" in output
    assert "day-of-month takes" not in output


def test_a_table_written_twice_gets_a_hint_about_that(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [jobs.a]
        type = "snapshot"
        [jobs.a]
        schedule = "@daily"
        """,
    )
    code, output = run("check", "--offline", "-c", str(path), columns=200)
    assert code == 2
    assert "[jobs.a] appears twice: merge the two tables into one" in output
    assert "quotes and brackets" not in output


def test_a_seed_style_config_is_told_what_config_is_now(tmp_path: Path) -> None:
    seed = tmp_path / "config_snapshot"
    seed.write_text("CASSY_HOST=localhost:20051\nMAIL_TO=ops@example.com\n", encoding="utf-8")
    code, output = run("backup", "snapshot", "-c", str(seed), "some-cluster", columns=200)
    assert code == 2
    assert "cassy-scheduler TOML file now, not the seed scripts' config file" in output
    assert "contrib/cron/README.md" in output


# --- help ------------------------------------------------------------------------------------


def _verbs() -> list[str]:
    group = typer.main.get_command(app)
    return sorted(getattr(group, "commands", {}))


@pytest.mark.parametrize("verb", ["", *_verbs()])
def test_help_reads_like_a_well_kept_clis(verb: str) -> None:
    code, output = run(*([verb] if verb else []), "--help")
    assert code == 0, output
    assert "<bool>" not in output
    assert not re.search(r"\S {2,}\S", output.split("Arguments:")[0].split("Options:")[0]), (
        "double spaces in the description"
    )
    usage = output.splitlines()[0]
    for name in re.findall(r"[{\[]([A-Za-z_:]+)[}\]]", usage):
        assert name == "OPTIONS" or name.isupper(), f"{verb}: {name} in {usage!r}"
    for line in output.split("Options:")[-1].splitlines():
        assert not re.search(r"--\S+ <(str|path|int|float)", line), line


# --- tables ----------------------------------------------------------------------------------


def test_jobs_at_80_columns_keep_every_job_name_whole() -> None:
    for example in ("scheduler.toml", "scheduler-small.toml"):
        code, output = run("jobs", "-c", str(EXAMPLES / example))
        assert code == 0, output
        assert max(len(line) for line in output.splitlines()) <= 80
        for name in re.findall(r"^\[jobs\.([\w.-]+)\]", (EXAMPLES / example).read_text(), re.M):
            assert name in output, f"{name} cut in:\n{output}"


def test_widths_never_go_below_the_longest_word() -> None:
    columns = [Column("job"), Column("schedule")]
    rows = [("orders-nightly-snapshot", "at 00:30 every day, up to 2m later")]
    widths = fit_widths(columns, rows, 40)
    assert widths is not None and widths[0] >= len("orders-nightly-snapshot")
    assert sum(widths) + 7 <= 40


def test_ids_are_shortened_and_prose_may_break_only_long_words() -> None:
    columns = [Column("job"), Column("id", shorten=True), Column("error", prose=True)]
    rows = [("nightly", "c" * 60, "failed: " + "x" * 80)]
    widths = fit_widths(columns, rows, 60)
    assert widths is not None and widths[0] == len("nightly") and widths[1] < 60


def test_rows_that_cannot_fit_become_labelled_blocks() -> None:
    console = Console(width=30, markup=False, record=True)
    columns = [Column("job"), Column("cluster")]
    print_table(console, columns, [("analytics-hourly-incremental", "name analytics")])
    text = console.export_text()
    assert "analytics-hourly-incremental" in text
    assert "cluster  name analytics" in text
