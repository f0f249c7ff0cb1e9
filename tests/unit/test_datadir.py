"""The data-dir scan on synthetic trees shaped like Cassandra 5.0's, and the deletion rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from cassy_scheduler.node.datadir import (
    DataFile,
    backup_files,
    covered_backup_files,
    delete_files,
    is_plain_id,
    remove_snapshot,
    snapshot_files,
    sstable_key,
    table_dirs,
    validate_tag,
)

KV_ID = "69d007e0e95111f1aca955607f0397c4"
LOG_ID = "0123456789abcdef0123456789abcdef"
KV = f"ks/kv-{KV_ID}"
LOG = f"ks/log_2-{LOG_ID}"


def _tree(root: Path, files: dict[str, str]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return _tree(
        tmp_path / "data",
        {
            f"{KV}/nb-1-big-Data.db": "live",
            f"{KV}/nb-1-big-SAI+aa+kv_w+Meta.db": "sai",
            f"{KV}/.kv_v/nb-1-big-Data.db": "index",
            f"{KV}/backups/nb-1-big-Data.db": "12345",
            f"{KV}/backups/nb-1-big-TOC.txt": "toc",
            f"{KV}/backups/.kv_v/nb-1-big-Data.db": "ix",
            f"{KV}/snapshots/s1/nb-1-big-Data.db": "snap",
            f"{KV}/snapshots/s1/.kv_v/nb-1-big-Data.db": "snapix",
            f"{KV}/snapshots/s1/manifest.json": "{}",
            f"{KV}/snapshots/s1/schema.cql": "CREATE TABLE",
            f"{KV}/snapshots/s2/nb-2-big-Data.db": "other snapshot",
            f"{LOG}/backups/nb-7-big-Data.db": "log",
            f"{LOG}/snapshots/s1/nb-7-big-Data.db": "log snap",
            # Not table dirs: no id, short id, upper-case hex, a plain file.
            "ks/kv/backups/nb-1-big-Data.db": "x",
            "ks/kv-1234/backups/nb-1-big-Data.db": "x",
            f"ks/kv-{KV_ID.upper()}/backups/nb-1-big-Data.db": "x",
            "ks/notes.txt": "x",
            # Another keyspace, not asked for.
            f"other/kv-{KV_ID}/backups/nb-1-big-Data.db": "x",
        },
    )


def _relatives(files: list[DataFile]) -> list[str]:
    return [f.relative for f in files]


def test_table_dirs_keeps_only_table_id_dirs(data_dir: Path) -> None:
    found = table_dirs(data_dir, ["ks", "missing"])
    assert [(t.keyspace, t.table, t.table_id) for t in found] == [
        ("ks", "kv", KV_ID),
        ("ks", "log_2", LOG_ID),
    ]
    assert found[0].path == data_dir / KV


def test_snapshot_files_lists_every_file_of_the_tag_recursively(data_dir: Path) -> None:
    files = snapshot_files(data_dir, "s1", ["ks"])
    assert _relatives(files) == [
        f"{KV}/snapshots/s1/.kv_v/nb-1-big-Data.db",
        f"{KV}/snapshots/s1/manifest.json",
        f"{KV}/snapshots/s1/nb-1-big-Data.db",
        f"{KV}/snapshots/s1/schema.cql",
        f"{LOG}/snapshots/s1/nb-7-big-Data.db",
    ]
    first = files[2]
    assert first.path == data_dir / first.relative
    assert first.size == len("snap")


def test_snapshot_files_of_an_unknown_tag_is_empty(data_dir: Path) -> None:
    assert snapshot_files(data_dir, "nope", ["ks"]) == []


def test_snapshot_files_refuses_a_tag_that_is_a_path(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="plain id"):
        snapshot_files(data_dir, "../s1", ["ks"])


def test_backup_files_include_index_subdirs(data_dir: Path) -> None:
    assert _relatives(backup_files(data_dir, ["ks"])) == [
        f"{KV}/backups/.kv_v/nb-1-big-Data.db",
        f"{KV}/backups/nb-1-big-Data.db",
        f"{KV}/backups/nb-1-big-TOC.txt",
        f"{LOG}/backups/nb-7-big-Data.db",
    ]


def test_symlinks_are_not_followed(data_dir: Path, tmp_path: Path) -> None:
    outside = _tree(tmp_path / "outside", {"secret.db": "x"})
    (data_dir / KV / "backups" / "link.db").symlink_to(outside / "secret.db")
    (data_dir / KV / "backups" / "linkdir").symlink_to(outside, target_is_directory=True)
    assert all("link" not in r for r in _relatives(backup_files(data_dir, ["ks"])))


def _df(relative: str) -> DataFile:
    return DataFile(Path("/data") / relative, relative, 1)


B = f"{KV}/backups"
S = f"{KV}/snapshots/new"


@pytest.mark.parametrize(
    ("before", "after", "snapshot", "covered"),
    [
        pytest.param([], [], [], [], id="nothing"),
        pytest.param(
            [f"{B}/nb-1-big-Data.db"],
            [f"{B}/nb-1-big-Data.db"],
            [],
            [f"{B}/nb-1-big-Data.db"],
            id="existed-before-compacted-away",
        ),
        pytest.param(
            [],
            [f"{B}/nb-2-big-Data.db"],
            [f"{S}/nb-2-big-Data.db"],
            [f"{B}/nb-2-big-Data.db"],
            id="flushed-by-the-snapshot",
        ),
        pytest.param(
            [],
            [f"{B}/nb-3-big-Data.db"],
            [f"{S}/nb-2-big-Data.db"],
            [],
            id="appeared-after-not-in-snapshot",
        ),
        pytest.param(
            [],
            [f"{B}/.kv_v/nb-2-big-Data.db"],
            [f"{S}/.kv_v/nb-2-big-Data.db"],
            [f"{B}/.kv_v/nb-2-big-Data.db"],
            id="index-file-in-snapshot",
        ),
        pytest.param(
            [],
            [f"{B}/.kv_v/nb-2-big-Data.db"],
            [f"{S}/nb-2-big-Data.db"],
            [],
            id="same-name-but-table-not-index",
        ),
        pytest.param(
            [],
            [f"{LOG}/backups/nb-2-big-Data.db"],
            [f"{S}/nb-2-big-Data.db"],
            [],
            id="same-name-other-table",
        ),
        pytest.param(
            [f"{B}/nb-1-big-Data.db"],
            [],
            [],
            [f"{B}/nb-1-big-Data.db"],
            id="existed-before-already-gone",
        ),
        pytest.param(
            [f"{S}/nb-1-big-Data.db", f"{KV}/nb-1-big-Data.db"],
            [],
            [],
            [],
            id="never-a-file-outside-backups",
        ),
        pytest.param(
            [f"{B}/nb-1-big-Data.db"],
            [f"{B}/nb-1-big-Data.db", f"{B}/nb-2-big-Data.db", f"{B}/nb-3-big-Data.db"],
            [f"{S}/nb-2-big-Data.db", f"{S}/manifest.json"],
            [f"{B}/nb-1-big-Data.db", f"{B}/nb-2-big-Data.db"],
            id="mixed",
        ),
    ],
)
def test_covered_backup_files(
    before: list[str], after: list[str], snapshot: list[str], covered: list[str]
) -> None:
    result = covered_backup_files(
        [_df(r) for r in before], [_df(r) for r in after], [_df(r) for r in snapshot]
    )
    assert _relatives(result) == covered


def test_delete_files_tolerates_missing_files(data_dir: Path) -> None:
    files = backup_files(data_dir, ["ks"])
    files[0].path.unlink()
    assert delete_files(files) == len(files) - 1
    assert backup_files(data_dir, ["ks"]) == []
    assert (data_dir / KV / "nb-1-big-Data.db").exists()


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("8f14e45f-ceea-467f-a0e6-71bd6bd8a7b6", True),
        ("snap-2024.01_a", True),
        ("a", True),
        ("A" * 255, True),
        ("A" * 256, False),
        ("", False),
        (".", False),
        ("..", False),
        (".hidden", False),
        ("-t", False),
        ("a/b", False),
        ("/", False),
        ("a\\b", False),
        ("a b", False),
        (" a", False),
        ("a\n", False),
        ("a\tb", False),
        ("a:b", False),
        ("snäp", False),
        ("a\x00b", False),
    ],
)
def test_is_plain_id(text: str, plain: bool) -> None:
    assert is_plain_id(text) is plain


def test_validate_tag_says_what_is_allowed() -> None:
    assert validate_tag("s1") == "s1"
    with pytest.raises(ValueError, match="letters, digits"):
        validate_tag("..")


def test_remove_snapshot_takes_that_tag_from_every_table_and_nothing_else(
    data_dir: Path,
) -> None:
    (data_dir / f"other/kv-{KV_ID}/snapshots/s1").mkdir(parents=True)  # unregistered too
    assert remove_snapshot(data_dir, "s1") == 3
    assert snapshot_files(data_dir, "s1", ["ks", "other"]) == []
    assert _relatives(snapshot_files(data_dir, "s2", ["ks"])) == [
        f"{KV}/snapshots/s2/nb-2-big-Data.db"
    ]
    assert (data_dir / KV / "nb-1-big-Data.db").read_text() == "live"  # the live SSTable
    assert remove_snapshot(data_dir, "s1") == 0
    with pytest.raises(ValueError):
        remove_snapshot(data_dir, "../..")


@pytest.mark.parametrize(
    ("relative", "key"),
    [
        (f"{KV}/snapshots/s1/nb-1-big-Data.db", f"{KV}/nb-1-big-Data.db"),
        (f"{KV}/backups/nb-1-big-Data.db", f"{KV}/nb-1-big-Data.db"),
        (f"{KV}/snapshots/s2/.kv_v/nb-1-big-Data.db", f"{KV}/.kv_v/nb-1-big-Data.db"),
        (f"{KV}/nb-1-big-Data.db", None),
    ],
)
def test_the_same_sstable_has_one_key_in_a_snapshot_and_an_incremental(
    relative: str, key: str | None
) -> None:
    assert sstable_key(relative) == key
