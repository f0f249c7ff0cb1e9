"""The daemon's loop driven by hand with a fake clock: firing on time, missed runs after
downtime, no overlap, reload on change or SIGHUP, a bad reload keeping the running config,
and shutdown. Runs go to a stand-in runner that records what it was asked to do."""

from __future__ import annotations

import logging
import textwrap
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cassy_scheduler.config.loader import load_config
from cassy_scheduler.config.model import JobConfig, SchedulerConfig
from cassy_scheduler.configfile.errors import ConfigProblem
from cassy_scheduler.records import Failure, Outcome, RunResult
from cassy_scheduler.scheduling.daemon import Daemon
from tests.unit.fakes import T0, FakeClock

HEADER = """
[scheduler]
state_dir = "state"
reload_poll = "5s"
shutdown_grace = "{grace}"

[defaults]
cluster_name = "prod"
"""


class FakeRunner:
    """Records runs and skips; `gate`, when given, holds each run until set (or stopped)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: list[tuple[str, datetime]] = []
        self.skips: list[tuple[str, datetime, Failure, str]] = []
        self.gate: threading.Event | None = None
        self.running = threading.Semaphore(0)
        self.stopped: list[str] = []
        self.concurrent = 0
        self.max_concurrent = 0

    def run(
        self, job: JobConfig, scheduled_for: datetime, stop: threading.Event | None = None
    ) -> RunResult:
        with self.lock:
            self.runs.append((job.name, scheduled_for))
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        self.running.release()
        outcome = Outcome.SUCCEEDED
        if self.gate is not None:
            while not self.gate.wait(0.01):
                if stop is not None and stop.is_set():
                    self.stopped.append(job.name)
                    outcome = Outcome.INTERRUPTED
                    break
        with self.lock:
            self.concurrent -= 1
        return RunResult(job.name, job.type, scheduled_for, outcome)

    def skip(
        self, job: JobConfig, scheduled_for: datetime, reason: str, failure: Failure
    ) -> RunResult:
        with self.lock:
            self.skips.append((job.name, scheduled_for, failure, reason))
        return RunResult(job.name, job.type, scheduled_for, Outcome.SKIPPED, failure=failure)

    def wait_started(self, count: int = 1) -> None:
        for _ in range(count):
            assert self.running.acquire(timeout=10), "a run did not start"


class FakeIndex:
    def __init__(self, last: dict[str, datetime] | None = None) -> None:
        self.last = last or {}

    def last_scheduled(self) -> dict[str, datetime]:
        return dict(self.last)


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "scheduler.toml"
        self.clock = FakeClock(T0)
        self.runner = FakeRunner()
        self.index = FakeIndex()
        self.daemon: Daemon | None = None

    def write(self, jobs: str, grace: str = "60s") -> SchedulerConfig:
        self.path.write_text(
            textwrap.dedent(HEADER.format(grace=grace)) + textwrap.dedent(jobs), encoding="utf-8"
        )
        return load_config(self.path)

    def start(self, jobs: str, grace: str = "60s") -> Daemon:
        self.daemon = Daemon(self.write(jobs, grace), self.runner, self.index, self.clock)
        self.daemon.start()
        return self.daemon

    def at(self, seconds: float) -> datetime:
        """Move the clock to T0 + seconds and turn the loop once."""
        assert self.daemon is not None
        self.clock.set(T0 + timedelta(seconds=seconds))
        return self.daemon.tick()

    def settle(self) -> None:
        assert self.daemon is not None
        assert self.daemon.wait_idle(10)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    if harness.daemon is not None:
        if harness.runner.gate is not None:
            harness.runner.gate.set()
        harness.daemon.shutdown()


EVERY_10S = """
[jobs.snap]
type = "snapshot"
schedule = "*/10 * * * * *"
"""


def test_a_job_fires_at_its_scheduled_instant_and_not_before(h: Harness) -> None:
    daemon = h.start(EVERY_10S)
    assert daemon.next_fires()["snap"].run_at == T0 + timedelta(seconds=10)
    assert h.at(9) == T0 + timedelta(seconds=10)
    h.settle()
    assert h.runner.runs == []
    assert h.at(10) == T0 + timedelta(seconds=14)  # the next look at the file comes first
    h.settle()
    assert h.runner.runs == [("snap", T0 + timedelta(seconds=10))]
    assert daemon.next_fires()["snap"].scheduled_for == T0 + timedelta(seconds=20)
    h.at(20)
    h.settle()  # else the 30 s firing may meet the 20 s run still going, and be skipped
    h.at(30)
    h.settle()
    assert [when for _, when in h.runner.runs] == [T0 + timedelta(seconds=s) for s in (10, 20, 30)]


def test_jitter_delays_the_run_but_keeps_the_scheduled_instant(h: Harness) -> None:
    daemon = h.start(
        """
        [jobs.snap]
        type = "snapshot"
        schedule = "0 * * * *"
        jitter = "10m"
        """
    )
    fire = daemon.next_fires()["snap"]
    assert fire.scheduled_for == T0 + timedelta(hours=1)
    assert fire.scheduled_for <= fire.run_at < fire.scheduled_for + timedelta(minutes=10)
    h.at((fire.run_at - T0).total_seconds() - 1)
    h.settle()
    assert h.runner.runs == []
    h.at((fire.run_at - T0).total_seconds())
    h.settle()
    assert h.runner.runs == [("snap", fire.scheduled_for)]


def test_disabled_jobs_never_fire(h: Harness) -> None:
    daemon = h.start(EVERY_10S + "enabled = false\n")
    assert daemon.next_fires() == {}
    h.at(60)
    h.settle()
    assert h.runner.runs == []


HOURLY = """
[jobs.hourly]
type = "snapshot"
schedule = "0 * * * *"
"""


def test_runs_missed_while_down_are_coalesced_into_one_catch_up(h: Harness) -> None:
    h.index.last["hourly"] = T0 - timedelta(hours=5)
    h.clock.set(T0 + timedelta(minutes=30))
    daemon = h.start(HOURLY)
    assert daemon.next_fires()["hourly"].scheduled_for == T0
    h.at(30 * 60)
    h.settle()
    assert h.runner.runs == [("hourly", T0)]
    assert daemon.next_fires()["hourly"].scheduled_for == T0 + timedelta(hours=1)
    assert h.runner.skips == []


def test_missed_runs_are_skipped_and_recorded_when_the_job_says_skip(h: Harness) -> None:
    h.index.last["hourly"] = T0 - timedelta(hours=5)
    h.clock.set(T0 + timedelta(minutes=30))
    daemon = h.start(HOURLY + 'missed_runs = "skip"\n')
    assert daemon.next_fires()["hourly"].scheduled_for == T0 + timedelta(hours=1)
    ((name, when, failure, reason),) = h.runner.skips
    assert (name, when, failure) == ("hourly", T0, Failure.MISSED)
    assert "5 missed run(s)" in reason
    h.at(31 * 60)
    h.settle()
    assert h.runner.runs == []


def test_a_catch_up_older_than_misfire_grace_is_skipped(h: Harness) -> None:
    h.index.last["hourly"] = T0 - timedelta(hours=5)
    h.clock.set(T0 + timedelta(minutes=30))
    h.start(HOURLY + 'misfire_grace = "10m"\n')
    ((_, when, failure, reason),) = h.runner.skips
    assert (when, failure) == (T0, Failure.MISSED)
    assert "misfire_grace" in reason


def test_a_first_start_without_history_does_not_catch_up(h: Harness) -> None:
    h.clock.set(T0 + timedelta(minutes=30))
    daemon = h.start(HOURLY)
    assert daemon.next_fires()["hourly"].scheduled_for == T0 + timedelta(hours=1)
    assert h.runner.skips == [] and h.runner.runs == []


def test_a_loop_asleep_through_several_firings_runs_only_the_latest(h: Harness) -> None:
    daemon = h.start(EVERY_10S)
    h.at(45)
    h.settle()
    assert h.runner.runs == [("snap", T0 + timedelta(seconds=40))]
    assert daemon.next_fires()["snap"].scheduled_for == T0 + timedelta(seconds=50)


def test_a_second_firing_while_the_job_still_runs_is_skipped(h: Harness) -> None:
    h.runner.gate = threading.Event()
    h.start(EVERY_10S)
    h.at(10)
    h.runner.wait_started()
    h.at(20)
    assert h.runner.runs == [("snap", T0 + timedelta(seconds=10))]
    ((name, when, failure, _),) = h.runner.skips
    assert (name, when, failure) == ("snap", T0 + timedelta(seconds=20), Failure.ALREADY_RUNNING)
    h.runner.gate.set()
    h.settle()
    h.at(30)
    h.settle()
    assert len(h.runner.runs) == 2


TWO_ON_ONE_CLUSTER = """
[jobs.snap]
type = "snapshot"
schedule = "*/10 * * * * *"

