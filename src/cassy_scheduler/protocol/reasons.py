"""Why a node's row FAILED, carried beside Cassy's listing messages, which have no field for it.

The built-in server sends the reasons of the FAILED rows it lists (ListBackups and
ListRestoreStatuses) as binary trailing metadata; a client that reads them can say why a
node failed. Scalar's Cassy sends none, and a client that does not read them loses nothing:
the listing itself is unchanged. gRPC caps metadata (8 KiB by default), so reasons are
shortened and the newest rows' reasons come first within a budget.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

#: Binary (`-bin`) trailing-metadata key of ListBackups and ListRestoreStatuses answers.
REASONS_KEY = "cassy-scheduler-failure-reasons-bin"
REASON_CHARS = 300
BUDGET_BYTES = 4096

RowKey = tuple[str, str, int]  # (target_ip, snapshot_id, created_at in ms)


def encode_reasons(reasons: Iterable[tuple[RowKey, str]]) -> bytes | None:
    """The reasons as JSON within BUDGET_BYTES, in the order given; None when there are none."""
    kept: list[list[object]] = []
    size = 2
    for (target_ip, snapshot_id, created_at), reason in reasons:
        item: list[object] = [target_ip, snapshot_id, created_at, reason[:REASON_CHARS]]
        cost = len(json.dumps(item).encode()) + 1
        if size + cost > BUDGET_BYTES:
            break
        kept.append(item)
        size += cost
    return json.dumps(kept).encode() if kept else None


def decode_reasons(metadata: Iterable[tuple[str, str | bytes]] | None) -> Mapping[RowKey, str]:
    """The reasons in a call's trailing metadata; anything malformed is ignored, not fatal."""
    for key, value in metadata or ():
        if key != REASONS_KEY or not isinstance(value, bytes):
            continue
        try:
            items = json.loads(value)
            return {
                (str(ip), str(snapshot_id), int(created_at)): str(reason)
                for ip, snapshot_id, created_at, reason in items
            }
        except (ValueError, TypeError):
            return {}
    return {}
