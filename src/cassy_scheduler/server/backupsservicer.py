"""cassy_scheduler.v1.Backups handlers: our own calls beside rpc.Cassy (proto/backups.proto).

As in servicer.py, nothing is decided here; deletion.py decides and refuses with typed
errors, which reach the caller with the statuses of servicer.STATUS_OF.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from cassy_scheduler.protocol.generated import backups_pb2, backups_pb2_grpc
from cassy_scheduler.server.deletion import BackupDeletions
from cassy_scheduler.server.servicer import answered, wire_status
from cassy_scheduler.storage.errors import StorageError

SERVICE_NAME = backups_pb2.DESCRIPTOR.services_by_name["Backups"].full_name


class BackupsServicer(backups_pb2_grpc.BackupsServicer):
    """Sizes and deletion of stored backups."""

    def __init__(self, deletions: BackupDeletions) -> None:
        self._deletions = deletions

    def DescribeBackups(
        self, request: backups_pb2.DescribeBackupsRequest, context: grpc.ServicerContext
    ) -> backups_pb2.DescribeBackupsResponse:
        with answered(context), _storage_unavailable(context):
            described = self._deletions.describe(request.cluster_id)
        return backups_pb2.DescribeBackupsResponse(
            entries=[
                backups_pb2.DescribedBackup(
                    snapshot_id=d.row.snapshot_id,
                    created_at=d.row.created_at,
                    backup_type=int(d.row.backup_type),
                    target_ip=d.row.target_ip,
                    status=wire_status(d.row.status),
                    size_known=d.size is not None,
                    files=d.size.files if d.size else 0,
                    bytes=d.size.bytes if d.size else 0,
                    deleting=d.deleting,
                    restoring=d.restoring,
                )
                for d in described
            ]
        )

    def DeleteBackup(
        self, request: backups_pb2.DeleteBackupRequest, context: grpc.ServicerContext
    ) -> backups_pb2.DeleteBackupResponse:
        with answered(context), _storage_unavailable(context):
            deleted = self._deletions.delete(
                request.cluster_id,
                request.snapshot_id,
                request.created_at,
                dry_run=request.dry_run,
            )
        return backups_pb2.DeleteBackupResponse(
            objects=deleted.objects,
            bytes=deleted.bytes,
            rows=deleted.rows,
            dry_run=deleted.dry_run,
        )


@contextmanager
def _storage_unavailable(context: grpc.ServicerContext) -> Iterator[None]:
    """A store that fails mid-deletion leaves it marked: the same call later finishes it."""
    try:
        yield
    except StorageError as exc:
        context.abort(
            grpc.StatusCode.UNAVAILABLE,
            f"storage failed: {exc}; send the same DeleteBackup again once it answers: "
            "the deletion goes on where it stopped",
        )
