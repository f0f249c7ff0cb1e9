"""Discovery against real clusters: the facts RegisterCluster records, and when it refuses."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pytest

from cassy_scheduler.node.discovery import (
    ClusterFacts,
    CqlAccess,
    discover_cluster,
    node_data_dir,
)
from cassy_scheduler.node.executor import DiscoveryError, NodeEndpoint, NodeUnavailable
from tests.integration.test_node_nodetool import endpoint, local_executor
from tools.localcluster import LocalCluster

pytestmark = pytest.mark.cassandra

ON_DISK_SYSTEM_KEYSPACES = {
    "system",
    "system_schema",
    "system_auth",
    "system_distributed",
    "system_traces",
}


def endpoints_of(cluster: LocalCluster) -> Callable[[str], NodeEndpoint]:
    return lambda address: endpoint(cluster, address)


def discover(cluster: LocalCluster, node: int) -> ClusterFacts:
    return discover_cluster(
        cluster.spec(node).address, local_executor(), endpoints_of(cluster), timeout_s=30
    )


def test_discovers_a_one_node_cluster(cluster1: LocalCluster, keyspace1: str) -> None:
    spec = cluster1.spec(1)
    facts = discover(cluster1, 1)
    assert facts.cluster_name == cluster1.cluster_name
    assert facts.nodes == (spec.address,)
    assert facts.data_dir == str(spec.data_dir)
    assert ON_DISK_SYSTEM_KEYSPACES | {keyspace1} <= set(facts.keyspaces)
    assert not {"system_views", "system_virtual_schema"} & set(facts.keyspaces)
    assert list(facts.keyspaces) == sorted(facts.keyspaces)


def test_node_data_dir(cluster1: LocalCluster) -> None:
    spec = cluster1.spec(1)
    assert node_data_dir(spec.address, CqlAccess(spec.cql_port), 30) == spec.data_dir


def test_nothing_listening_is_a_discovery_error() -> None:
    with pytest.raises(DiscoveryError, match=r"127\.0\.0\.99:9042") as caught:
        discover_cluster("127.0.0.99", local_executor(), NodeEndpoint, timeout_s=5)
    assert not isinstance(caught.value, NodeUnavailable)
    with pytest.raises(DiscoveryError, match=r"127\.0\.0\.99:9042"):
        node_data_dir("127.0.0.99", CqlAccess(9042), 5)


def test_a_name_no_resolver_knows_is_a_discovery_error() -> None:
    """RegisterCluster answers UNAVAILABLE naming the host, not UNKNOWN with a traceback."""
    with pytest.raises(DiscoveryError, match=r"no-such-node\.invalid:9042"):
        discover_cluster("no-such-node.invalid", local_executor(), NodeEndpoint, timeout_s=5)


class FixedStatus:
    """An executor whose `nodetool status` prints a given ring."""

    def __init__(self, output: str) -> None:
        self.output = output

    def stop_running(self) -> int:
        return 0

    def run(self, node: NodeEndpoint, args: Sequence[str], timeout_s: float) -> str:
        assert list(args) == ["status"]
        return self.output


def test_a_ring_node_unknown_to_cql_is_refused(cluster1: LocalCluster) -> None:
    address = cluster1.spec(1).address
    ring = (
        f"UN  {address}  1 KiB  1  100%  ff30ea33-c017-411e-888a-a03868dbd295  rack1\n"
        "UN  127.0.0.250  1 KiB  1  0%  a6ce9157-8122-4096-a085-8fcc8deca2b7  rack1\n"
    )
    with pytest.raises(NodeUnavailable) as caught:
        discover_cluster(address, FixedStatus(ring), endpoints_of(cluster1), timeout_s=30)
    assert set(caught.value.states) == {"127.0.0.250"}
    assert "missing from system.peers" in caught.value.states["127.0.0.250"]


def test_a_cql_node_missing_from_the_ring_is_refused(cluster1: LocalCluster) -> None:
    address = cluster1.spec(1).address
    with pytest.raises(NodeUnavailable, match=address) as caught:
        discover_cluster(address, FixedStatus(""), endpoints_of(cluster1), timeout_s=30)
    assert caught.value.states == {address: "missing from nodetool status"}


@pytest.mark.three_nodes
def test_discovers_a_three_node_cluster_from_any_node(cluster3: LocalCluster) -> None:
    facts = discover(cluster3, 2)
    assert facts.cluster_name == cluster3.cluster_name
    assert facts.nodes == tuple(sorted(cluster3.addresses))
    assert facts.data_dir == str(cluster3.spec(2).data_dir)
    assert set(facts.keyspaces) >= ON_DISK_SYSTEM_KEYSPACES
    for spec in cluster3.specs:
        assert node_data_dir(spec.address, CqlAccess(spec.cql_port), 30) == spec.data_dir


def _discover_until_refused(cluster: LocalCluster, node: int, limit_s: float) -> NodeUnavailable:
    """Gossip needs a few seconds to convict a killed node; ask until the ring says so."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            discover(cluster, node)
        except NodeUnavailable as exc:
            return exc
        if time.monotonic() > deadline:
            pytest.fail("discovery kept succeeding although a node was killed")
        time.sleep(2)


@pytest.mark.three_nodes
def test_a_down_node_makes_discovery_refuse(cluster3: LocalCluster) -> None:
    victim = cluster3.spec(3).address
    cluster3.kill(3)
    try:
        refused = _discover_until_refused(cluster3, 1, limit_s=120)
    finally:
        cluster3.start(3)
    assert refused.states == {victim: "DN"}
    assert f"{victim} (DN)" in str(refused)
