"""The config package's one exception, carrying every problem found, each pinned to a place."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file: where it is, what is wrong, and what to write instead."""

    file: str
    line: int | None
    field: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        head = (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )
        return f"{head}\n    hint: {self.hint}" if self.hint else head


class ConfigError(Exception):
    """A config file that cannot be used; `problems` lists everything found, not just the first."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.problems)
        files = sorted({p.file for p in self.problems})
        head = f"{count} problem{'s' if count != 1 else ''} in {', '.join(files)}:"
        return "\n".join([head, *(str(p) for p in self.problems)])


_TOML_LINE = re.compile(r"at line (\d+)")
_TWICE = re.compile(r"Cannot declare \(([^)]*)\) twice")
_TABLE_HEADER = re.compile(r"^\s*\[", re.MULTILINE)


def toml_syntax_problem(
    file: str, text: str, error: tomllib.TOMLDecodeError, *, not_ours: str
) -> ConfigProblem:
    """The problem for text tomllib refused, with a hint that fits what it said.

    Text without a single [table] is no config of ours with a typo but some other file (the
    seed scripts' config, a shell file): `not_ours` says what belongs there instead.
    """
    message = str(error)
    match = _TOML_LINE.search(message)
    line = int(match.group(1)) if match else None
    twice = _TWICE.search(message)
    if twice:
        table = ".".join(part.strip().strip("'\"") for part in twice.group(1).split(",") if part)
        hint = f"[{table}] appears twice: merge the two tables into one, or rename one of them"
    elif message.startswith("Cannot overwrite a value"):
        hint = "a key is set twice (or a key and a table share a name): keep one of them"
    elif _TABLE_HEADER.search(text) is None:
        hint = not_ours
    else:
        hint = 'check quotes and brackets near that line; strings need quotes: key = "value"'
    return ConfigProblem(file, line, "", f"not valid TOML: {message}", hint)
