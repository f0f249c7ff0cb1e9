"""Line numbers of tables and keys in TOML text, which tomllib does not report.

Run only on text tomllib has accepted, so the scanner can trust the syntax; if it still meets
something it does not follow, it returns what it found so far rather than failing.
"""

from __future__ import annotations

import contextlib
import tomllib
from dataclasses import dataclass

from cassy_scheduler.configfile.errors import ConfigProblem

KeyPath = tuple[str, ...]
_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def key_lines(text: str) -> dict[KeyPath, int]:
    """Map each table header and key path to the 1-based line where it is first written.

    Arrays of tables get their index as a path element ("0", "1", ...).
    """
    found: dict[KeyPath, int] = {}
    with contextlib.suppress(IndexError, ValueError, tomllib.TOMLDecodeError):
        _scan(text, found)
    return found


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of `path`, or of its nearest written parent when the key itself is absent."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def _scan(text: str, found: dict[KeyPath, int]) -> None:
    table: KeyPath = ()
    aot_counts: dict[KeyPath, int] = {}
    pos = 0
    line, counted = 1, 0  # newlines are counted once, from where the last count stopped
    while True:
        pos = _skip_blank(text, pos)
        if pos >= len(text):
            return
        line += text.count("\n", counted, pos)
        counted = pos
        if text[pos] == "[":
            is_aot = text.startswith("[[", pos)
            keys, pos = _read_key(text, pos + (2 if is_aot else 1))
            pos = text.index("]", pos) + (2 if is_aot else 1)
            path = tuple(keys)
            if is_aot:
                aot_counts[path] = aot_counts.get(path, -1) + 1
                path = (*path, str(aot_counts[path]))
            _record(found, path, 1, line)
            table = path
        else:
            keys, pos = _read_key(text, pos)
            _record(found, (*table, *keys), len(table) + 1, line)
            pos = _skip_value(text, _skip_spaces(text, pos + 1))
        pos = _skip_comment(text, _skip_spaces(text, pos))


def _record(found: dict[KeyPath, int], path: KeyPath, first: int, line: int) -> None:
    for end in range(first, len(path) + 1):
        found.setdefault(path[:end], line)


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _skip_comment(text: str, pos: int) -> int:
    if pos < len(text) and text[pos] == "#":
        end = text.find("\n", pos)
        return len(text) if end < 0 else end
    return pos


def _skip_blank(text: str, pos: int) -> int:
    """Skip whitespace, newlines and comments."""
    while pos < len(text):
        if text[pos] in " \t\r\n":
            pos += 1
        elif text[pos] == "#":
            pos = _skip_comment(text, pos)
        else:
            break
    return pos


def _read_key(text: str, pos: int) -> tuple[list[str], int]:
    """Read a dotted key; stops before "=" or "]"."""
    keys: list[str] = []
    while True:
        pos = _skip_spaces(text, pos)
        if text[pos] in "\"'":
            end = _skip_value(text, pos)
            keys.append(tomllib.loads(f"k = {text[pos:end]}")["k"])
            pos = end
        else:
            start = pos
            while text[pos] in _BARE:
                pos += 1
            keys.append(text[start:pos])
        pos = _skip_spaces(text, pos)
        if text[pos] != ".":
            return keys, pos
        pos += 1


def _skip_value(text: str, pos: int) -> int:
    """The position just after the value starting at `pos`."""
    for quote in ('"""', "'''"):
        if text.startswith(quote, pos):
            return _skip_multiline_string(text, pos + 3, quote)
    char = text[pos]
    if char == '"':
        pos += 1
        while text[pos] != '"':
            pos += 2 if text[pos] == "\\" else 1
        return pos + 1
    if char == "'":
        return text.index("'", pos + 1) + 1
    if char in "[{":
        return _skip_container(text, pos + 1, "]" if char == "[" else "}")
    while pos < len(text) and text[pos] not in ",]}\n#":
        pos += 1
    return pos


def _skip_multiline_string(text: str, pos: int, quote: str) -> int:
    while True:
        if quote == '"""' and text[pos] == "\\":
            pos += 2
        elif text.startswith(quote, pos):
            pos += 3
            while pos < len(text) and text[pos] == quote[0]:
                pos += 1
            return pos
        else:
            pos += 1


def _skip_container(text: str, pos: int, closer: str) -> int:
    while True:
        pos = _skip_blank(text, pos)
        if text[pos] == closer:
            return pos + 1
        if text[pos] == ",":
            pos += 1
        elif closer == "}":
            _, pos = _read_key(text, pos)
            pos = _skip_value(text, _skip_spaces(text, pos + 1))
        else:
            pos = _skip_value(text, pos)


@dataclass(frozen=True)
class TableProblems:
    """Builds problems for keys of one table, each pinned to the key's line."""

    file: str
    lines: dict[KeyPath, int]
    table: str

    def __call__(self, key: str, message: str, hint: str) -> ConfigProblem:
        where = (self.table, key)
        return ConfigProblem(self.file, line_of(self.lines, where), ".".join(where), message, hint)
