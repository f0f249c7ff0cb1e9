"""Putting a node's backup back on disk: which stored files go where, staged and checked first.

A restore must never leave a half-written data directory that Cassandra would start on. So
every file is first downloaded into a staging directory beside the data directory (same
filesystem, so the final move is a rename), checked against its manifest entry (size and
SHA-256), and only when all of them are good are the keyspace directories renamed into the
empty data directory.

Where files go: a snapshot file `<ks>/<table>-<id>/snapshots/<snapshot id>/X` and an
incremental file `<ks>/<table>-<id>/backups/X` both become `<ks>/<table>-<id>/X`; a legacy
secondary index keeps its `.<index>/` subdirectory. The snapshot's own `manifest.json` and
`schema.cql` are not data and stay out.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from cassy_scheduler.durable import fsync_directory, sync_files
from cassy_scheduler.node.datadir import BACKUPS_DIR, SNAPSHOTS_DIR
from cassy_scheduler.node.executor import NodeError
from cassy_scheduler.node.manifest import Manifest
from cassy_scheduler.node.progress import Progress, Tally
from cassy_scheduler.protocol.types import BackupType
from cassy_scheduler.storage import ObjectNotFoundError, Storage, StorageError

_log = logging.getLogger(__name__)

STAGING_PREFIX = ".cassy-restore-"
DEFAULT_WORKERS = 4
_SNAPSHOT_METADATA = frozenset({"manifest.json", "schema.cql"})
_TABLE_DIR = re.compile(r"^\w+-[0-9a-f]{32}$", re.ASCII)
_KEYSPACE = re.compile(r"^\w+$", re.ASCII)
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", re.ASCII)


class RestoreError(NodeError):
    """A node cannot be restored, or its restore failed; the message says why and what to do."""


class RestorePlanError(RestoreError):
    """The manifests do not describe a restorable backup (none, or files that conflict)."""


class DirectoriesNotEmptyError(RestoreError):
    """The node's data, commit log or hints directory holds files, so nothing was written."""


class StoredFileError(RestoreError):
    """A stored file is missing or differs from its manifest entry; `path` names it."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(message)


class RestoreCancelledError(RestoreError):
    """The restore was stopped (the server is shutting down) before files were moved."""


@dataclass(frozen=True)
class PlannedFile:
    """One stored object and where it goes: `target` is relative to the data dir."""

    key: str
    source: str
    target: str
    size: int
    sha256: str


@dataclass(frozen=True)
class RestorePlan:
    """The files of one node's restore, and the uploads (manifests) they come from."""

    snapshot_id: str
    files: tuple[PlannedFile, ...]
    manifests: tuple[str, ...]

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class NodeDirectories:
    """Where one node keeps its files; a restore needs data, commit log and hints empty.

    `staging_parent` holds the temporary staging directory and must be on the data
    directory's filesystem.
    """

    data_dir: Path
    commitlog_dir: Path
    hints_dir: Path
    saved_caches_dir: Path
    staging_parent: Path

    @classmethod
    def beside(
        cls,
        data_dir: Path,
        *,
        commitlog_dir: Path | None = None,
        hints_dir: Path | None = None,
        saved_caches_dir: Path | None = None,
        staging_parent: Path | None = None,
    ) -> NodeDirectories:
        """Cassandra's default layout: commitlog, hints and saved_caches next to data."""
        base = data_dir.parent
        return cls(
            data_dir=data_dir,
            commitlog_dir=commitlog_dir or base / "commitlog",
            hints_dir=hints_dir or base / "hints",
            saved_caches_dir=saved_caches_dir or base / "saved_caches",
            staging_parent=staging_parent or base,
        )

    def must_be_empty(self) -> dict[str, Path]:
        return {
            "data": self.data_dir,
            "commit log": self.commitlog_dir,
            "hints": self.hints_dir,
        }


@dataclass(frozen=True)
class PlacementResult:
    """What a restore put in place."""

    files: int
    bytes: int
    keyspaces: tuple[str, ...]


# ------------------------------------------------------------------------------ the plan


def target_path(stored: str, snapshot_id: str) -> str | None:
    """Where the stored file `stored` goes below the data dir; None for snapshot metadata.

    Raises RestorePlanError for a path that is neither a snapshot nor an incremental file.
    """
    parts = stored.split("/")
    if len(parts) < 4 or not _KEYSPACE.match(parts[0]) or not _TABLE_DIR.match(parts[1]):
        raise RestorePlanError(f"stored file {stored!r} is not below a table directory")
    if parts[2] == SNAPSHOTS_DIR and len(parts) >= 5 and parts[3] == snapshot_id:
        rest = parts[4:]
        if len(rest) == 1 and rest[0] in _SNAPSHOT_METADATA:
            return None
    elif parts[2] == BACKUPS_DIR:
        rest = parts[3:]
    else:
        raise RestorePlanError(
            f"stored file {stored!r} is neither in snapshot {snapshot_id} nor in backups/"
        )
    index_dir_ok = len(rest) == 2 and rest[0].startswith(".") and _FILE_NAME.match(rest[0][1:])
    if not (len(rest) == 1 or index_dir_ok) or not _FILE_NAME.match(rest[-1]):
        raise RestorePlanError(f"stored file {stored!r} has an unexpected name below its table")
    return "/".join([*parts[:2], *rest])


