"""CassyClient: the one typed way to call a Cassy-compatible server.

Everything past this module speaks in frozen dataclasses, enums and UTC datetimes; protobuf
messages and gRPC status codes stop here, and gRPC failures become CassyError subclasses that
name the call, the address and what to try next.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cassy_scheduler.closing import Closing
from cassy_scheduler.protocol.echo import echo_text
from cassy_scheduler.protocol.generated import (
    access_pb2,
    access_pb2_grpc,
    backups_pb2,
    backups_pb2_grpc,
    cassy_pb2,
    cassy_pb2_grpc,
)
from cassy_scheduler.protocol.reasons import decode_reasons
from cassy_scheduler.protocol.types import (
    BUILTIN_SERVER_HEALTH_NAME,
    BackupType,
    OperationStatus,
    RestoreType,
)
from cassy_scheduler.tls import TlsConfig

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_BACKUPS_CALLS = frozenset({"DescribeBackups", "DeleteBackup"})  # not rpc.Cassy's
_ACCESS_CALLS = frozenset({"WhoAmI", "ListAudit"})
_ResponseT = TypeVar("_ResponseT", bound=Message)
_EnumT = TypeVar("_EnumT", OperationStatus, BackupType, RestoreType)


# --- errors -------------------------------------------------------------------------------


class CassyError(Exception):
    """A call to a Cassy server failed; `code` and `details` are what the server (or gRPC) said."""

    hint = "see the server's log for the cause"

    def __init__(self, call: str, address: str, code: grpc.StatusCode, details: str) -> None:
        self.call = call
        self.address = address
        self.code = code
        self.details = details
        super().__init__(
            f"Cassy {call} to {address} failed with {code.name}: "
            f"{echo_text(details) or '(no details)'}"
            f"; {self.hint}"
        )

    @property
    def is_transient(self) -> bool:
        """True when the same call may succeed if simply tried again later."""
        return self.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class CassyUnavailable(CassyError):  # noqa: N818 (named for the gRPC status)
    hint = "check that the server is running and reachable at this address, then retry"


class CassyDeadlineExceeded(CassyError):  # noqa: N818 (named for the gRPC status)
    hint = "the server did not answer in time: raise the deadline or check the server's load"


class CassyInvalidArgument(CassyError):  # noqa: N818 (named for the gRPC status)
    hint = "the server refused the request as given: fix the arguments it names"


class CassyNotFound(CassyError):  # noqa: N818 (named for the gRPC status)
    hint = "check the cluster or snapshot id against list_clusters / list_backups"


class CassyFailedPrecondition(CassyError):  # noqa: N818 (named for the gRPC status)
    hint = "the cluster or node is not in a state that allows this: fix it and retry"


class CassyAborted(CassyError):  # noqa: N818 (named for the gRPC status)
    hint = "another operation holds those nodes: wait for it to finish, then retry"


class CassyUnauthenticated(CassyError):  # noqa: N818 (named for the gRPC status)
    hint = (
        "the server admits only known identities: set [server] token_file or token_env to "
        "this caller's token (or CASSY_SCHEDULER_TOKEN with --server), or use a client "
        "certificate the server maps to an identity"
    )


class CassyPermissionDenied(CassyError):  # noqa: N818 (named for the gRPC status)
    hint = "this identity lacks the role the call needs: ask the server's operator for it"


class CassyUnimplemented(CassyError):  # noqa: N818 (named for the gRPC status)
    hint = "the server does not offer this call: check the address points at a Cassy server"


class CassyBadResponse(CassyError):  # noqa: N818 (named for the gRPC status)
    """The server answered, but with values this client cannot interpret."""

    hint = "the server does not speak Cassy's protocol as expected: check its version"


class CassyConfigError(CassyError):
    """The client could not be set up (for example, a TLS file cannot be read)."""

    hint = "fix the client's TLS settings"


#: Statuses that say nothing of which server answered: the health check raises them.
_NOT_AN_ANSWER = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)


def _error_class(code: grpc.StatusCode) -> type[CassyError]:
    classes: dict[grpc.StatusCode, type[CassyError]] = {
        grpc.StatusCode.UNAVAILABLE: CassyUnavailable,
        grpc.StatusCode.DEADLINE_EXCEEDED: CassyDeadlineExceeded,
        grpc.StatusCode.INVALID_ARGUMENT: CassyInvalidArgument,
        grpc.StatusCode.NOT_FOUND: CassyNotFound,
        grpc.StatusCode.FAILED_PRECONDITION: CassyFailedPrecondition,
        grpc.StatusCode.ABORTED: CassyAborted,
        grpc.StatusCode.UNIMPLEMENTED: CassyUnimplemented,
        grpc.StatusCode.UNAUTHENTICATED: CassyUnauthenticated,
        grpc.StatusCode.PERMISSION_DENIED: CassyPermissionDenied,
    }
    return classes.get(code, CassyError)


# --- values -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """A registered cluster; timestamps are None when the server did not send them."""

    cluster_id: str
    cluster_name: str
    target_ips: tuple[str, ...]
    keyspaces: tuple[str, ...]
    data_dir: str
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class BackupAck:
    """The server's immediate answer to take_backup; the outcome comes later (see outcome.py)."""

    status: OperationStatus
    cluster_id: str
    target_ips: tuple[str, ...]
    snapshot_id: str
    created_at: datetime
    created_at_ms: int
    backup_type: BackupType


