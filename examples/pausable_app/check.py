"""Counting half-written logical writes: pairs with one row present and the other missing.

A consistent cut of the cluster holds both rows of a pair or neither, so a restore of a
cluster-wide snapshot must count 0 torn pairs; a node snapshot taken while the application
writes can catch a pair between its two halves.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.query import SimpleStatement


@dataclass(frozen=True)
class PairCount:
    """Complete and torn pairs found in one table, with up to a few torn pair ids."""

    complete: int
    torn: int
    torn_examples: tuple[str, ...] = ()


def count_pairs(session: Any, keyspace: str, table: str = "pairs") -> PairCount:
    """Read every row (at consistency ALL, so every replica counts) and pair them up."""
    statement = SimpleStatement(
        f"SELECT pair, half FROM {keyspace}.{table}",
        consistency_level=ConsistencyLevel.ALL,
        fetch_size=5000,
    )
    halves: dict[str, set[str]] = defaultdict(set)
    for row in session.execute(statement, timeout=120):
        halves[row.pair].add(row.half)
    torn = sorted(pair for pair, seen in halves.items() if seen != {"a", "b"})
    return PairCount(len(halves) - len(torn), len(torn), tuple(torn[:5]))
