"""The consistent cut: pause, snapshot every node, unpause; all or nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from cassy_scheduler.server.applications import AppInstance
from cassy_scheduler.server.clustersnapshot import take_consistent_cut
from cassy_scheduler.server.pause import PauseFailedError, Pauser, PauseWindow
from tests.unit.test_pause import FakeAdmin

NODES = ("127.0.0.131", "127.0.0.132", "127.0.0.133")
APPS = (AppInstance("127.0.0.201", 20052), AppInstance("127.0.0.202", 20052))


class FakeNodes:
    """Snapshots by node, checking the applications are paused while each is taken."""

    def __init__(self, admin: FakeAdmin, *, failing: str | None = None) -> None:
        self.admin = admin
        self.failing = failing
        self.taken: set[str] = set()
        self.paused_during: dict[str, bool] = {}
        self.cleared: list[str] = []
        self._lock = threading.Lock()
        self.during_snapshot: list[object] = []

    def snapshot(self, node: str) -> None:
        with self._lock:
            self.paused_during[node] = self.admin.paused == set(APPS)
        for action in self.during_snapshot:
            action()  # type: ignore[operator]
        if node == self.failing:
            raise RuntimeError(f"nodetool snapshot on {node} exited with 2\nstack")
        with self._lock:
            self.taken.add(node)

    def clear(self, node: str) -> None:
        with self._lock:
            self.cleared.append(node)
            self.taken.discard(node)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def make_pauser(admin: FakeAdmin) -> Pauser:
    return Pauser(admin, pause_timeout_s=5, unpause_timeout_s=1, retry_delay_s=0)


def test_every_node_is_snapshotted_while_every_application_is_paused(
    pool: ThreadPoolExecutor,
) -> None:
    admin = FakeAdmin()
    nodes = FakeNodes(admin)
    windows: list[PauseWindow] = []
    result = take_consistent_cut(
        NODES, APPS, make_pauser(admin), nodes, pool, opened=windows.append
    )
    assert result.succeeded
    assert nodes.taken == set(NODES)
    assert nodes.paused_during == dict.fromkeys(NODES, True)
    assert admin.paused == set()
    assert nodes.cleared == []
    assert len(windows) == 1
    assert [i.instance for i in result.report.instances] == [str(a) for a in APPS]


def test_pause_failure_snapshots_nothing(pool: ThreadPoolExecutor) -> None:
    admin = FakeAdmin(refuse=[APPS[1]])
    nodes = FakeNodes(admin)
    with pytest.raises(PauseFailedError, match=str(APPS[1])):
        take_consistent_cut(NODES, APPS, make_pauser(admin), nodes, pool)
    assert nodes.paused_during == {}
    assert admin.paused == set()


def test_one_failed_node_clears_every_snapshot(pool: ThreadPoolExecutor) -> None:
    admin = FakeAdmin()
    nodes = FakeNodes(admin, failing=NODES[1])
    result = take_consistent_cut(NODES, APPS, make_pauser(admin), nodes, pool)
    assert not result.succeeded
    assert nodes.taken == set()
    assert sorted(nodes.cleared) == sorted(NODES)
    assert admin.paused == set()
    assert result.failures[NODES[1]] == f"nodetool snapshot on {NODES[1]} exited with 2"
    assert f"the snapshot on {NODES[1]} failed" in result.failures[NODES[0]]


def test_window_ended_by_shutdown_clears_every_snapshot(pool: ThreadPoolExecutor) -> None:
    admin = FakeAdmin()
    nodes = FakeNodes(admin)
    windows: list[PauseWindow] = []
    nodes.during_snapshot.append(lambda: windows[0].interrupt("server stopping"))
    result = take_consistent_cut(
        NODES, APPS, make_pauser(admin), nodes, pool, opened=windows.append
    )
    assert not result.succeeded
    assert all("server stopping" in reason for reason in result.failures.values())
    assert nodes.taken == set()


def test_instance_left_paused_fails_the_cut(pool: ThreadPoolExecutor) -> None:
    admin = FakeAdmin(unpause_failures={APPS[0]: 99})
    nodes = FakeNodes(admin)
    result = take_consistent_cut(NODES, APPS, make_pauser(admin), nodes, pool)
    assert not result.succeeded
    assert all(f"{APPS[0]} could not be unpaused" in r for r in result.failures.values())
    assert nodes.taken == set()
