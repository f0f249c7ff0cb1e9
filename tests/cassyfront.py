"""A gRPC front on loopback that answers as Scalar's Cassy does: it passes rpc.Cassy's calls
on to a built-in server, byte for byte, and knows nothing else (no health service saying
"cassy-scheduler", no Backups service). The scheduler behind it takes it for Scalar's Cassy,
which is what tests of the paths for Cassy need, over real rows and real storage."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc


class CassyFront:
    def __init__(self, target: str) -> None:
        self._channel = grpc.insecure_channel(target)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self._server.add_generic_rpc_handlers((_Forward(self._channel),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.stop(grace=None)
        self._channel.close()


class _Forward(grpc.GenericRpcHandler):
    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if not method.startswith("/rpc.Cassy/"):
            return None  # UNIMPLEMENTED, as from a server that has only Cassy's service
        call = self._channel.unary_unary(method)

        def forward(request: bytes, context: grpc.ServicerContext) -> Any:
            try:
                return call(request, timeout=context.time_remaining())
            except grpc.RpcError as exc:
                context.abort(exc.code(), exc.details() or "")  # type: ignore[attr-defined]

        return grpc.unary_unary_rpc_method_handler(forward)
