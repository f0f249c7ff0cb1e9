"""Run history, locks and the server's metadata are the program's user's alone, whatever the
umask; what an operator made beforehand keeps its modes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cassy_scheduler.history import RunHistory
from cassy_scheduler.privatefiles import private_directory, private_file
from cassy_scheduler.scheduling.locks import RunLocks
from cassy_scheduler.server.metadata import SqliteMetadataStore
from tests.unit.fakes import FakeClock


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def lax_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_history_and_its_state_directory_are_private(tmp_path: Path) -> None:
    state = tmp_path / "var" / "state"
    with RunHistory.open(state / "history.sqlite") as history:
        history.start_run("nightly", "snapshot", FakeClock().now())
    assert mode(state) == mode(state.parent) == 0o700
    assert {mode(p) for p in state.glob("history.sqlite*")} == {0o600}
    with RunLocks(state / "locks", FakeClock()).job("nightly"):
        (lock,) = (state / "locks").iterdir()
        assert mode(lock) == 0o600 and mode(state / "locks") == 0o700


def test_the_servers_metadata_is_private(tmp_path: Path) -> None:
    path = tmp_path / "server" / "metadata.db"
    private_file(path)
    SqliteMetadataStore(path).close()
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def test_existing_files_and_directories_keep_their_modes(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    existing = shared / "metadata.db"
    existing.write_bytes(b"")
    existing.chmod(0o640)
    private_directory(shared)
    private_file(existing)
    assert mode(shared) == 0o755 and mode(existing) == 0o640


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
def test_another_user_is_told_whose_history_it_is() -> None:
    """The state directory is 0700: `history` run as another user says so, no traceback."""
    base = Path(tempfile.mkdtemp(prefix="cassy-other-user-"))  # pytest's tmp is root's alone
    try:
        _history_as_nobody(base)
    finally:
        shutil.rmtree(base)


def _history_as_nobody(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with RunHistory.open(state / "history.sqlite") as history:
        history.start_run("nightly", "snapshot", FakeClock().now())
    config = tmp_path / "scheduler.toml"
    config.write_text(
        f'jobs = {{}}\n[server]\naddress = "127.0.0.1:1"\n[scheduler]\nstate_dir = "{state}"\n'
    )
    tmp_path.chmod(0o755)
    config.chmod(0o644)
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "cassy_scheduler", "history", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done
    assert "run this as the scheduler's user" in done.stderr
    assert "Traceback" not in done.stderr
