"""Typed names for the numbers Cassy carries in its messages (uint32 codes and the status enum).

The scheduler and the server both speak in these, so a backup type is never a bare integer
anywhere past the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum


class OperationStatus(IntEnum):
    """Life cycle of one node's backup or restore row (rpc.OperationStatus)."""

    UNKNOWN = 0
    INITIALIZED = 1
    STARTED = 2
    COMPLETED = 3
    FAILED = 4

    @property
    def is_final(self) -> bool:
        return self in (OperationStatus.COMPLETED, OperationStatus.FAILED)


class BackupType(IntEnum):
    """Values of `backup_type` (uint32 on the wire)."""

    CLUSTER_SNAPSHOT = 1
    NODE_SNAPSHOT = 2
    NODE_INCREMENTAL = 3

    @property
    def is_snapshot(self) -> bool:
        return self is not BackupType.NODE_INCREMENTAL


class RestoreType(IntEnum):
    """Values of `restore_type` (uint32 on the wire)."""

    CLUSTER = 1
    NODE = 2


@dataclass(frozen=True)
class NodeStatus:
    """One node's part of one request, as the server last reported it.

    `reason` says why it FAILED (only the built-in server tells); `updated_at` is the row's
    time, None when no row was seen (or the record kept none).
    """

    target_ip: str
    status: OperationStatus
    reason: str | None = None
    updated_at: datetime | None = None


#: A gRPC health service name only the built-in server reports SERVING. Scalar's Cassy answers
#: NOT_FOUND for it, so a client can tell the servers apart where their behaviour differs
#: (the built-in server's cluster-wide snapshots leave incremental-backup files in place).
BUILTIN_SERVER_HEALTH_NAME = "cassy_scheduler.BuiltinServer"
