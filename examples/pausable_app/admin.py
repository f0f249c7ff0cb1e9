"""rpc.Admin for the example application: what a backup master calls around a snapshot.

Pause(wait_outstanding=true) must return only once no logical write is half done; Unpause
must resume (and cancel any pause in progress); Stats reports the application's own view.
"""

from __future__ import annotations

import json
import logging
import time

import grpc
from google.protobuf import empty_pb2

from cassy_scheduler.protocol.generated import cassy_pb2, cassy_pb2_grpc
from examples.pausable_app.writer import PairWriter

log = logging.getLogger(__name__)


class AdminService(cassy_pb2_grpc.AdminServicer):
    """Pause, Unpause and Stats over a PairWriter; faults can be injected for tests."""

    def __init__(
        self, writer: PairWriter, *, pause_delay_s: float = 0.0, refuse_pause: bool = False
    ) -> None:
        self._writer = writer
        self._pause_delay_s = pause_delay_s
        self._refuse_pause = refuse_pause

    def Pause(  # noqa: N802 (the generated base class names the method)
        self, request: cassy_pb2.PauseRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        if self._refuse_pause:
            log.warning("pause refused (--refuse-pause)")
            context.abort(grpc.StatusCode.UNAVAILABLE, "this instance refuses to pause")
        remaining = context.time_remaining()
        finished = self._writer.pause(request.wait_outstanding, remaining)
        if not finished:
            context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "outstanding writes did not finish before the deadline; still paused",
            )
        if self._pause_delay_s:
            time.sleep(self._pause_delay_s)
        log.info("paused wait_outstanding=%s", request.wait_outstanding)
        return empty_pb2.Empty()

    def Unpause(  # noqa: N802 (the generated base class names the method)
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        self._writer.unpause()
        log.info("unpaused")
        return empty_pb2.Empty()

    def Stats(  # noqa: N802 (the generated base class names the method)
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> cassy_pb2.StatsResponse:
        return cassy_pb2.StatsResponse(stats=json.dumps(self._writer.stats()))
