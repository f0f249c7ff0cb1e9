"""LocalExecutor runs nodetool and turns every way it can fail into a NodetoolError."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from cassy_scheduler.node.executor import LocalExecutor, NodeEndpoint, NodetoolError
from tests.integration.test_node_nodetool import endpoint, local_executor
from tests.serverproc import pid_running
from tools.localcluster import LocalCluster

NOWHERE = NodeEndpoint("127.0.0.99", "127.0.0.1", 9)


@pytest.mark.cassandra
def test_runs_nodetool_against_the_endpoint(cluster1: LocalCluster) -> None:
    out = local_executor().run(endpoint(cluster1, 1), ["version"], timeout_s=120)
    assert out.startswith("ReleaseVersion: 5.0")


@pytest.mark.cassandra
def test_a_failing_command_names_node_command_and_cause(cluster1: LocalCluster) -> None:
    node = endpoint(cluster1, 1)
    with pytest.raises(NodetoolError) as caught:
        local_executor().run(node, ["snapshot", "-t", "x", "--", "no_such_keyspace"], 120)
    error = caught.value
    assert error.address == node.address
    assert error.command == ("snapshot", "-t", "x", "--", "no_such_keyspace")
    assert error.exit_code not in (None, 0)
    assert "no_such_keyspace" in error.output
    assert "\tat " not in error.output
    assert node.address in str(error)


def test_unreachable_jmx_is_an_error() -> None:
    with pytest.raises(NodetoolError) as caught:
        local_executor().run(NOWHERE, ["version"], timeout_s=120)
    assert "Failed to connect" in caught.value.output


def test_a_missing_nodetool_says_what_to_configure() -> None:
    executor = LocalExecutor(["/nonexistent/bin/nodetool"])
    with pytest.raises(NodetoolError, match="full path") as caught:
        executor.run(NOWHERE, ["version"], timeout_s=10)
    assert caught.value.exit_code is None


def test_a_hanging_nodetool_is_stopped_at_the_timeout() -> None:
    executor = LocalExecutor([sys.executable, "-c", "import time; time.sleep(60)"])
    with pytest.raises(NodetoolError, match="timed out") as caught:
        executor.run(NOWHERE, ["status"], timeout_s=0.5)
    assert caught.value.exit_code is None


def test_stop_running_kills_a_hanging_call_with_its_children_and_refuses_new_ones(
    tmp_path: Path,
) -> None:
    child = tmp_path / "child.pid"
    executor = LocalExecutor(["sh", "-c", f"sleep 600 & echo $! > {child}; wait", "nodetool"])
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            executor.run(NOWHERE, ["snapshot"], timeout_s=600)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    while not child.exists() or not child.read_text().strip():
        time.sleep(0.05)
    assert executor.stop_running() == 1
    caller.join(60)
    assert not caller.is_alive()
    (error,) = outcome
    assert isinstance(error, NodetoolError) and "server is stopping" in str(error)
    assert not pid_running(int(child.read_text()))
    with pytest.raises(NodetoolError, match="not started: the server is stopping"):
        executor.run(NOWHERE, ["version"], timeout_s=10)


def test_an_empty_command_is_refused() -> None:
    with pytest.raises(ValueError, match="nodetool"):
        LocalExecutor([])