def plan_restore(
    manifests: Sequence[Manifest], snapshot_id: str, *, snapshot_only: bool
) -> RestorePlan:
    """The files that rebuild a node: its snapshot, then (unless `snapshot_only`) every later
    incremental upload of the same snapshot id.

    Incremental manifests list every backups/ file present when they ran, so they are joined
    by path, the newest entry winning (it describes the object now stored under the key).
    A snapshot file and an incremental file with the same target name are one sstable linked
    twice when their checksums agree, and a conflict otherwise.
    """
    ours = [m for m in manifests if m.identity.snapshot_id == snapshot_id]
    snapshots = [m for m in ours if m.identity.backup_type is not BackupType.NODE_INCREMENTAL]
    if not snapshots:
        raise RestorePlanError(
            f"no completed snapshot upload of {snapshot_id} in storage: take a new snapshot, "
            "or check the storage URI the server uses"
        )
    snapshot = max(snapshots, key=lambda m: m.identity.created_at_ms)
    used = [snapshot]
    if not snapshot_only:
        used += sorted(
            (
                m
                for m in ours
                if m.identity.backup_type is BackupType.NODE_INCREMENTAL
                and m.identity.created_at_ms >= snapshot.identity.created_at_ms
            ),
            key=lambda m: m.identity.created_at_ms,
        )
    by_source: dict[str, PlannedFile] = {}
    for manifest in used:
        for entry in manifest.files:
            target = target_path(entry.path, snapshot_id)
            if target is not None:
                by_source[entry.path] = PlannedFile(
                    entry.key, entry.path, target, entry.size, entry.sha256
                )
    by_target: dict[str, PlannedFile] = {}
    for planned in by_source.values():
        other = by_target.get(planned.target)
        if other is None:
            by_target[planned.target] = planned
        elif other.sha256 != planned.sha256 or other.size != planned.size:
            raise RestorePlanError(
                f"stored files {other.source!r} and {planned.source!r} would both become "
                f"{planned.target!r} but differ: restore with snapshot_only, or take a new "
                "snapshot"
            )
    files = tuple(sorted(by_target.values(), key=lambda f: f.target))
    return RestorePlan(snapshot_id, files, tuple(_manifest_name(m) for m in used))


def _manifest_name(manifest: Manifest) -> str:
    identity = manifest.identity
    return f"{identity.created_at_ms}-{identity.backup_type.name.lower()}"


# ------------------------------------------------------------------------ the node's state


def occupied_directories(dirs: NodeDirectories) -> list[str]:
    """Why the node's directories cannot take a restore; empty when they can.

    A directory that does not exist counts as empty: the restore creates it.
    """
    problems = []
    for what, path in dirs.must_be_empty().items():
        try:
            entries = sorted(entry.name for entry in os.scandir(path))
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            problems.append(f"{what} directory {path} is not a directory")
            continue
        except OSError as exc:
            problems.append(f"{what} directory {path} cannot be read ({exc.strerror})")
            continue
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            problems.append(f"{what} directory {path} is not empty ({shown})")
    return problems


def staging_directory(dirs: NodeDirectories, tag: str) -> Path:
    """The staging directory of one restore, named so a leftover is recognisable."""
    return dirs.staging_parent / f"{STAGING_PREFIX}{tag}"


def remove_leftover_staging(dirs: NodeDirectories) -> list[Path]:
    """Remove staging directories a stopped or crashed restore left behind."""
    removed = []
    with suppress(FileNotFoundError):
        for entry in os.scandir(dirs.staging_parent):
            if entry.name.startswith(STAGING_PREFIX) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(Path(entry.path))
    return removed


# ----------------------------------------------------------------------------- the restore


