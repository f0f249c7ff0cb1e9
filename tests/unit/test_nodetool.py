"""Parsing nodetool's output as Cassandra 5.0.9 printed it, and the commands each call runs."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import pytest

from cassy_scheduler.node.executor import NodeEndpoint, NodetoolError, output_tail
from cassy_scheduler.node.liveness import cassandra_running
from cassy_scheduler.node.nodetool import (
    Nodetool,
    RingNode,
    parse_data_paths,
    parse_status,
)

# Captured from a local 3-node cluster, node 3 killed.
STATUS_ONE_DOWN = """\
Datacenter: datacenter1
=======================
Status=Up/Down
|/ State=Normal/Leaving/Joining/Moving
--  Address     Load        Tokens  Owns (effective)  Host ID                               Rack 
UN  127.0.0.51  170.69 KiB  1       33.3%             ff30ea33-c017-411e-888a-a03868dbd295  rack1
UN  127.0.0.52  79.82 KiB   1       33.3%             a6ce9157-8122-4096-a085-8fcc8deca2b7  rack1
DN  127.0.0.53  98.38 KiB   1       33.3%             504daf7c-d73d-4421-9dbd-f65727c5a3bc  rack1

"""  # noqa: W291

# The same ring with keyspaces of different replication, printed with --print-port.
STATUS_WITH_PORTS_AND_NOTE = """\
Datacenter: datacenter1
=======================
Status=Up/Down
|/ State=Normal/Leaving/Joining/Moving
--  Address          Load        Tokens  Owns  Host ID                               Rack 
UN  127.0.0.51:7000  175.9 KiB   1       ?     ff30ea33-c017-411e-888a-a03868dbd295  rack1
UN  127.0.0.52:7000  115.85 KiB  1       ?     a6ce9157-8122-4096-a085-8fcc8deca2b7  rack1
DN  127.0.0.53:7000  98.38 KiB   1       ?     504daf7c-d73d-4421-9dbd-f65727c5a3bc  rack1

