"""cassy_scheduler.v1.Access handlers (proto/access.proto): who the caller is taken for, and
the audit log. The gate (gate.py) has admitted the call, and recorded it, by now."""

from __future__ import annotations

from typing import Protocol

import grpc

from cassy_scheduler.protocol.generated import access_pb2, access_pb2_grpc
from cassy_scheduler.server.access import ANYONE, Credentials
from cassy_scheduler.server.gate import identity_of
from cassy_scheduler.server.rows import AuditRecord

SERVICE_NAME = access_pb2.DESCRIPTOR.services_by_name["Access"].full_name
DEFAULT_AUDIT_LIMIT = 100
MAX_AUDIT_LIMIT = 10_000


class AuditLog(Protocol):
    def audit(
        self, limit: int, identity: str | None = None, before_id: int | None = None
    ) -> list[AuditRecord]: ...


class AccessServicer(access_pb2_grpc.AccessServicer):
    def __init__(self, credentials: Credentials, audit: AuditLog) -> None:
        self._credentials = credentials
        self._audit = audit

    def WhoAmI(
        self, request: access_pb2.WhoAmIRequest, context: grpc.ServicerContext
    ) -> access_pb2.WhoAmIResponse:
        who = identity_of(context) or ANYONE
        return access_pb2.WhoAmIResponse(
            identity=who.name, role=who.role.label, access_control=self._credentials.enabled
        )

    def ListAudit(
        self, request: access_pb2.ListAuditRequest, context: grpc.ServicerContext
    ) -> access_pb2.ListAuditResponse:
        if request.limit > MAX_AUDIT_LIMIT:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"limit {request.limit} is more than {MAX_AUDIT_LIMIT}: page back with 'before_id'",
            )
        records = self._audit.audit(
            request.limit or DEFAULT_AUDIT_LIMIT,
            identity=request.identity or None,
            before_id=request.before_id or None,
        )
        return access_pb2.ListAuditResponse(
            entries=[
                access_pb2.AuditEntry(
                    at=r.at,
                    identity=r.identity,
                    peer=r.peer,
                    method=r.method,
                    request=r.request,
                    code=r.code,
                    message=r.message,
                    id=r.id,
                )
                for r in records
            ]
        )
