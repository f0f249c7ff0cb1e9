"""Start-up failures give a clear error and leave no process behind."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tools.localcluster import LocalCluster, LocalClusterError


def _fake_java(tmp_path: Path, body: str) -> str:
    script = tmp_path / "java"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_port_in_use_is_named_and_nothing_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.31", 9042))
        holder.listen()
        cluster = LocalCluster(tmp_path / "c", 1, first_octet=31, java="/bin/false")
        with pytest.raises(LocalClusterError, match=r"127\.0\.0\.31:9042"):
            cluster.start_all(timeout=30)
    assert cluster.running() == {"node1": None}


def test_a_node_that_exits_reports_its_log(tmp_path: Path) -> None:
    java = _fake_java(tmp_path, 'echo "Exception encountered during startup: boom"; exit 3')
    cluster = LocalCluster(tmp_path / "c", 1, first_octet=32, java=java)
    with pytest.raises(LocalClusterError, match="exited while starting") as err:
        cluster.start_all(timeout=30)
    assert "boom" in str(err.value)


def test_a_node_that_never_gets_ready_times_out_and_is_stopped(tmp_path: Path) -> None:
    java = _fake_java(tmp_path, "exec sleep 600")
    cluster = LocalCluster(tmp_path / "c", 2, first_octet=33, java=java)
    started: list[int] = []
    original = cluster._launch

    def record(spec):  # type: ignore[no-untyped-def]
        original(spec)
        started.append(cluster.pid(spec.number) or 0)

    cluster._launch = record  # type: ignore[method-assign]
    with pytest.raises(LocalClusterError, match="did not serve CQL in time"):
        cluster.start_all(timeout=3)
    assert len(started) == 2
    assert not any(_alive(pid) for pid in started)


def test_more_than_three_nodes_or_a_big_heap_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LocalClusterError, match="1 to 3 nodes"):
        LocalCluster(tmp_path, 4)
    with pytest.raises(LocalClusterError, match="768 MB"):
        LocalCluster(tmp_path, 1, heap_mb=2048)