Note: Non-system keyspaces don't have the same replication settings, effective ownership \
information is meaningless
"""  # noqa: W291

# Two datacenters, a joining node without a host id yet, a leaving and a moving node.
STATUS_TWO_DCS = """\
Datacenter: dc1
===============
Status=Up/Down
|/ State=Normal/Leaving/Joining/Moving
--  Address    Load       Tokens  Owns (effective)  Host ID                               Rack
UN  10.0.0.1   1.2 GiB    16      50.0%             11111111-2222-3333-4444-555555555555  r1
UJ  10.0.0.2   12 KiB     16      ?                 ?                                     r1
Datacenter: dc2
===============
Status=Up/Down
|/ State=Normal/Leaving/Joining/Moving
--  Address    Load       Tokens  Owns (effective)  Host ID                               Rack
UL  10.0.1.1   1.1 GiB    16      50.0%             aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee  r2
DM  2001:db8::1  1 GiB    16      50.0%             ffffffff-bbbb-cccc-dddd-eeeeeeeeeeee  r2
"""


DATAPATHS_JSON = """\
{
  "system_schema" : {
    "keyspaces" : [ "/var/lib/cassandra/data1/system_schema/keyspaces-abac5682dea631c5b535b3d6cffd0fb6", "/var/lib/cassandra/data2/system_schema/keyspaces-abac5682dea631c5b535b3d6cffd0fb6" ],
    "tables" : [ "/var/lib/cassandra/data1/system_schema/tables-afddfb9dbc1e30688056eed6c302ba09" ]
  }
}
"""  # noqa: E501

SNAPSHOT_EXISTS = """\
Requested creating snapshot(s) for [system] with snapshot name [probe1] and options {...}
error: Snapshot probe1 already exists.
-- StackTrace --
java.io.IOException: Snapshot probe1 already exists.
\tat org.apache.cassandra.service.StorageService.takeSnapshot(StorageService.java:4480)
\tat java.base/java.lang.Thread.run(Thread.java:840)
"""


def test_parse_status_reads_each_row() -> None:
    assert parse_status(STATUS_ONE_DOWN) == [
        RingNode("127.0.0.51", "U", "N", "ff30ea33-c017-411e-888a-a03868dbd295"),
        RingNode("127.0.0.52", "U", "N", "a6ce9157-8122-4096-a085-8fcc8deca2b7"),
        RingNode("127.0.0.53", "D", "N", "504daf7c-d73d-4421-9dbd-f65727c5a3bc"),
    ]


def test_parse_status_strips_ports_and_ignores_notes() -> None:
    nodes = parse_status(STATUS_WITH_PORTS_AND_NOTE)
    assert [(n.address, n.code) for n in nodes] == [
        ("127.0.0.51", "UN"),
        ("127.0.0.52", "UN"),
        ("127.0.0.53", "DN"),
    ]


def test_parse_status_every_datacenter_and_state() -> None:
    nodes = parse_status(STATUS_TWO_DCS)
    assert [(n.address, n.code, n.is_up_normal) for n in nodes] == [
        ("10.0.0.1", "UN", True),
        ("10.0.0.2", "UJ", False),
        ("10.0.1.1", "UL", False),
        ("2001:db8::1", "DM", False),
    ]
    assert nodes[1].host_id is None


def test_parse_status_of_nothing() -> None:
    assert parse_status("") == []


def test_parse_data_paths_gives_each_data_dir_once_in_order() -> None:
    assert parse_data_paths(DATAPATHS_JSON) == [
        Path("/var/lib/cassandra/data1"),
        Path("/var/lib/cassandra/data2"),
    ]
    with pytest.raises(ValueError, match="no JSON"):
        parse_data_paths("error: oops")


def test_output_tail_keeps_the_error_and_drops_the_stack() -> None:
    tail = output_tail(SNAPSHOT_EXISTS)
    assert tail.splitlines()[0] == "error: Snapshot probe1 already exists."
    assert "\tat " not in tail
    assert "StackTrace" not in tail


class RecordingExecutor:
    """Answers nodetool calls from a script and records them."""

    def __init__(self, answers: dict[str, str | NodetoolError] | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.answers = answers or {}

    def stop_running(self) -> int:
        return 0

    def run(self, node: NodeEndpoint, args: Sequence[str], timeout_s: float) -> str:
        self.calls.append(tuple(args))
        answer = self.answers.get(args[0], "")
        if isinstance(answer, NodetoolError):
            raise answer
        return answer


NODE = NodeEndpoint("127.0.0.41", "127.0.0.1", 11100)


def test_commands_run_for_each_call() -> None:
    executor = RecordingExecutor({"status": STATUS_ONE_DOWN})
    nodetool = Nodetool(executor, NODE)
    nodetool.flush()
    nodetool.flush(["ks1"])
    nodetool.flush(["ks1", "ks2"])  # one JVM for all: nodetool flushes one keyspace or all
    nodetool.snapshot("tag-1", ["ks1", "system"])
    nodetool.clear_snapshot("tag-1")
    nodetool.clear_all_snapshots()
    assert len(nodetool.status()) == 3
    assert executor.calls == [
        ("flush",),
        ("flush", "--", "ks1"),
        ("flush",),
        ("snapshot", "-t", "tag-1", "--", "ks1", "system"),
        ("clearsnapshot", "-t", "tag-1"),
        ("clearsnapshot", "--all"),
        ("status",),
    ]


def test_snapshot_refuses_a_tag_that_is_not_plain() -> None:
    executor = RecordingExecutor()
    with pytest.raises(ValueError):
        Nodetool(executor, NODE).snapshot("-all", ["ks"])
    with pytest.raises(ValueError):
        Nodetool(executor, NODE).clear_snapshot("")
    assert executor.calls == []


def test_a_port_that_listens_means_running_and_refusals_mean_stopped() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))  # bound, not listening: refuses
            refused = closed.getsockname()[1]
            assert cassandra_running([("127.0.0.1", refused), ("127.0.0.1", port)])
            assert cassandra_running([("127.0.0.1", refused)]) is False
