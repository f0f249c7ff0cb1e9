"""Backups and restores take nodes from one table, so they never overlap on a node."""

from __future__ import annotations

import pytest

from cassy_scheduler.server.errors import NodesBusyError
from cassy_scheduler.server.reservations import NodeReservations


def test_a_busy_node_refuses_any_other_operation_and_names_the_holder() -> None:
    table = NodeReservations()
    table.reserve(["127.0.0.1", "127.0.0.2"], "backup of snapshot s1")
    with pytest.raises(NodesBusyError, match=r"127\.0\.0\.2 \(backup of snapshot s1\)"):
        table.reserve(["127.0.0.2", "127.0.0.3"], "restore of snapshot s0")
    table.reserve(["127.0.0.3"], "restore of snapshot s0")  # the refused request took nothing
    table.release(["127.0.0.1", "127.0.0.2"])
    table.reserve(["127.0.0.2"], "restore of snapshot s0")
