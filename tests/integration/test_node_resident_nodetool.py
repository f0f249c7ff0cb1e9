"""The resident nodetool JVM: Cassandra's own commands in one long-lived JVM, against a real
node, and every way a call can fail turned into a NodetoolError without harming the others."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from cassy_scheduler.node.executor import NodeEndpoint, NodetoolError
from cassy_scheduler.node.nodetool import Nodetool
from cassy_scheduler.node.nodetooljvm import NodetoolJvm, NodetoolJvmError
from cassy_scheduler.node.residentnodetool import ResidentExecutor
from tests.integration.test_node_nodetool import endpoint
from tests.serverproc import pid_running
from tools.localcluster import LocalCluster
from tools.localcluster.nodeconfig import tools_logback

NOWHERE = NodeEndpoint("127.0.0.99", "127.0.0.1", 9)

pytestmark = pytest.mark.cassandra


def jvm_of(cluster: LocalCluster) -> NodetoolJvm:
    return NodetoolJvm(
        classpath=f"{cluster.jars.lib_dir}/*",
        java=cluster.java,
        options=(f"-Dlogback.configurationFile={tools_logback(cluster.jars)}",),
    )


@pytest.fixture
def resident(cluster1: LocalCluster) -> Iterator[ResidentExecutor]:
    executor = ResidentExecutor(jvm_of(cluster1))
    executor.start()
    try:
        yield executor
    finally:
        pid = executor.pid  # the JVM of the end: a test may have replaced the first
        executor.stop_running()
        _gone(pid)


def _gone(pid: int | None, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while pid is not None and pid_running(pid):
        assert time.monotonic() < deadline, f"nodetool JVM {pid} still running"
        time.sleep(0.05)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word: a JMX that hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_every_command_the_server_uses_runs_in_the_one_jvm(
    resident: ResidentExecutor, cluster1: LocalCluster
) -> None:
    pid = resident.pid
    nodetool = Nodetool(resident, endpoint(cluster1, 1), timeout_s=120)
    assert [n.code for n in nodetool.status()] == ["UN"]
    nodetool.flush(["system_schema"])
    nodetool.flush()
    nodetool.snapshot("resident-jvm", ["system_schema"])
    nodetool.clear_snapshot("resident-jvm")
    assert nodetool.data_file_directories() == [cluster1.specs[0].data_dir]
    assert resident.pid == pid


def test_a_failing_command_names_node_command_and_cause(
    resident: ResidentExecutor, cluster1: LocalCluster
) -> None:
    node = endpoint(cluster1, 1)
    with pytest.raises(NodetoolError) as caught:
        resident.run(node, ["snapshot", "-t", "x", "--", "no_such_keyspace"], 120)
    assert caught.value.exit_code not in (None, 0)
    assert "no_such_keyspace" in caught.value.output
    assert "\tat " not in caught.value.output


def test_an_unreachable_node_fails_its_call_and_the_jvm_lives_on(
    resident: ResidentExecutor, cluster1: LocalCluster
) -> None:
    """nodetool would end its JVM on a refused connection: here it ends only the command."""
    pid = resident.pid
    with pytest.raises(NodetoolError) as caught:
        resident.run(NOWHERE, ["status"], timeout_s=60)
    assert caught.value.exit_code == 1  # what the nodetool script exits with
    assert "Failed to connect" in caught.value.output
    assert "\tat " not in caught.value.output
    assert resident.run(endpoint(cluster1, 1), ["version"], 60).startswith("ReleaseVersion: 5.0")
    assert resident.pid == pid


def test_a_hung_call_times_out_alone_and_its_jvm_is_replaced_once_idle(
    resident: ResidentExecutor, cluster1: LocalCluster, silent_port: int
) -> None:
    pid = resident.pid
    hung = NodeEndpoint("127.0.0.99", "127.0.0.1", silent_port)
    errors: list[NodetoolError] = []

    def call_the_silent_port() -> None:
        try:
            resident.run(hung, ["status"], timeout_s=3)
        except NodetoolError as exc:
            errors.append(exc)

    waiting = threading.Thread(target=call_the_silent_port)
    waiting.start()
    # Meanwhile another node's command runs in the same JVM.
    assert resident.run(endpoint(cluster1, 1), ["version"], 60).startswith("ReleaseVersion")
    waiting.join(30)
    assert len(errors) == 1 and "timed out after 3 s" in str(errors[0])
    assert resident.run(endpoint(cluster1, 1), ["version"], 60).startswith("ReleaseVersion")
    assert resident.pid != pid
    _gone(pid)


def test_a_killed_jvm_is_started_again_by_the_next_call(
    resident: ResidentExecutor, cluster1: LocalCluster
) -> None:
    pid = resident.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _gone(pid)
    deadline = time.monotonic() + 30
    while resident.pid is not None:  # until its reader has seen it end (its threads exit last)
        assert time.monotonic() < deadline, "the executor never noticed its JVM died"
        time.sleep(0.05)
    assert resident.run(endpoint(cluster1, 1), ["version"], 60).startswith("ReleaseVersion")
    assert resident.pid not in (None, pid)


def test_stop_running_fails_calls_in_flight_and_refuses_new_ones(
    resident: ResidentExecutor, silent_port: int
) -> None:
    pid = resident.pid
    errors: list[NodetoolError] = []

    def call() -> None:
        try:
            resident.run(NodeEndpoint("127.0.0.99", "127.0.0.1", silent_port), ["status"], 120)
        except NodetoolError as exc:
            errors.append(exc)

    waiting = threading.Thread(target=call)
    waiting.start()
    deadline = time.monotonic() + 30
    while resident.running() == 0:
        assert time.monotonic() < deadline, "the call never reached the JVM"
        time.sleep(0.05)
    assert resident.stop_running() == 1
    waiting.join(30)
    assert len(errors) == 1 and "the server is stopping" in str(errors[0])
    _gone(pid)
    with pytest.raises(NodetoolError, match="not started: the server is stopping"):
        resident.run(NOWHERE, ["status"], 10)


def test_a_wrong_classpath_fails_the_start_with_the_fix(cluster1: LocalCluster) -> None:
    jvm = NodetoolJvm(classpath="/nonexistent/lib/*", java=cluster1.java)
    with pytest.raises(NodetoolJvmError, match=r"classpath .*lib/\*\.jar"):
        ResidentExecutor(jvm).start()


def test_a_missing_java_says_what_to_configure() -> None:
    with pytest.raises(NodetoolJvmError, match="full path of a JDK's java"):
        ResidentExecutor(NodetoolJvm(classpath="x", java="/nonexistent/bin/java")).start()


def test_arguments_reach_nodetool_as_they_were_given(
    resident: ResidentExecutor, cluster1: LocalCluster
) -> None:
    """Spaces, percent signs, non-ASCII and an empty last argument pass the line protocol."""
    node = endpoint(cluster1, 1)
    with pytest.raises(NodetoolError) as caught:
        resident.run(node, ["snapshot", "-t", "x", "--", "no such %20 ключ", ""], 120)
    assert "no such %20 ключ" in caught.value.output
