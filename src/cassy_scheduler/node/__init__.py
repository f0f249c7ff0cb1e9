"""Work on one Cassandra node: nodetool, data-dir scanning, transfers to storage."""