@dataclass(frozen=True)
class BackupEntry:
    """One node's row of one backup request."""

    cluster_id: str
    target_ip: str
    snapshot_id: str
    created_at: datetime
    created_at_ms: int
    updated_at: datetime
    backup_type: BackupType
    status: OperationStatus
    reason: str | None = None  # why it FAILED; only the built-in server says (protocol/reasons)


@dataclass(frozen=True)
class RestoreAck:
    status: OperationStatus
    cluster_id: str
    target_ips: tuple[str, ...]
    snapshot_id: str
    restore_type: RestoreType
    snapshot_only: bool


@dataclass(frozen=True)
class RestoreEntry:
    """One node's row of one restore request."""

    cluster_id: str
    target_ip: str
    snapshot_id: str
    created_at: datetime
    created_at_ms: int
    updated_at: datetime
    restore_type: RestoreType
    status: OperationStatus
    reason: str | None = None  # why it FAILED; only the built-in server says (protocol/reasons)


@dataclass(frozen=True)
class StoredBackup:
    """One node's part of one backup as the built-in server's Backups service describes it:
    what it holds (None: not known) and whether a deletion of it began and did not finish."""

    target_ip: str
    snapshot_id: str
    created_at_ms: int
    backup_type: BackupType
    status: OperationStatus
    files: int | None
    bytes: int | None
    deleting: bool
    restoring: bool = False


@dataclass(frozen=True)
class DeleteResult:
    """What DeleteBackup removed (or, in a dry run, would remove)."""

    objects: int
    bytes: int
    rows: int
    dry_run: bool


@dataclass(frozen=True)
class Caller:
    """Who the built-in server takes this client for."""

    identity: str  # "" when the server has no access control
    role: str  # reader, operator or admin
    access_control: bool


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    identity: str
    peer: str
    method: str
    request: str  # the request's fields as JSON
    code: str
    message: str
    id: int = 0


def datetime_from_ms(ms: int) -> datetime:
    """Exact UTC datetime for Cassy's uint64 milliseconds since the epoch."""
    return _EPOCH + timedelta(milliseconds=ms)


# --- the client ---------------------------------------------------------------------------