def restore_files(
    storage: Storage,
    plan: RestorePlan,
    dirs: NodeDirectories,
    tag: str,
    *,
    workers: int = DEFAULT_WORKERS,
    cancelled: Callable[[], bool] = lambda: False,
    progress: Progress | None = None,
) -> PlacementResult:
    """Download, check and place `plan` on the node; on any failure the data dir is unchanged.

    The staging directory is always removed. `cancelled` is polled between files.
    """
    _refuse_occupied(dirs)
    staging = staging_directory(dirs, tag)
    _prepare_staging(dirs, staging, plan.total_size)
    try:
        stage_files(storage, plan, staging, workers=workers, cancelled=cancelled, progress=progress)
        if cancelled():
            raise RestoreCancelledError("the restore was stopped before its files were moved")
        _refuse_occupied(dirs)
        keyspaces = move_into_place(staging, dirs.data_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PlacementResult(len(plan.files), plan.total_size, keyspaces)


def _refuse_occupied(dirs: NodeDirectories) -> None:
    problems = occupied_directories(dirs)
    if problems:
        raise DirectoriesNotEmptyError(
            "; ".join(problems) + ": stop Cassandra and empty them before restoring"
        )


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _prepare_staging(dirs: NodeDirectories, staging: Path, needed: int) -> None:
    data_device = os.stat(_existing_ancestor(dirs.data_dir)).st_dev
    try:
        dirs.staging_parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RestoreError(
            f"cannot create the staging parent {dirs.staging_parent} ({exc.strerror}): "
            "make it writable or configure another restore_staging_dir"
        ) from exc
    if os.stat(dirs.staging_parent).st_dev != data_device:
        raise RestoreError(
            f"staging directory {dirs.staging_parent} is on another filesystem than the data "
            f"directory {dirs.data_dir}: configure a restore_staging_dir on the data "
            "directory's filesystem"
        )
    free = shutil.disk_usage(dirs.staging_parent).free
    if free < needed:
        raise RestoreError(
            f"the restore needs {needed} bytes but {dirs.staging_parent} has {free} free: "
            "free space on that filesystem"
        )
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()


def stage_files(
    storage: Storage,
    plan: RestorePlan,
    staging: Path,
    *,
    workers: int = DEFAULT_WORKERS,
    cancelled: Callable[[], bool] = lambda: False,
    progress: Progress | None = None,
) -> None:
    """Download every planned file to `staging/<target>` and check it; the first bad one
    stops the rest and raises StoredFileError naming it."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    for directory in sorted({str(Path(f.target).parent) for f in plan.files}):
        (staging / directory).mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    tally = Tally(progress)

    def fetch(planned: PlannedFile) -> None:
        if stop.is_set() or cancelled():
            return
        _fetch_one(storage, planned, staging / planned.target)
        tally.add(planned.size)

    if workers == 1:
        for planned in plan.files:
            fetch(planned)
    else:
        _fetch_all(plan, fetch, stop, workers)
    if not stop.is_set() and not cancelled():  # every file checked: now to disk, all at once
        try:
            sync_files([staging / planned.target for planned in plan.files])
        except OSError as exc:
            raise RestoreError(
                f"flushing the staged files to disk failed ({exc.strerror or exc}: "
                f"{exc.filename}): nothing was moved into place; check the disk and restore again"
            ) from exc


def _fetch_all(
    plan: RestorePlan, fetch: Callable[[PlannedFile], None], stop: threading.Event, workers: int
) -> None:
    with ThreadPoolExecutor(workers, thread_name_prefix="restore") as pool:
        largest_first = sorted(plan.files, key=lambda f: f.size, reverse=True)  # even finish
        futures: list[Future[None]] = [pool.submit(fetch, planned) for planned in largest_first]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if failed is not None:
            stop.set()
            for future in futures:
                future.cancel()
            failed.result()


def _fetch_one(storage: Storage, planned: PlannedFile, local: Path) -> None:
    try:
        got = storage.get_file(planned.key, local, sync=False)
    except ObjectNotFoundError as exc:
        raise StoredFileError(
            planned.source,
            f"stored file {planned.source} is missing from storage (key {planned.key}): "
            "the backup is damaged; restore another snapshot",
        ) from exc
    except StorageError as exc:
        raise StoredFileError(
            planned.source, f"stored file {planned.source} could not be read: {exc}"
        ) from exc
    if got.size != planned.size or got.sha256 != planned.sha256:
        found = f"{got.size} bytes" if got.size != planned.size else f"SHA-256 {got.sha256}"
        expected = f"{planned.size} bytes" if got.size != planned.size else planned.sha256
        raise StoredFileError(
            planned.source,
            f"stored file {planned.source} is corrupt: it has {found}, its manifest says "
            f"{expected}; the backup is damaged: restore another snapshot",
        )


def move_into_place(staging: Path, data_dir: Path) -> tuple[str, ...]:
    """Rename each staged keyspace directory into the (empty) data directory.

    If a rename fails, those already moved are moved back, so the data dir stays empty.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    keyspaces = sorted(entry.name for entry in os.scandir(staging) if entry.is_dir())
    moved: list[str] = []
    try:
        for keyspace in keyspaces:
            os.rename(staging / keyspace, data_dir / keyspace)
            moved.append(keyspace)
    except OSError as exc:
        for keyspace in moved:
            with suppress(OSError):
                os.rename(data_dir / keyspace, staging / keyspace)
        raise RestoreError(
            f"moving keyspace {keyspace} into {data_dir} failed ({exc.strerror}): "
            "the data directory was left empty; check its permissions and restore again"
        ) from exc
    fsync_directory(data_dir)
    return tuple(keyspaces)
