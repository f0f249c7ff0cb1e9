"""Cassy's wire protocol: generated gRPC stubs plus the typed values both sides share."""

from cassy_scheduler.protocol.types import BackupType, OperationStatus, RestoreType

__all__ = ["BackupType", "OperationStatus", "RestoreType"]