class CassyClient(Closing):
    """Typed, blocking calls to one Cassy server over one channel; close() when done."""

    def __init__(
        self,
        address: str,
        *,
        tls: TlsConfig | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        token: str | None = None,
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        #: Sent with every call, so the server knows the caller (server/access.py).
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        if tls is None:
            self._channel = grpc.insecure_channel(address)
        else:
            self._channel = grpc.secure_channel(address, self._credentials(tls))
        self._stub = cassy_pb2_grpc.CassyStub(self._channel)
        self._backups = backups_pb2_grpc.BackupsStub(self._channel)
        self._access = access_pb2_grpc.AccessStub(self._channel)

    def _credentials(self, tls: TlsConfig) -> Any:
        if (tls.cert_file is None) != (tls.key_file is None):
            raise CassyConfigError(
                "connect",
                self.address,
                grpc.StatusCode.FAILED_PRECONDITION,
                "a client certificate and its key must be given together",
            )
        try:
            root = tls.ca_file.read_bytes() if tls.ca_file else None
            cert = tls.cert_file.read_bytes() if tls.cert_file else None
            key = tls.key_file.read_bytes() if tls.key_file else None
        except OSError as exc:
            raise CassyConfigError(
                "connect", self.address, grpc.StatusCode.FAILED_PRECONDITION, str(exc)
            ) from exc
        return grpc.ssl_channel_credentials(
            root_certificates=root, private_key=key, certificate_chain=cert
        )

    def close(self) -> None:
        self._channel.close()

    def is_builtin_server(self, *, timeout_s: float | None = None) -> bool:
        """Whether this is `cassy-scheduler serve`; anything else (Scalar's Cassy) is treated
        by Cassy's rules. Asked through the standard health service, so Cassy's API is unchanged.
        A server that cannot be reached, or refuses this caller, is neither: the call's
        error, never a guess that could send a caller down Cassy's paths."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        request = health_pb2.HealthCheckRequest(service=BUILTIN_SERVER_HEALTH_NAME)
        try:
            reply = stub.Check(
                request,
                timeout=self.timeout_s if timeout_s is None else timeout_s,
                metadata=self._metadata,
            )
        except grpc.RpcError as exc:
            code = exc.code()
            if code in _NOT_AN_ANSWER:
                raise _error_class(code)("Check", self.address, code, exc.details() or "") from exc
            return False  # no health service, or not ours: Scalar's Cassy
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    # -- calls --

    def register_cluster(self, cassandra_host: str, *, timeout_s: float | None = None) -> Cluster:
        request = cassy_pb2.ClusterRegistrationRequest(cassandra_host=cassandra_host)
        response = self._call(
            "RegisterCluster", request, cassy_pb2.ClusterRegistrationResponse, timeout_s
        )
        return Cluster(
            cluster_id=response.cluster_id,
            cluster_name=response.cluster_name,
            target_ips=tuple(response.target_ips),
            keyspaces=tuple(response.keyspaces),
            data_dir=response.data_dir,
        )

    def list_clusters(
        self, cluster_id: str | None = None, limit: int = 0, *, timeout_s: float | None = None
    ) -> list[Cluster]:
        request = cassy_pb2.ClusterListingRequest(cluster_id=cluster_id or "", limit=limit)
        response = self._call("ListClusters", request, cassy_pb2.ClusterListingResponse, timeout_s)
        return [
            Cluster(
                cluster_id=entry.cluster_id,
                cluster_name=entry.cluster_name,
                target_ips=tuple(entry.target_ips),
                keyspaces=tuple(entry.keyspaces),
                data_dir=entry.data_dir,
                created_at=datetime_from_ms(entry.created_at),
                updated_at=datetime_from_ms(entry.updated_at),
            )
            for entry in response.entries
        ]

    def take_backup(
        self,
        cluster_id: str,
        backup_type: BackupType,
        snapshot_id: str | None = None,
        target_ips: Iterable[str] = (),
        *,
        timeout_s: float | None = None,
    ) -> BackupAck:
        """Start a backup; the server answers once every node's row is STARTED."""
        call = "TakeBackup"
        request = cassy_pb2.BackupRequest(
            cluster_id=cluster_id,
            target_ips=list(target_ips),
            snapshot_id=snapshot_id or "",
            backup_type=int(backup_type),
        )
        response = self._call(call, request, cassy_pb2.BackupResponse, timeout_s)
        return BackupAck(
            status=self._enum(call, OperationStatus, response.status),
            cluster_id=response.cluster_id,
            target_ips=tuple(response.target_ips),
            snapshot_id=response.snapshot_id,
            created_at=datetime_from_ms(response.created_at),
            created_at_ms=response.created_at,
            backup_type=self._enum(call, BackupType, response.backup_type),
        )

    def list_backups(
        self,
        cluster_id: str | None = None,
        target_ip: str | None = None,
        snapshot_id: str | None = None,
        limit: int = 0,
        *,
        timeout_s: float | None = None,
    ) -> list[BackupEntry]:
        """Backup rows, newest first; the server needs cluster_id, snapshot_id or both ids."""
        call = "ListBackups"
        request = cassy_pb2.BackupListingRequest(
            cluster_id=cluster_id or "",
            target_ip=target_ip or "",
            snapshot_id=snapshot_id or "",
            limit=limit,
        )
        response, trailer = self._call_with_trailer(
            call, request, cassy_pb2.BackupListingResponse, timeout_s
        )
        reasons = decode_reasons(trailer)
        return [
            BackupEntry(
                cluster_id=entry.cluster_id,
                target_ip=entry.target_ip,
                snapshot_id=entry.snapshot_id,
                created_at=datetime_from_ms(entry.created_at),
                created_at_ms=entry.created_at,
                updated_at=datetime_from_ms(entry.updated_at),
                backup_type=self._enum(call, BackupType, entry.backup_type),
                status=self._enum(call, OperationStatus, entry.status),
                reason=reasons.get((entry.target_ip, entry.snapshot_id, entry.created_at)),
            )
            for entry in response.entries
        ]

    def restore_backup(
        self,
        cluster_id: str,
        snapshot_id: str,
        restore_type: RestoreType,
        target_ips: Iterable[str] = (),
        snapshot_only: bool = False,
        *,
        timeout_s: float | None = None,
    ) -> RestoreAck:
        call = "RestoreBackup"
        request = cassy_pb2.RestoreRequest(
            cluster_id=cluster_id,
            target_ips=list(target_ips),
            snapshot_id=snapshot_id,
            restore_type=int(restore_type),
            snapshot_only=snapshot_only,
        )
        response = self._call(call, request, cassy_pb2.RestoreResponse, timeout_s)
        return RestoreAck(
            status=self._enum(call, OperationStatus, response.status),
            cluster_id=response.cluster_id,
            target_ips=tuple(response.target_ips),
            snapshot_id=response.snapshot_id,
            restore_type=self._enum(call, RestoreType, response.restore_type),
            snapshot_only=response.snapshot_only,
        )

    def list_restore_statuses(
        self,
        cluster_id: str,
        snapshot_id: str,
        target_ip: str | None = None,
        limit: int = 0,
        *,
        timeout_s: float | None = None,
    ) -> list[RestoreEntry]:
        call = "ListRestoreStatuses"
        request = cassy_pb2.RestoreStatusListingRequest(
            cluster_id=cluster_id,
            target_ip=target_ip or "",
            snapshot_id=snapshot_id,
            limit=limit,
        )
        response, trailer = self._call_with_trailer(
            call, request, cassy_pb2.RestoreStatusListingResponse, timeout_s
        )
        reasons = decode_reasons(trailer)
        return [
            RestoreEntry(
                cluster_id=response.cluster_id,
                target_ip=entry.target_ip,
                snapshot_id=entry.snapshot_id,
                created_at=datetime_from_ms(entry.created_at),
                created_at_ms=entry.created_at,
                updated_at=datetime_from_ms(entry.updated_at),
                restore_type=self._enum(call, RestoreType, entry.restore_type),
                status=self._enum(call, OperationStatus, entry.status),
                reason=reasons.get((entry.target_ip, entry.snapshot_id, entry.created_at)),
            )
            for entry in response.entries
        ]

    # -- the built-in server's own calls (cassy_scheduler.v1.Backups) --

    def describe_backups(
        self, cluster_id: str, *, timeout_s: float | None = None
    ) -> list[StoredBackup]:
        """Every node's part of every backup of the cluster, with its size; UNIMPLEMENTED
        from a server without the service (Scalar's Cassy)."""
        call = "DescribeBackups"
        request = backups_pb2.DescribeBackupsRequest(cluster_id=cluster_id)
        response = self._call(call, request, backups_pb2.DescribeBackupsResponse, timeout_s)
        return [
            StoredBackup(
                target_ip=entry.target_ip,
                snapshot_id=entry.snapshot_id,
                created_at_ms=entry.created_at,
                backup_type=self._enum(call, BackupType, entry.backup_type),
                status=self._enum(call, OperationStatus, entry.status),
                files=entry.files if entry.size_known else None,
                bytes=entry.bytes if entry.size_known else None,
                deleting=entry.deleting,
                restoring=entry.restoring,
            )
            for entry in response.entries
        ]

    def delete_backup(
        self,
        cluster_id: str,
        snapshot_id: str,
        created_at_ms: int = 0,
        *,
        dry_run: bool = False,
        timeout_s: float | None = None,
    ) -> DeleteResult:
        """Delete a snapshot with its incrementals (created_at_ms 0), or a failed incremental."""
        request = backups_pb2.DeleteBackupRequest(
            cluster_id=cluster_id,
            snapshot_id=snapshot_id,
            created_at=created_at_ms,
            dry_run=dry_run,
        )
        response = self._call("DeleteBackup", request, backups_pb2.DeleteBackupResponse, timeout_s)
        return DeleteResult(response.objects, response.bytes, response.rows, response.dry_run)

    # -- the built-in server's access calls (cassy_scheduler.v1.Access) --

    def who_am_i(self, *, timeout_s: float | None = None) -> Caller:
        response = self._call(
            "WhoAmI", access_pb2.WhoAmIRequest(), access_pb2.WhoAmIResponse, timeout_s
        )
        return Caller(response.identity, response.role, response.access_control)

    def list_audit(
        self,
        *,
        limit: int = 0,
        identity: str = "",
        before_id: int = 0,
        timeout_s: float | None = None,
    ) -> list[AuditEntry]:
        """The server's record of calls that change something, newest first; `before_id`
        (the last page's oldest `id`) pages back."""
        request = access_pb2.ListAuditRequest(limit=limit, identity=identity, before_id=before_id)
        response = self._call("ListAudit", request, access_pb2.ListAuditResponse, timeout_s)
        return [
            AuditEntry(
                at=datetime_from_ms(e.at),
                identity=e.identity,
                peer=e.peer,
                method=e.method,
                request=e.request,
                code=e.code,
                message=e.message,
                id=e.id,
            )
            for e in response.entries
        ]

    # -- plumbing --

    def _call(
        self,
        call: str,
        request: Message,
        response_type: type[_ResponseT],
        timeout_s: float | None,
    ) -> _ResponseT:
        return self._call_with_trailer(call, request, response_type, timeout_s)[0]

    def _call_with_trailer(
        self,
        call: str,
        request: Message,
        response_type: type[_ResponseT],
        timeout_s: float | None,
    ) -> tuple[_ResponseT, Any]:
        """The answer and the call's trailing metadata (where the built-in server adds more)."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        method = getattr(self._stub_for(call), call)
        logger.debug("cassy call=%s address=%s timeout_s=%s", call, self.address, timeout)
        try:
            response, done = method.with_call(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            code = exc.code()
            details = exc.details() or ""
            logger.debug(
                "cassy call=%s address=%s code=%s details=%r",
                call,
                self.address,
                code,
                echo_text(details),
            )
            raise _error_class(code)(call, self.address, code, details) from exc
        if not isinstance(response, response_type):
            raise CassyBadResponse(
                call,
                self.address,
                grpc.StatusCode.INTERNAL,
                f"expected {response_type.__name__}, got {type(response).__name__}",
            )
        return response, done.trailing_metadata()

    def _stub_for(self, call: str) -> Any:
        if call in _BACKUPS_CALLS:
            return self._backups
        if call in _ACCESS_CALLS:
            return self._access
        return self._stub

    def _enum(self, call: str, enum_type: type[_EnumT], value: int) -> _EnumT:
        try:
            return enum_type(value)
        except ValueError:
            raise CassyBadResponse(
                call,
                self.address,
                grpc.StatusCode.INTERNAL,
                f"{value} is not a known {enum_type.__name__}",
            ) from None
