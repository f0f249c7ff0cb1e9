"""Sizes and rates as people write them in config files: "16MiB", "200MB/s"."""

from __future__ import annotations

import re

_FACTORS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
SIZE_HINT = 'write a number with a unit B, kB, MB, GB, KiB, MiB or GiB, e.g. "16MiB"'
RATE_HINT = 'write a size per second, e.g. "200MB/s" or "50MiB/s"'


class SizeError(ValueError):
    """A size or rate string that cannot be read; `hint` says how to write one."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def parse_size(text: str) -> int:
    """Bytes, from "16MiB", "5 MB" or "1048576"."""
    match = _SIZE.fullmatch(text.strip().lower())
    if match is None or match.group(2) not in _FACTORS:
        raise SizeError(f'"{text}" is not a size', SIZE_HINT)
    return int(float(match.group(1)) * _FACTORS[match.group(2)])


def parse_rate(text: str) -> int:
    """Bytes per second, from "200MB/s"; a rate without "/s" is refused, so that a size
    written where a rate belongs is noticed."""
    size, slash, unit = text.strip().lower().partition("/")
    if not slash or unit.strip() != "s":
        raise SizeError(f'"{text}" is not a rate', RATE_HINT)
    try:
        return parse_size(size)
    except SizeError:
        raise SizeError(f'"{text}" is not a rate', RATE_HINT) from None


def format_size(count: int) -> str:
    """A byte count for people, in binary units: 1536 becomes "1.5 KiB"."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
