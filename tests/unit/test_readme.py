"""The README stays runnable: every command is run by a test, every config in it is valid."""

from __future__ import annotations

import re
import tomllib

from typer.testing import CliRunner

from cassy_scheduler.cli import app
from tests.readme import COVERED_ELSEWHERE, PLACEHOLDERS, REPO, blocks, commands

#: How the walkthrough (tests/integration/test_readme_walkthrough.py) runs each command.
WALKTHROUGH_STARTS = (
    "python3 -m venv ",
    "/opt/cassy-scheduler/bin/",
    "mkdir ",
    "cp ",
    "export ",
    "cassy-scheduler ",
)


def test_every_command_is_run_by_the_walkthrough_or_named_test() -> None:
    found = commands()
    assert len(found) > 20
    for command in found:
        if command.text in COVERED_ELSEWHERE:
            assert (REPO / COVERED_ELSEWHERE[command.text]).is_file()
            continue
        assert command.text.startswith(WALKTHROUGH_STARTS), (
            f"README.md:{command.line}: `{command.text}` is run by no test; teach "
            "tests/integration/test_readme_walkthrough.py to run it"
        )


def test_covered_commands_really_run_there() -> None:
    demo_runner = (REPO / "tests" / "demoproc.py").read_text(encoding="utf-8")
    for command, where in COVERED_ELSEWHERE.items():
        text = (REPO / where).read_text(encoding="utf-8")
        if where == ".ci/run":
            assert command in text
            continue
        # The demo tests run what the make target runs: its module, with its arguments.
        module, *args = _make_recipe(command.split()[1]).split("-m ")[-1].split()
        assert f'"-m", "{module}"' in demo_runner, (command, module)
        assert f"run_demo({args!r}".replace("'", '"') in text, (command, args)


def _make_recipe(target: str) -> str:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert match, f"no make target {target}"
    return match.group(1).strip().splitlines()[-1]


def test_only_known_placeholders_are_used() -> None:
    for command in commands():
        for word in re.findall(r"\b[A-Z][A-Z_]{3,}\b", command.text):
            assert word in PLACEHOLDERS or f"${word}" in command.text, (command, word)


def test_the_complete_config_is_the_small_example() -> None:
    example = (REPO / "examples" / "scheduler-small.toml").read_text(encoding="utf-8")
    shown = [body for _, body in blocks("toml") if body.startswith("# cassy-scheduler: one")]
    assert shown == [example]


def test_every_toml_block_parses() -> None:
    for line, body in blocks("toml"):
        try:
            tomllib.loads(body)
        except tomllib.TOMLDecodeError as exc:
            raise AssertionError(f"README.md:{line}: {exc}") from exc


def test_every_verb_and_option_in_the_readme_exists() -> None:
    """A cheap check for renamed flags; the walkthrough runs the commands for real."""
    helps: dict[str, str] = {}
    for command in commands():
        words = command.words
        if words[0] != "cassy-scheduler":
            continue
        verb = words[1]
        if verb not in helps:
            result = CliRunner().invoke(app, [verb, "--help"], env={"COLUMNS": "200"})
            assert result.exit_code == 0, (command, result.output)
            helps[verb] = result.output
        for option in (w for w in words[2:] if w.startswith("--")):
            assert option in helps[verb], f"README.md:{command.line}: {verb} has no {option}"
