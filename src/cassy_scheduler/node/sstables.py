"""What Cassandra itself records about an SSTable, for checking files stored without manifests.

An SSTable is a set of component files sharing a name prefix, `nb-1-big-Data.db`,
`nb-1-big-Index.db`, ... (`<version>-<id>-<format>-<component>`; the id may be a number or a
UUID-like string). Its `TOC.txt` lists every component it was written with, and its
`Digest.crc32` holds the CRC32 of `Data.db`, in decimal. A snapshot directory also has
Cassandra's `manifest.json`, whose "files" list every `Data.db` the snapshot holds.
Scalar's Cassy stores these files and nothing else, so they are what proves its backups.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

TOC = "TOC.txt"
DATA = "Data.db"
DIGEST = "Digest.crc32"
SNAPSHOT_MANIFEST = "manifest.json"

#: Components no SSTable writes empty; others may be (BTI's Rows.db when no partition has a
#: row index, an index's files for a table without indexed values).
NEVER_EMPTY = frozenset(
    {TOC, DATA, DIGEST, "Statistics.db", "CompressionInfo.db", "Index.db", "Partitions.db"}
)
_NAME = re.compile(r"^(?P<prefix>[a-z]{2}-[A-Za-z0-9_]+-[a-z]+-)(?P<component>[A-Za-z0-9+_.-]+)$")


class SSTableFormatError(ValueError):
    """A TOC, digest or snapshot manifest that cannot be read."""


@dataclass(frozen=True)
class SSTableName:
    """One component file's name split: `nb-1-big-` and `Data.db`."""

    prefix: str
    component: str

    @classmethod
    def parse(cls, file_name: str) -> SSTableName | None:
        """The parts of an SSTable component's file name; None for any other file."""
        match = _NAME.match(file_name)
        if match is None:
            return None
        return cls(match["prefix"], match["component"])


@dataclass
class StoredSSTable:
    """The stored components of one SSTable: component name → (key, size)."""

    directory: str  # '/'-separated, below the node prefix
    prefix: str
    components: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.directory}/{self.prefix}*"


def group_sstables(files: Iterable[tuple[str, str, int]]) -> list[StoredSSTable]:
    """SSTables among (path below the prefix, key, size) entries; other files are left out."""
    found: dict[tuple[str, str], StoredSSTable] = {}
    for path, key, size in files:
        directory, _, name = path.rpartition("/")
        parsed = SSTableName.parse(name)
        if parsed is None:
            continue
        table = found.setdefault(
            (directory, parsed.prefix), StoredSSTable(directory, parsed.prefix)
        )
        table.components[parsed.component] = (key, size)
    return sorted(found.values(), key=lambda t: (t.directory, t.prefix))


def parse_toc(text: bytes) -> list[str]:
    """The component names a TOC.txt lists, one a line."""
    try:
        lines = text.decode("ascii").splitlines()
    except UnicodeDecodeError as exc:
        raise SSTableFormatError(f"TOC.txt is not text ({exc})") from None
    names = [line.strip() for line in lines if line.strip()]
    if not names or any(SSTableName.parse(f"xx-1-big-{name}") is None for name in names):
        raise SSTableFormatError(f"TOC.txt does not list components: {text[:80]!r}")
    return names


def parse_digest(text: bytes) -> int:
    """The CRC32 a Digest.crc32 holds."""
    try:
        value = int(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise SSTableFormatError(f"Digest.crc32 holds no number: {text[:40]!r}") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise SSTableFormatError(f"Digest.crc32 holds {value}, which is no CRC32")
    return value


def snapshot_data_files(text: bytes) -> list[str]:
    """The Data.db files a snapshot's manifest.json lists, relative to the snapshot directory
    (a legacy secondary index's under its `.<index>/` directory)."""
    try:
        document = json.loads(text)
        files = document["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SSTableFormatError(f"snapshot manifest.json is not readable ({exc!r})") from None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise SSTableFormatError("snapshot manifest.json 'files' is not a list of names")
    return list(files)