[jobs.incr]
type = "incremental"
schedule = "*/10 * * * * *"
when_no_snapshot = "take-snapshot"

[jobs.elsewhere]
type = "snapshot"
cluster_name = "other"
schedule = "*/10 * * * * *"
"""


def test_runs_on_one_cluster_wait_their_turn_others_go_alongside(h: Harness) -> None:
    h.runner.gate = threading.Event()
    h.start(TWO_ON_ONE_CLUSTER)
    h.at(10)
    h.runner.wait_started(2)  # one of prod's jobs, and the other cluster's
    assert sorted(name for name, _ in h.runner.runs) == ["elsewhere", "snap"]
    h.runner.gate.set()
    h.runner.wait_started()
    h.settle()
    prod = [name for name, _ in h.runner.runs if name != "elsewhere"]
    assert prod == ["snap", "incr"]  # in config order, one after the other
    assert h.runner.max_concurrent == 2
    assert h.runner.skips == []


def test_a_changed_file_is_reloaded_and_a_new_schedule_applies(h: Harness) -> None:
    daemon = h.start(EVERY_10S)
    h.write(EVERY_10S.replace("*/10 * * * * *", "*/7 * * * * *"))
    h.at(3)  # before the poll: the old schedule stands
    assert daemon.next_fires()["snap"].scheduled_for == T0 + timedelta(seconds=10)
    h.at(5)
    assert daemon.next_fires()["snap"].scheduled_for == T0 + timedelta(seconds=7)
    assert daemon.config.job("snap").schedule.expression == "*/7 * * * * *"


def test_reload_adds_and_removes_jobs_and_keeps_unchanged_timers(h: Harness) -> None:
    daemon = h.start(EVERY_10S + HOURLY)
    before = daemon.next_fires()["snap"]
    elsewhere = TWO_ON_ONE_CLUSTER[TWO_ON_ONE_CLUSTER.index("[jobs.elsewhere]") :]
    h.write(EVERY_10S + "retries = 5\n" + elsewhere)
    daemon.request_reload()
    h.at(1)
    fires = daemon.next_fires()
    assert set(fires) == {"snap", "elsewhere"}
    assert fires["snap"] is before
    assert daemon.config.job("snap").retries == 5


def test_sighup_reloads_even_when_the_file_looks_unchanged(h: Harness) -> None:
    daemon = h.start(EVERY_10S)
    calls: list[Path] = []

    def load(path: Path) -> SchedulerConfig:
        calls.append(path)
        return load_config(path)

    daemon._load = load  # the loader is the one seam this test needs
    daemon.request_reload()
    h.at(1)
    assert calls == [h.path]


def test_a_bad_reload_keeps_the_running_config_and_says_why(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = h.start(EVERY_10S)
    good = daemon.config
    h.path.write_text(h.path.read_text() + 'retries = "three"\n', encoding="utf-8")
    with caplog.at_level(logging.ERROR):
        h.at(5)
    assert daemon.config is good
    assert daemon.next_fires()["snap"].scheduled_for == T0 + timedelta(seconds=10)
    text = caplog.text
    assert "config reload refused" in text and "keep running the previous config" in text
    assert "jobs.snap.retries" in text
    h.at(10)
    h.settle()
    assert h.runner.runs == [("snap", T0 + timedelta(seconds=10))]
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        h.at(15)  # the same bad file is not re-read at every poll
    assert "config reload refused" not in caplog.text


def test_shutdown_lets_a_run_finish_within_the_grace(h: Harness) -> None:
    h.runner.gate = threading.Event()
    daemon = h.start(EVERY_10S, grace="60s")
    h.at(10)
    h.runner.wait_started()
    threading.Timer(0.1, h.runner.gate.set).start()
    daemon.shutdown()
    h.daemon = None
    assert h.runner.stopped == []


def test_shutdown_interrupts_a_run_that_outlasts_the_grace(h: Harness) -> None:
    h.runner.gate = threading.Event()
    daemon = h.start(EVERY_10S, grace="0")
    h.at(10)
    h.runner.wait_started()
    daemon.shutdown()
    h.daemon = None
    assert h.runner.stopped == ["snap"]


def test_serve_stops_on_request(h: Harness) -> None:
    h.clock = FakeClock(T0)
    daemon = Daemon(h.write(EVERY_10S), h.runner, h.index, h.clock)
    h.daemon = None
    thread = threading.Thread(target=daemon.serve)
    thread.start()
    daemon.request_stop()
    thread.join(10)
    assert not thread.is_alive()


class FakeAlerts:
    def __init__(self) -> None:
        self.refused: list[tuple[str, list[str]]] = []
        self.accepted: list[str] = []

    def config_refused(
        self, config: SchedulerConfig, trigger: str, problems: Sequence[ConfigProblem]
    ) -> None:
        self.refused.append((trigger, [p.field for p in problems]))

    def config_accepted(self, config: SchedulerConfig, trigger: str) -> None:
        self.accepted.append(trigger)


def _alerted(h: Harness, jobs: str) -> tuple[Daemon, FakeAlerts]:
    alerts = FakeAlerts()
    h.daemon = Daemon(h.write(jobs), h.runner, h.index, h.clock, alerts=alerts)
    h.daemon.start()
    return h.daemon, alerts


SERVER = '\n[server]\naddress = "127.0.0.1:20551"\n'


@pytest.mark.parametrize(
    ("edit", "fields"),
    [
        ("", ["jobs", "server"]),  # emptied
        ("[scheduler]\nstate_dir = 'state'\n", ["jobs", "server"]),  # cut after its first table
        (SERVER, ["jobs"]),  # every job gone
        (HEADER.format(grace="60s") + EVERY_10S, ["server"]),  # the address: back to default
    ],
)
def test_an_edit_that_loses_every_job_or_the_server_is_refused_and_alerted(
    h: Harness, caplog: pytest.LogCaptureFixture, edit: str, fields: list[str]
) -> None:
    daemon, alerts = _alerted(h, EVERY_10S + SERVER)
    running = daemon.config
    h.path.write_text(edit, encoding="utf-8")
    with caplog.at_level(logging.ERROR):
        h.at(5)
    assert daemon.config is running and set(daemon.next_fires()) == {"snap"}
    assert "config reload refused" in caplog.text
    assert alerts.refused == [("the file changed", fields)]
    h.path.write_text(h.path.read_text() + 'retries = "three"\n', encoding="utf-8")
    h.at(10)  # a later bad edit is still judged against the running config, not the empty one
    assert daemon.config is running
    h.write(EVERY_10S.replace("*/10", "*/7") + SERVER)
    h.at(15)
    assert daemon.config.job("snap").schedule.expression == "*/7 * * * * *"
    assert alerts.accepted == ["the file changed"]


def test_an_explicitly_empty_jobs_table_is_taken(h: Harness) -> None:
    daemon, alerts = _alerted(h, EVERY_10S + SERVER)
    h.path.write_text("jobs = {}\n" + SERVER, encoding="utf-8")
    h.at(5)
    assert daemon.next_fires() == {} and alerts.refused == []


def test_a_vanished_config_file_is_an_error_logged_and_alerted(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    daemon, alerts = _alerted(h, EVERY_10S)
    h.path.unlink()
    with caplog.at_level(logging.ERROR):
        h.at(5)
    assert "config reload refused" in caplog.text and "does not exist" in caplog.text
    assert alerts.refused == [("the file is gone", [""])]
    assert set(daemon.next_fires()) == {"snap"}
    h.at(10)
    assert len(alerts.refused) == 1  # once, not at every poll
