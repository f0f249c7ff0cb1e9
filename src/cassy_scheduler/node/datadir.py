"""A node's data directory seen as files: table dirs, snapshot files, incremental-backup files.

Cassandra keeps each table in `<data dir>/<keyspace>/<table>-<table id, 32 hex>/`, the
snapshot `TAG` of it in `<table dir>/snapshots/TAG/` and, with incremental backups on, a hard
link of every flushed sstable in `<table dir>/backups/`. A legacy secondary index lives beside
its table in `<table dir>/.<index name>/`, so its snapshot and backup files sit one level
deeper (`snapshots/TAG/.<index>/`, `backups/.<index>/`); storage-attached indexes (SAI) are
sstable components in the table dir itself. Every path handed on from here is relative to the
data dir, '/'-separated, which is how Cassy names stored files.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

_log = logging.getLogger(__name__)

SNAPSHOTS_DIR = "snapshots"
BACKUPS_DIR = "backups"
_TABLE_DIR = re.compile(r"^(?P<table>\w+)-(?P<table_id>[0-9a-f]{32})$", re.ASCII)
_PLAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$", re.ASCII)


def is_plain_id(text: str) -> bool:
    """True for ids safe as one path segment and as a nodetool argument.

    Letters, digits, '.', '_' and '-', starting with a letter or digit, at most 255 characters:
    no separators, no '..', no whitespace, nothing nodetool could read as an option.
    """
    return _PLAIN_ID.fullmatch(text) is not None


def validate_tag(tag: str) -> str:
    """Return `tag` if it can name a snapshot, else raise ValueError saying what is allowed."""
    if not is_plain_id(tag):
        raise ValueError(
            f"snapshot id {tag!r} is not a plain id: use 1 to 255 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit (a UUID is fine)"
        )
    return tag


@dataclass(frozen=True)
class TableDir:
    """One table's directory in a data dir."""

    keyspace: str
    table: str
    table_id: str
    path: Path


@dataclass(frozen=True)
class DataFile:
    """A file of a node; `relative` is its '/'-separated path below the data dir."""

    path: Path
    relative: str
    size: int


def table_dirs(data_dir: Path, keyspaces: Iterable[str]) -> list[TableDir]:
    """Every table dir of the given keyspaces, sorted; a missing keyspace dir has none."""
    found: list[TableDir] = []
    for keyspace in sorted(set(keyspaces)):
        keyspace_dir = data_dir / keyspace
        if not keyspace_dir.is_dir():
            continue
        for entry in sorted(keyspace_dir.iterdir()):
            match = _TABLE_DIR.match(entry.name)
            if match is None or entry.is_symlink() or not entry.is_dir():
                continue
            found.append(TableDir(keyspace, match["table"], match["table_id"], entry))
    return found


def _files_below(root: Path, data_dir: Path) -> Iterator[DataFile]:
    """Regular files under `root`, recursively, without following symlinks."""
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            path = Path(directory) / name
            if path.is_symlink() or not path.is_file():
                continue
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # removed while we looked (compaction, clearsnapshot)
                continue
            yield DataFile(path, path.relative_to(data_dir).as_posix(), size)


def _collect(data_dir: Path, keyspaces: Iterable[str], below: Sequence[str]) -> list[DataFile]:
    files: list[DataFile] = []
    for table in table_dirs(data_dir, keyspaces):
        root = table.path.joinpath(*below)
        if root.is_dir():
            files.extend(_files_below(root, data_dir))
    return sorted(files, key=lambda f: f.relative)


def snapshot_files(data_dir: Path, tag: str, keyspaces: Iterable[str]) -> list[DataFile]:
    """Every file of snapshot `tag` (sstables, 2i files, manifest.json, schema.cql)."""
    return _collect(data_dir, keyspaces, (SNAPSHOTS_DIR, validate_tag(tag)))


def snapshot_tags(data_dir: Path, keyspaces: Iterable[str]) -> set[str]:
    """The names of the snapshots the keyspaces' tables hold on disk, whoever took them."""
    tags: set[str] = set()
    for table in table_dirs(data_dir, keyspaces):
        root = table.path / SNAPSHOTS_DIR
        if root.is_dir():
            tags.update(entry.name for entry in root.iterdir() if entry.is_dir())
    return tags


