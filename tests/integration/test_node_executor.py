"""LocalExecutor runs nodetool and turns every way it can fail into a NodetoolError."""

from __future__ import annotations

import sys

import pytest

from cassy_scheduler.node.executor import LocalExecutor, NodeEndpoint, NodetoolError
from tests.integration.test_node_nodetool import endpoint, local_executor
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


def test_an_empty_command_is_refused() -> None:
    with pytest.raises(ValueError, match="nodetool"):
        LocalExecutor([])
