"""Rows for benchmarks: incompressible blobs in one table, so SSTables are as big as the data."""

from __future__ import annotations

import os

from cassandra.cluster import Cluster

KEYSPACE = "bench"
TABLE = "blobs"
ROW_BYTES = 256 * 1024


def fill(addresses: list[str], megabytes: int, *, first_key: int = 0) -> int:
    """Write about `megabytes` of rows with keys from `first_key`; the next free key."""
    driver = Cluster(addresses, protocol_version=5)
    try:
        session = driver.connect()
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        session.execute(
            f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.{TABLE} (k int PRIMARY KEY, v blob) "
            "WITH compression = {'enabled': 'false'}"
        )
        insert = session.prepare(f"INSERT INTO {KEYSPACE}.{TABLE} (k, v) VALUES (?, ?)")
        rows = max(1, megabytes * 1024 * 1024 // ROW_BYTES)
        last = first_key + rows
        for start in range(first_key, last, 8):
            batch = [
                session.execute_async(insert, (k, os.urandom(ROW_BYTES)))
                for k in range(start, min(start + 8, last))
            ]
            for future in batch:
                future.result()
        return last
    finally:
        driver.shutdown()
