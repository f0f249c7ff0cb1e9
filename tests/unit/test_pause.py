"""Pausing application instances: all at once, under a deadline, always unpaused after."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import pytest

from cassy_scheduler.protocol.pause_report import PauseReport
from cassy_scheduler.server.applications import AppInstance
from cassy_scheduler.server.pause import AdminCallError, PauseFailedError, Pauser
from cassy_scheduler.storage.layout import pause_report_key

A = AppInstance("127.0.0.201", 20052)
B = AppInstance("127.0.0.202", 20052)
C = AppInstance("127.0.0.203", 20052)


class FakeAdmin:
    """Records calls; instances can refuse, hang, or fail to unpause a number of times."""

    def __init__(
        self,
        *,
        refuse: Iterable[AppInstance] = (),
        hang: Iterable[AppInstance] = (),
        unpause_failures: dict[AppInstance, int] | None = None,
    ) -> None:
        self.refuse = set(refuse)
        self.hang = set(hang)
        self.unpause_failures = dict(unpause_failures or {})
        self.paused: set[AppInstance] = set()
        self.calls: list[tuple[str, AppInstance]] = []
        self.release_hung = threading.Event()
        self._lock = threading.Lock()

    def pause(self, instance: AppInstance, timeout_s: float) -> None:
        with self._lock:
            self.calls.append(("pause", instance))
            self.paused.add(instance)
        if instance in self.hang:
            self.release_hung.wait(30)
        if instance in self.refuse:
            raise AdminCallError(f"Pause on {instance} failed: UNAVAILABLE: busy")

    def unpause(self, instance: AppInstance, timeout_s: float) -> None:
        with self._lock:
            self.calls.append(("unpause", instance))
            left = self.unpause_failures.get(instance, 0)
            if left:
                self.unpause_failures[instance] = left - 1
                raise AdminCallError(f"Unpause on {instance} failed: UNAVAILABLE: down")
            self.paused.discard(instance)

    def count(self, call: str, instance: AppInstance) -> int:
        return self.calls.count((call, instance))


def pauser(admin: FakeAdmin, pause_timeout_s: float = 5.0) -> Pauser:
    return Pauser(
        admin,
        pause_timeout_s=pause_timeout_s,
        unpause_timeout_s=1.0,
        unpause_attempts=3,
        retry_delay_s=0.0,
    )


def test_pause_then_release_unpauses_every_instance_once() -> None:
    admin = FakeAdmin()
    window = pauser(admin).pause([B, A, C])
    assert admin.paused == {A, B, C}
    assert [c for c, _ in admin.calls] == ["pause"] * 3
    report = window.release()
    assert admin.paused == set()
    assert window.release() is report  # a second release changes nothing
    assert all(admin.count("unpause", i) == 1 for i in (A, B, C))
    assert [i.instance for i in report.instances] == [str(A), str(B), str(C)]
    assert all(i.paused and i.unpaused and i.error is None for i in report.instances)
    assert all(i.paused_s >= 0 and i.pause_ack_s is not None for i in report.instances)
    assert report.all_unpaused


def test_context_manager_unpauses_on_error() -> None:
    admin = FakeAdmin()
    with pytest.raises(RuntimeError, match="snapshot broke"), pauser(admin).pause([A, B]):
        raise RuntimeError("snapshot broke")
    assert admin.paused == set()


def test_refused_pause_fails_naming_the_instance_and_unpauses_all() -> None:
    admin = FakeAdmin(refuse=[B])
    with pytest.raises(PauseFailedError) as caught:
        pauser(admin).pause([A, B, C])
    message = str(caught.value)
    assert str(B) in message
    assert "UNAVAILABLE: busy" in message
    assert "Nothing was snapshotted" in message
    assert admin.paused == set()
    assert all(admin.count("unpause", i) == 1 for i in (A, B, C))  # B too: it may have paused
    by_instance = {i.instance: i for i in caught.value.report.instances}
    assert not by_instance[str(B)].paused
    assert by_instance[str(A)].paused


def test_pause_past_the_deadline_fails_and_unpauses_all() -> None:
    admin = FakeAdmin(hang=[C])
    try:
        with pytest.raises(PauseFailedError) as caught:
            pauser(admin, pause_timeout_s=0.2).pause([A, C])
    finally:
        admin.release_hung.set()
    assert f"Pause on {C} got no answer within 0.2s" in str(caught.value)
    assert admin.count("unpause", A) == 1
    assert admin.count("unpause", C) == 1
    assert caught.value.report.all_unpaused


def test_unpause_is_retried() -> None:
    admin = FakeAdmin(unpause_failures={A: 2})
    report = pauser(admin).pause([A, B]).release()
    assert admin.count("unpause", A) == 3
    assert report.all_unpaused
    assert admin.paused == set()


def test_unpause_that_keeps_failing_is_reported() -> None:
    admin = FakeAdmin(unpause_failures={A: 99})
    report = pauser(admin).pause([A, B]).release()
    assert admin.count("unpause", A) == 3
    stuck = [i for i in report.instances if not i.unpaused]
    assert [i.instance for i in stuck] == [str(A)]
    assert stuck[0].error is not None
    assert "Unpause on" in stuck[0].error
    assert not report.all_unpaused


def test_interrupt_ends_the_window_for_its_owner() -> None:
    admin = FakeAdmin()
    window = pauser(admin).pause([A])
    window.interrupt("server stopping")
    assert window.interrupted == "server stopping"
    assert admin.paused == set()
    window.release()
    assert admin.count("unpause", A) == 1


def test_interrupt_after_release_does_not_mark_the_window() -> None:
    admin = FakeAdmin()
    window = pauser(admin).pause([A])
    window.release()
    window.interrupt("server stopping")
    assert window.interrupted is None


def test_report_round_trips_through_json() -> None:
    report = pauser(FakeAdmin()).pause([A, B]).release()
    stored = PauseReport.from_json(report.to_json())
    assert [i.instance for i in stored.instances] == [str(A), str(B)]
    assert stored.started_at_ms == report.started_at_ms
    assert pause_report_key("c1", "s1") == "cluster-backup/c1/s1/pause.json"


def test_window_ended_before_opening_pauses_nothing() -> None:
    admin = FakeAdmin()
    window = pauser(admin).window([A, B])
    window.interrupt("server stopping")
    with pytest.raises(PauseFailedError, match="server stopping"):
        window.open()
    assert admin.count("pause", A) == 0


def test_window_ended_while_pausing_unpauses_again() -> None:
    admin = FakeAdmin(hang=[B])
    window = pauser(admin).window([A, B])
    refused: list[PauseFailedError] = []

    def open_window() -> None:
        try:
            window.open()
        except PauseFailedError as exc:
            refused.append(exc)

    opening = threading.Thread(target=open_window)
    opening.start()
    while admin.count("pause", B) == 0:
        threading.Event().wait(0.01)
    window.interrupt("server stopping")
    admin.release_hung.set()  # B's pause lands after the first unpause
    opening.join()
    assert len(refused) == 1
    assert "interrupted (server stopping)" in str(refused[0])
    assert admin.paused == set()
    assert admin.count("unpause", B) == 2
