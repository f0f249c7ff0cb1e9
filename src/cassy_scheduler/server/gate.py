"""The server's door: every call is identified and authorized (server/access.py's rules)
before its handler runs, and every call that changes something is recorded in the audit log
with how it ended, refused or not. The handlers themselves know nothing of identities.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from cassy_scheduler.protocol.echo import ECHO_CHARS, echo_text
from cassy_scheduler.server.access import (
    AUDITED,
    WARNED,
    Credentials,
    Identity,
    Refusal,
    authorize,
    call_name,
)
from cassy_scheduler.server.rows import AuditRecord

log = logging.getLogger(__name__)

#: The longest request text kept in an audit row (a restore names every node).
MAX_AUDITED_REQUEST = 4096
_CERT_NAME_KEYS = ("x509_common_name", "x509_subject_alternative_name")
_STATUS = {
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "denied": grpc.StatusCode.PERMISSION_DENIED,
}
_IDENTITY_KEY = "cassy-identity"
#: Refusals of callers without an identity recorded per address, call and minute; the rest
#: are counted into the next row, so that a loop of anonymous calls cannot fill the disk.
ANONYMOUS_ROWS_PER_MINUTE = 10


class AuditSink(Protocol):
    """Where audit rows go: the metadata store."""

    def record_call(self, record: AuditRecord) -> None: ...


def identity_of(context: grpc.ServicerContext) -> Identity | None:
    """The identity the gate admitted this call as (for WhoAmI)."""
    found = getattr(context, _IDENTITY_KEY, None)
    return found if isinstance(found, Identity) else None


class RefusalThrottle:
    """How many refusals of unidentified callers are recorded a minute: `per_minute` for
    each source (`admit` is given the address and the method), `overall` for all of them,
    so that neither one loop nor many addresses (an IPv6 /64 counts as one) fill the disk.
    The sources heard from most recently are remembered, `sources` at most."""

    def __init__(
        self,
        per_minute: int = ANONYMOUS_ROWS_PER_MINUTE,
        overall: int = ANONYMOUS_ROWS_PER_MINUTE * 60,
        sources: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = (per_minute, overall)
        self._sources = sources
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: OrderedDict[str, tuple[float, int, int]] = OrderedDict()
        self._all: tuple[float, int] = (clock(), 0)  # start, recorded (all sources)

    def admit(self, source: str) -> int | None:
        """None: leave this refusal out; else how many of this source's were left out
        before it."""
        with self._lock:
            now = self._clock()
            start, recorded, left_out = _renewed(self._windows.pop(source, (now, 0, 0)), now)
            all_start, all_recorded = self._all if now - self._all[0] < 60 else (now, 0)
            admitted = recorded < self._limits[0] and all_recorded < self._limits[1]
            if admitted:
                self._windows[source] = (start, recorded + 1, 0)
            else:
                self._windows[source] = (start, recorded, left_out + 1)
            self._all = (all_start, all_recorded + admitted)
            while len(self._windows) > self._sources:
                self._windows.popitem(last=False)  # the source heard from longest ago
            return left_out if admitted else None


def _renewed(window: tuple[float, int, int], now: float) -> tuple[float, int, int]:
    """A window of a minute: past it, a new one starts (what was left out is still owed)."""
    start, _, left_out = window
    return (now, 0, left_out) if now - start >= 60 else window


def source_of(peer: str, method: str) -> str:
    """The throttle's source for a call: its address (an IPv6 address by its /64) and call."""
    address = peer.rpartition(":")[0] if peer.count(":") else peer
    kind, _, host = address.partition(":")
    if kind == "ipv6":
        with suppress(ValueError):
            network = ipaddress.ip_network(f"{host.strip('[]')}/64", strict=False)
            address = f"ipv6:{network}"
    return f"{address} {method}"


