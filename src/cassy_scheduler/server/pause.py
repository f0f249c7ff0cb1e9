"""Pausing every application instance around a cluster-wide snapshot, and always resuming them.

All instances are asked to pause at once (`Admin.Pause(wait_outstanding=true)`), under one
deadline. Once any pause has been attempted, every instance is asked to unpause, whatever
happens next: a refused or late pause, a failed snapshot, or the server stopping. A pause
that outlives its deadline may still take effect inside the application, so the instances
that did not answer are unpaused too. The time each instance spent paused is reported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

import grpc
from google.protobuf import empty_pb2

from cassy_scheduler.clock import SYSTEM_CLOCK, Clock, epoch_ms
from cassy_scheduler.protocol.generated import cassy_pb2, cassy_pb2_grpc
from cassy_scheduler.protocol.pause_report import InstancePause, PauseReport
from cassy_scheduler.server.applications import AppInstance, ApplicationsError

log = logging.getLogger(__name__)

MAX_PARALLEL_CALLS = 64
UNPAUSE_ATTEMPTS = 3
UNPAUSE_RETRY_DELAY_S = 0.5


class AdminCallError(ApplicationsError):
    """An rpc.Admin call failed; the message carries the gRPC status and the instance."""


class PauseFailedError(ApplicationsError):
    """Some instance did not pause; every instance has been asked to unpause since."""

    def __init__(self, message: str, report: PauseReport) -> None:
        super().__init__(message)
        self.report = report


class AdminClient(Protocol):
    """The two rpc.Admin calls a backup makes on one instance; each raises AdminCallError."""

    def pause(self, instance: AppInstance, timeout_s: float) -> None: ...

    def unpause(self, instance: AppInstance, timeout_s: float) -> None: ...


class GrpcAdminClient:
    """rpc.Admin over plaintext gRPC, one short-lived channel per call."""

    def pause(self, instance: AppInstance, timeout_s: float) -> None:
        request = cassy_pb2.PauseRequest(wait_outstanding=True)
        self._call(instance, "Pause", lambda stub: stub.Pause(request, timeout=timeout_s))

    def unpause(self, instance: AppInstance, timeout_s: float) -> None:
        request = empty_pb2.Empty()
        self._call(instance, "Unpause", lambda stub: stub.Unpause(request, timeout=timeout_s))

    def _call(
        self, instance: AppInstance, name: str, call: Callable[[cassy_pb2_grpc.AdminStub], object]
    ) -> None:
        with grpc.insecure_channel(str(instance)) as channel:
            try:
                call(cassy_pb2_grpc.AdminStub(channel))
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else None
                details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
                status = code.name if code is not None else "error"
                raise AdminCallError(f"{name} on {instance} failed: {status}: {details}") from None


@dataclass
class _Progress:
    """What is known of one instance while a window is open (mutable, owned by the window)."""

    instance: AppInstance
    sent_at: float | None = None
    acked_after_s: float | None = None
    error: str | None = None


class Pauser:
    """Opens pause windows on sets of instances through an AdminClient."""

    def __init__(
        self,
        admin: AdminClient,
        *,
        pause_timeout_s: float,
        unpause_timeout_s: float,
        unpause_attempts: int = UNPAUSE_ATTEMPTS,
        retry_delay_s: float = UNPAUSE_RETRY_DELAY_S,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._admin = admin
        self._pause_timeout_s = pause_timeout_s
        self._unpause_timeout_s = unpause_timeout_s
        self._attempts = max(1, unpause_attempts)
        self._retry_delay_s = retry_delay_s
        self._clock = clock
        self._sleep = sleep

    def pause(self, instances: Sequence[AppInstance]) -> PauseWindow:
        """Pause all of `instances`; on any failure unpause all and raise PauseFailedError."""
        window = self.window(instances)
        window.open()
        return window

    def window(self, instances: Sequence[AppInstance]) -> PauseWindow:
        """A window not yet opened: it can be tracked (and interrupted) before pausing starts."""
        if not instances:
            raise ApplicationsError("no application instance to pause")
        return PauseWindow(self, instances, epoch_ms(self._clock.now()))

    # The window calls these; they run calls in parallel and never raise.
    def _pause_all(self, progress: Sequence[_Progress]) -> None:
        def pause_one(item: _Progress) -> None:
            item.sent_at = self._clock.monotonic()
            self._admin.pause(item.instance, self._pause_timeout_s)
            item.acked_after_s = self._clock.monotonic() - item.sent_at

        pool = ThreadPoolExecutor(min(len(progress), MAX_PARALLEL_CALLS), "pause")
        try:
            futures = {pool.submit(pause_one, item): item for item in progress}
            done, _late = wait(futures, timeout=self._pause_timeout_s)
            for future, item in futures.items():
                if future not in done:
                    item.error = f"Pause on {item.instance} got no answer within " + (
                        f"{self._pause_timeout_s:g}s ([applications] pause_timeout)"
                    )
                elif future.exception() is not None:
                    item.error = _describe(future)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _unpause_all(self, progress: Sequence[_Progress]) -> dict[AppInstance, _Unpaused]:
        def unpause_one(instance: AppInstance) -> float:
            for attempt in range(1, self._attempts + 1):
                try:
                    self._admin.unpause(instance, self._unpause_timeout_s)
                    return self._clock.monotonic()
                except Exception as exc:
                    if attempt == self._attempts:
                        raise
                    log.warning(
                        "unpause failed, retrying instance=%s attempt=%d error=%s",
                        instance,
                        attempt,
                        exc,
                    )
                    self._sleep(self._retry_delay_s * attempt)
            raise AssertionError("unreachable")  # pragma: no cover

        pool = ThreadPoolExecutor(min(len(progress), MAX_PARALLEL_CALLS), "unpause")
        try:
            futures = {pool.submit(unpause_one, item.instance): item.instance for item in progress}
            budget = self._attempts * (self._unpause_timeout_s + self._retry_delay_s * 2) + 1
            done, _late = wait(futures, timeout=budget)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        given_up = self._clock.monotonic()
        outcome: dict[AppInstance, _Unpaused] = {}
        for future, instance in futures.items():
            if future not in done:
                outcome[instance] = _Unpaused(f"Unpause on {instance} got no answer", given_up)
            elif future.exception() is not None:
                outcome[instance] = _Unpaused(_describe(future), given_up)
            else:
                outcome[instance] = _Unpaused(None, future.result())
        return outcome


@dataclass(frozen=True)
class _Unpaused:
    error: str | None
    at: float


def _describe(future: Future[None] | Future[float]) -> str:
    error = future.exception()
    return str(error) if isinstance(error, ApplicationsError) else repr(error)


class PauseWindow:
    """The time between pausing and unpausing; `release` ends it, once, from any thread."""

    def __init__(self, pauser: Pauser, instances: Sequence[AppInstance], started_at_ms: int):
        self._pauser = pauser
        self._progress = [_Progress(i) for i in sorted(set(instances))]
        self._started_at_ms = started_at_ms
        self._lock = threading.Lock()
        self._report: PauseReport | None = None
        self._interrupted: str | None = None

    @property
    def instances(self) -> tuple[AppInstance, ...]:
        return tuple(p.instance for p in self._progress)

    @property
    def interrupted(self) -> str | None:
        """Why the window was ended early by someone else (e.g. server shutdown), if it was."""
        return self._interrupted

    def open(self) -> None:
        """Pause every instance; on any failure (or an interruption) unpause all and raise."""
        with self._lock:
            if self._report is not None:
                raise PauseFailedError(
                    f"nothing was paused: the window was ended first ({self._interrupted})",
                    self._report,
                )
        log.info(
            "pausing application instances instances=%s",
            ",".join(str(p.instance) for p in self._progress),
        )
        self._pauser._pause_all(self._progress)
        with self._lock:
            ended_early = self._report
        if ended_early is not None:
            # A pause can land after the first unpause; ask every instance once more.
            self._pauser._unpause_all(self._progress)
            raise PauseFailedError(
                f"pausing was interrupted ({self._interrupted}); every instance was asked to "
                "unpause. Nothing was snapshotted",
                ended_early,
            )
        failed = [p for p in self._progress if p.error is not None]
        if not failed:
            log.info("application instances paused count=%d", len(self._progress))
            return
        report = self.release()
        named = "; ".join(p.error or "" for p in failed)
        resumed = (
            "every instance was unpaused"
            if report.all_unpaused
            else "some instances could not be unpaused: "
            + ", ".join(i.instance for i in report.instances if not i.unpaused)
        )
        raise PauseFailedError(
            f"application instance {failed[0].instance} did not pause: {named}. Nothing was "
            f"snapshotted and {resumed}; check that instance and take the backup again",
            report,
        )

    def interrupt(self, reason: str) -> PauseReport:
        """End the window for someone else (e.g. shutdown); its owner sees `interrupted`."""
        with self._lock:
            if self._report is None:
                self._interrupted = reason
        return self.release()

    def release(self) -> PauseReport:
        """Unpause every instance (the first call does; later ones return the same report)."""
        with self._lock:
            if self._report is not None:
                return self._report
            outcome = self._pauser._unpause_all(self._progress)
            instances = []
            for item in self._progress:
                unpaused = outcome[item.instance]
                errors = [e for e in (item.error, unpaused.error) if e]
                instances.append(
                    InstancePause(
                        instance=str(item.instance),
                        paused=item.error is None and item.acked_after_s is not None,
                        unpaused=unpaused.error is None,
                        paused_s=unpaused.at - item.sent_at if item.sent_at is not None else 0.0,
                        pause_ack_s=item.acked_after_s,
                        error="; ".join(errors) or None,
                    )
                )
            self._report = PauseReport(tuple(instances), self._started_at_ms)
        log.info("application instances unpaused paused_time %s", self._report.describe())
        for failed in (i for i in self._report.instances if not i.unpaused):
            log.error(
                "application instance may still be paused instance=%s error=%s: "
                "call Admin.Unpause on it",
                failed.instance,
                failed.error,
            )
        return self._report

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