def keyspace_dirs(data_dir: Path) -> list[str]:
    """Every keyspace directory under the data dir, registered or not."""
    if not data_dir.is_dir():
        return []
    return sorted(e.name for e in data_dir.iterdir() if e.is_dir() and not e.is_symlink())


def remove_snapshot(data_dir: Path, tag: str) -> int:
    """Remove snapshot `tag` from every table of every keyspace, as `nodetool clearsnapshot
    -t` does (a snapshot is hard links under each table's snapshots/<tag>/, and Cassandra 5
    keeps only snapshots with a TTL in memory); returns how many table snapshots went."""
    removed = 0
    for table in table_dirs(data_dir, keyspace_dirs(data_dir)):
        snapshot = table.path / SNAPSHOTS_DIR / validate_tag(tag)
        if snapshot.is_dir():
            shutil.rmtree(snapshot)
            removed += 1
    return removed


def backup_files(data_dir: Path, keyspaces: Iterable[str]) -> list[DataFile]:
    """Every incremental-backup file of the keyspaces' tables, 2i subdirs included."""
    return _collect(data_dir, keyspaces, (BACKUPS_DIR,))


def _table_and_name(relative: str, marker: Sequence[str]) -> tuple[str, str] | None:
    """Split `ks/t-id/<marker...>/rest` into ('ks/t-id', 'rest'); None if it is not so."""
    parts = relative.split("/")
    width = len(marker)
    if len(parts) <= 2 + width or tuple(parts[2 : 2 + width]) != tuple(marker):
        return None
    return "/".join(parts[:2]), "/".join(parts[2 + width :])


def sstable_key(relative: str) -> str | None:
    """What a snapshot's or an incremental's file is, whichever holds it: its table and its
    name ('ks/t-id/nb-1-big-Data.db', '.kv_v/' index dirs kept); None for other paths. The
    same SSTable file in two backups of one node has the same key."""
    parts = relative.split("/")
    if len(parts) > 4 and parts[2] == SNAPSHOTS_DIR:
        found = _table_and_name(relative, (SNAPSHOTS_DIR, parts[3]))
    else:
        found = _table_and_name(relative, (BACKUPS_DIR,))
    return None if found is None else "/".join(found)


def _snapshot_tag_of(relative: str) -> str | None:
    parts = relative.split("/")
    return parts[3] if len(parts) > 4 and parts[2] == SNAPSHOTS_DIR else None


def covered_backup_files(
    before: Sequence[DataFile],
    after_snapshot: Sequence[DataFile],
    snapshot: Sequence[DataFile],
) -> list[DataFile]:
    """The incremental-backup files a new snapshot makes redundant, safe to delete.

    `before` lists backups/ before the snapshot was taken, `after_snapshot` right after it,
    `snapshot` the snapshot's own files. Covered are every file of `before`, and every file
    of `after_snapshot` whose name is also in the snapshot of the same table (and index).
    Only files under a table's backups/ are ever returned.

    Why this is safe: a snapshot flushes the memtables, then hard-links every live sstable.
    An sstable flushed before the snapshot began is therefore in it, directly or through the
    sstable a compaction merged it into; its backup link adds nothing. A backup link that
    appears during the snapshot comes from the snapshot's own flush (then the same sstable is
    in the snapshot) or from a flush racing it; only a name match proves the former. A file
    that appeared afterwards and is not in the snapshot holds data the snapshot may lack, so
    it stays for the next incremental backup.
    """
    in_snapshot: set[tuple[str, str]] = set()
    for file in snapshot:
        tag = _snapshot_tag_of(file.relative)
        split = _table_and_name(file.relative, (SNAPSHOTS_DIR, tag)) if tag else None
        if split is not None:
            in_snapshot.add(split)
    covered: dict[str, DataFile] = {}
    for file in before:
        if _table_and_name(file.relative, (BACKUPS_DIR,)) is not None:
            covered[file.relative] = file
    for file in after_snapshot:
        split = _table_and_name(file.relative, (BACKUPS_DIR,))
        if split is not None and split in in_snapshot:
            covered.setdefault(file.relative, file)
    return sorted(covered.values(), key=lambda f: f.relative)


def delete_files(files: Iterable[DataFile]) -> int:
    """Remove the files; one already gone is fine. Returns how many were removed."""
    removed = 0
    for file in files:
        try:
            file.path.unlink()
        except FileNotFoundError:
            continue
        removed += 1
    _log.debug("deleted files count=%d", removed)
    return removed
