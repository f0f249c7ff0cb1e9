"""A real local Apache Cassandra 5.0 cluster (1 to 3 nodes) from Maven Central's jars.

Used by the tests, the benchmarks and the demo: `LocalCluster(root, nodes).start_all()` returns
once every node serves CQL and sees every node Up/Normal.
"""

from tools.localcluster.artifacts import CassandraJars, fetch
from tools.localcluster.cluster import LocalCluster
from tools.localcluster.errors import LocalClusterError

__all__ = ["CassandraJars", "LocalCluster", "LocalClusterError", "fetch"]
