"""Tables for people that never cut a word: job names, ids and times stay whole.

Rich shrinks a table that does not fit by folding cells at any character
(`nightly-sna|pshot`). Here each column is at least as wide as its longest word, the rest of
the terminal goes to the columns with the most text, and only columns marked `shorten` (long
ids) may lose the end of a word to "…". When even that does not fit, each row is printed as a
small block of labelled lines instead of a table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    Cell = str | Text

_SHORTEST = 12  # a shortened id still shows its start
PROSE_WORD = 24
_FRAME_PER_COLUMN = 3  # one border and a space of padding on each side
_LABEL_GAP = 2


@dataclass(frozen=True)
class Column:
    """A column; `shorten` lets its words end in "…" when nothing else fits (ids), and
    `prose` lets words longer than `PROSE_WORD` break anywhere (paths and keys inside an
    error message), so one long path does not push a table into blocks."""

    header: str
    shorten: bool = False
    prose: bool = False


def print_table(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    *,
    title: str | None = None,
) -> None:
    """Print `rows` under `columns`, fitted to the console's width."""
    widths = fit_widths(columns, rows, console.width)
    if widths is None:
        _print_blocks(console, columns, rows, title)
        return
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column, width in zip(columns, widths, strict=True):
        table.add_column(
            column.header, width=width, overflow="ellipsis" if column.shorten else "fold"
        )
    for row in rows:
        table.add_row(*row)
    console.print(table)


def fit_widths(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell]], total: int
) -> list[int] | None:
    """Each column's width within `total` cells, or None when the words cannot fit."""
    from rich.cells import cell_len

    room = total - (_FRAME_PER_COLUMN * len(columns) + 1)
    natural = [_longest(column, rows, index, _lines) for index, column in enumerate(columns)]
    if sum(natural) <= room:
        return natural
    floor = [
        min(width, PROSE_WORD) if column.prose else width
        for column, width in zip(
            columns, (_longest(c, rows, i, _words) for i, c in enumerate(columns)), strict=True
        )
    ]
    if sum(floor) > room:
        floor = [
            min(width, max(_SHORTEST, cell_len(column.header))) if column.shorten else width
            for column, width in zip(columns, floor, strict=True)
        ]
        if sum(floor) > room:
            return None
    spare = room - sum(floor)
    wanted = [max(0, n - f) for n, f in zip(natural, floor, strict=True)]
    asked = sum(wanted)
    widths = [f + (spare * w // asked if asked else 0) for f, w in zip(floor, wanted, strict=True)]
    leftover = room - sum(widths)
    for index in sorted(range(len(widths)), key=lambda i: wanted[i], reverse=True):
        if leftover <= 0:
            break
        if widths[index] < natural[index]:
            widths[index] += 1
            leftover -= 1
    return widths


def _plain(cell: Cell) -> str:
    from rich.text import Text

    return cell.plain if isinstance(cell, Text) else cell


def _lines(text: str) -> list[str]:
    return text.splitlines() or [""]


def _words(text: str) -> list[str]:
    return text.split() or [""]


def _longest(
    column: Column,
    rows: Sequence[Sequence[Cell]],
    index: int,
    split: Callable[[str], list[str]],
) -> int:
    from rich.cells import cell_len

    pieces = split(column.header)
    for row in rows:
        pieces.extend(split(_plain(row[index])))
    return max(cell_len(piece) for piece in pieces)


def _print_blocks(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    title: str | None,
) -> None:
    """One block per row: the first cell as its heading, then each other cell labelled."""
    from rich.cells import cell_len
    from rich.text import Text

    if title:
        console.print(title)
    label_width = max(cell_len(c.header) for c in columns[1:]) if len(columns) > 1 else 0
    for row in rows:
        console.print()
        heading = row[0].copy() if isinstance(row[0], Text) else Text(row[0])
        heading.stylize("bold")
        console.print(heading)
        for column, cell in zip(columns[1:], row[1:], strict=True):
            text = cell if isinstance(cell, Text) else Text(cell)
            for number, line in enumerate(text.split("\n")):
                label = column.header if number == 0 else ""
                console.print(Text.assemble("  ", label.ljust(label_width + _LABEL_GAP), line))