class AccessGate(grpc.ServerInterceptor):
    def __init__(
        self, credentials: Credentials, audit: AuditSink, throttle: RefusalThrottle | None = None
    ) -> None:
        self._credentials = credentials
        self._audit = audit
        self._throttle = throttle or RefusalThrottle()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        return _wrapped(handler, lambda inner: self._guard(method, inner))

    def _guard(self, method: str, inner: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            found = self._credentials.identify(_authorization(context), _cert_names(context))
            refusal = found if isinstance(found, Refusal) else authorize(found, method)
            call = _Call(method, request, context, found if isinstance(found, Identity) else None)
            if refusal is not None:
                status = _STATUS[refusal.kind]
                self._record(call, status.name, refusal.message)
                context.abort(status, refusal.message)
            setattr(context, _IDENTITY_KEY, call.who)
            if method not in AUDITED:
                return inner(request, context)
            try:
                answer = inner(request, context)
            except BaseException:
                self._record(call, *_outcome(context, failed=True))
                raise
            self._record(call, *_outcome(context, failed=False))
            return answer

        return guarded

    def _record(self, call: _Call, code: str, message: str) -> None:
        peer = call.context.peer()
        if call.method not in AUDITED:
            log.info("call refused method=%s peer=%s code=%s", call.method, peer, code)
            return
        if call.who is None:  # refused before anyone was identified
            left_out = self._throttle.admit(source_of(peer, call.method))
            if left_out is None:
                return
            if left_out:
                message += f" ({left_out} more such refusals from this address not recorded)"
        record = AuditRecord(
            at=int(time.time() * 1000),
            identity=call.who.name if call.who else "",
            peer=peer,
            method=call.method,
            request=_request_text(call.request),
            code=code,
            message=message,
        )
        try:
            self._audit.record_call(record)
        except Exception:  # the call's own outcome stands; the log still says it happened
            log.exception("audit row not written method=%s peer=%s", call.method, peer)
        level = logging.WARNING if call.method in WARNED or code != "OK" else logging.INFO
        log.log(
            level,
            "%s by identity=%s peer=%s code=%s request=%s%s",
            call_name(call.method),
            record.identity or "-",
            peer,
            code,
            record.request,
            f" message={message}" if message else "",
        )


@dataclass(frozen=True)
class _Call:
    method: str
    request: Any
    context: grpc.ServicerContext
    who: Identity | None


def _authorization(context: grpc.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else value.decode(errors="replace")
    return None


def _cert_names(context: grpc.ServicerContext) -> Sequence[str]:
    """The client certificate's common name and subject alternative names, when the call
    came over TLS with one (gRPC has verified it against the client CA by then)."""
    auth = context.auth_context() or {}
    names: list[str] = []
    for key in _CERT_NAME_KEYS:
        for value in auth.get(key, ()):
            name = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
            if name and name not in names:
                names.append(name)
    return names


def _outcome(context: grpc.ServicerContext, *, failed: bool) -> tuple[str, str]:
    code = context.code()  # type: ignore[attr-defined]
    details = context.details()  # type: ignore[attr-defined]
    text = details.decode(errors="replace") if isinstance(details, bytes) else (details or "")
    if code is None:
        return ("UNKNOWN" if failed else "OK"), text
    return code.name, text


def _request_text(request: Any) -> str:
    if not isinstance(request, Message):
        return ""  # a stream: no one message to show
    text = json.dumps(
        _shortened(MessageToDict(request, preserving_proto_field_name=True)),
        sort_keys=True,
        separators=(",", ":"),
    )
    return text if len(text) <= MAX_AUDITED_REQUEST else text[: MAX_AUDITED_REQUEST - 1] + "…"


def _shortened(value: Any) -> Any:
    """Each string cut as messages quote a caller's values (protocol/echo.py): a 50 kB
    cluster id is a short line in the audit log and in the server's log, its size said."""
    if isinstance(value, str):
        return echo_text(value, ECHO_CHARS)
    if isinstance(value, dict):
        return {key: _shortened(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shortened(item) for item in value]
    return value


def _wrapped(
    handler: grpc.RpcMethodHandler[Any, Any],
    guard: Callable[[Callable[[Any, Any], Any]], Callable[[Any, Any], Any]],
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler, its behaviour behind `guard`."""
    kinds: tuple[tuple[Any, Any], ...] = (
        (handler.unary_unary, grpc.unary_unary_rpc_method_handler),
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler),
    )
    behaviour, make = next((b, m) for b, m in kinds if b is not None)
    wrapped: grpc.RpcMethodHandler[Any, Any] = make(
        guard(behaviour),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
    return wrapped
